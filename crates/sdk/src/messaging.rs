//! Producer and consumer spans per the OpenTelemetry messaging conventions.
//!
//! The producer's `send {destination}` span (PRODUCER) is the *creation context*: inject the
//! context [`ProducerSpan::start`] returns into the message. The consumer's
//! `process {destination}` span (CONSUMER) always links to that creation context and, for a single
//! message, also takes it as parent ([`ConsumerParent::CreationContext`]); for a batch, or when
//! the consumer has its own trace, it keeps its current parent and only links
//! ([`ConsumerParent::Current`]). Both record `messaging.message.id`, which the collector uses to
//! join a producer and a consumer when a broker dropped the headers.
//!
//! ```
//! use agentrace::messaging::{ConsumerSpan, ProducerSpan};
//! use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
//! use opentelemetry::Context;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let tracer = SdkTracerProvider::builder().build().tracer("worker");
//! // The producer's span, whose context goes into the message…
//! let producer = ProducerSpan::new("redis", "tasks", Some("m-42")).start(&tracer, &Context::new());
//! // …and the consumer's, a child of it on the other side.
//! let consumer = ConsumerSpan::new("redis", "tasks", Some("m-42")).start(&tracer, &producer);
//! assert_eq!(
//!     consumer.span().span_context().trace_id(),
//!     producer.span().span_context().trace_id()
//! );
//! ```

use opentelemetry::trace::{Link, SpanBuilder, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use crate::semconv;

/// Well-known `messaging.system` values.
pub mod system {
    /// NATS.
    pub const NATS: &str = "nats";
    /// RabbitMQ (AMQP 0-9-1).
    pub const RABBITMQ: &str = "rabbitmq";
    /// Kafka.
    pub const KAFKA: &str = "kafka";
    /// Redis streams (not yet a registered value; the conventions allow custom systems).
    pub const REDIS: &str = "redis";
}

fn base_attributes(system: &str, destination: &str, message_id: Option<&str>, op_type: &'static str) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new(semconv::MESSAGING_SYSTEM, system.to_owned()),
        KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, destination.to_owned()),
        KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, op_type),
    ];
    if let Some(id) = message_id {
        attrs.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.to_owned()));
    }
    attrs
}

/// A `send` span about to start.
#[derive(Debug, Clone)]
pub struct ProducerSpan {
    destination: String,
    attributes: Vec<KeyValue>,
}

impl ProducerSpan {
    /// `send {destination}` on `system`, with the message id if the producer assigns one.
    pub fn new(system: &str, destination: &str, message_id: Option<&str>) -> Self {
        ProducerSpan {
            destination: destination.to_owned(),
            attributes: base_attributes(system, destination, message_id, "send"),
        }
    }

    /// Adds any attribute (for example `messaging.operation.name`).
    pub fn with_attribute(mut self, kv: KeyValue) -> Self {
        self.attributes.push(kv);
        self
    }

    /// Starts the span under `parent`; inject the returned context into the message.
    pub fn start<T>(self, tracer: &T, parent: &Context) -> Context
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        let span = SpanBuilder::from_name(format!("send {}", self.destination))
            .with_kind(SpanKind::Producer)
            .with_attributes(self.attributes)
            .start_with_context(tracer, parent);
        parent.with_span(span)
    }
}

/// Which context a consumer span takes as parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConsumerParent {
    /// The message's creation context (single-message processing): one connected trace.
    #[default]
    CreationContext,
    /// The consumer's current context (batches, or a consumer with its own trace); the creation
    /// context is only linked.
    Current,
}

/// A `process` span about to start.
#[derive(Debug, Clone)]
pub struct ConsumerSpan {
    destination: String,
    attributes: Vec<KeyValue>,
    parent: ConsumerParent,
}

impl ConsumerSpan {
    /// `process {destination}` on `system` for the message with `message_id`.
    pub fn new(system: &str, destination: &str, message_id: Option<&str>) -> Self {
        ConsumerSpan {
            destination: destination.to_owned(),
            attributes: base_attributes(system, destination, message_id, "process"),
            parent: ConsumerParent::default(),
        }
    }

    /// Sets which context becomes the parent.
    pub fn with_parent(mut self, parent: ConsumerParent) -> Self {
        self.parent = parent;
        self
    }

    /// Adds any attribute.
    pub fn with_attribute(mut self, kv: KeyValue) -> Self {
        self.attributes.push(kv);
        self
    }

    /// Starts the span for a message whose extracted context is `creation`. Baggage of the
    /// creation context is kept in the returned context either way.
    pub fn start<T>(self, tracer: &T, creation: &Context) -> Context
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        let creation_span = creation.span();
        let creation_sc = creation_span.span_context().clone();
        let links = if creation_sc.is_valid() { vec![Link::with_context(creation_sc)] } else { Vec::new() };
        let parent = match self.parent {
            ConsumerParent::CreationContext => creation.clone(),
            ConsumerParent::Current => {
                opentelemetry::baggage::BaggageExt::with_baggage(&Context::current(), crate::baggage::entries(creation))
            }
        };
        let span = SpanBuilder::from_name(format!("process {}", self.destination))
            .with_kind(SpanKind::Consumer)
            .with_attributes(self.attributes)
            .with_links(links)
            .start_with_context(tracer, &parent);
        parent.with_span(span)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;
    use crate::carrier::ContextCarrier;
    use crate::carrier::envelope::ContextEnvelope;

    #[test]
    fn consumer_parents_on_and_links_to_the_creation_context() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let tracer = provider.tracer("t");
        let send = ProducerSpan::new(system::NATS, "tasks", Some("m-1")).start(&tracer, &Context::new());
        let envelope = ContextEnvelope::from_context(&send);
        send.span().end();

        let creation = envelope.extract_context();
        let process = ConsumerSpan::new(system::NATS, "tasks", Some("m-1")).start(&tracer, &creation);
        process.span().end();
        let linked_only = ConsumerSpan::new(system::NATS, "tasks", Some("m-1"))
            .with_parent(ConsumerParent::Current)
            .start(&tracer, &creation);
        linked_only.span().end();

        let spans = exporter.get_finished_spans().unwrap();
        let (p, c, l) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(p.name, "send tasks");
        assert_eq!(p.span_kind, SpanKind::Producer);
        assert_eq!(c.name, "process tasks");
        assert_eq!(c.span_kind, SpanKind::Consumer);
        assert_eq!(c.parent_span_id, p.span_context.span_id());
        assert_eq!(c.span_context.trace_id(), p.span_context.trace_id());
        assert_eq!(c.links.links[0].span_context.span_id(), p.span_context.span_id());
        assert_ne!(l.span_context.trace_id(), p.span_context.trace_id());
        assert_eq!(l.links.links[0].span_context.span_id(), p.span_context.span_id());
        assert!(c.attributes.iter().any(|kv| kv.key.as_str() == semconv::MESSAGING_MESSAGE_ID));
    }
}
