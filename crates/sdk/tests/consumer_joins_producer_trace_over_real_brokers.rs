//! Over real NATS, Redis and RabbitMQ (started by `scripts/services.sh start`): the consumer's
//! `process` span carries the producer's trace id, has the producer's `send` span as parent and
//! link, and carries the producer's baggage (as context and, through the baggage processor, as
//! span attributes).

mod common;

use std::time::Duration;

use agentrace::carrier::ContextCarrier;
use agentrace::messaging::{ConsumerSpan, ProducerSpan, system};
use common::{Telemetry, attr, broker_missing, broker_url};
use futures::StreamExt;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

fn edge_context() -> Context {
    Context::new().with_baggage([KeyValue::new("session.id", "sess=42"), KeyValue::new("user.id", "u-7")])
}

fn assert_joined(t: &Telemetry, destination: &str, consumer_baggage: &Context) {
    let send = t.span(&format!("send {destination}"));
    let process = t.span(&format!("process {destination}"));
    assert_eq!(process.span_context.trace_id(), send.span_context.trace_id(), "consumer is in the producer's trace");
    assert_eq!(process.parent_span_id, send.span_context.span_id(), "consumer's parent is the send span");
    assert_eq!(process.links.links.len(), 1);
    assert_eq!(process.links.links[0].span_context.span_id(), send.span_context.span_id());
    assert_eq!(attr(&process, "session.id").as_deref(), Some("sess=42"), "baggage value with '=' survives");
    assert_eq!(attr(&process, "user.id").as_deref(), Some("u-7"));
    assert_eq!(consumer_baggage.baggage().get("session.id").map(|v| v.as_str().to_owned()), Some("sess=42".into()));
    assert_eq!(attr(&process, "messaging.message.id"), attr(&send, "messaging.message.id"));
}

#[tokio::test]
async fn nats_consumer_joins_producer_trace() {
    let t = Telemetry::new();
    let (producer, consumer) = (t.tracer("producer"), t.tracer("consumer"));
    let client = async_nats::connect(broker_url("AGENTRACE_NATS_URL"))
        .await
        .unwrap_or_else(|e| broker_missing("nats-server", e));
    let subject = "agentrace.test.tasks";
    let mut sub = client.subscribe(subject).await.unwrap();

    let send = ProducerSpan::new(system::NATS, subject, Some("msg-1")).start(&producer, &edge_context());
    let mut headers = async_nats::HeaderMap::new();
    headers.inject_context(&send);
    headers.insert("message-id", "msg-1");
    client.publish_with_headers(subject, headers, "plan".into()).await.unwrap();
    client.flush().await.unwrap();
    send.span().end();

    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("message in 10 s").unwrap();
    let headers = msg.headers.expect("headers arrive");
    let creation = headers.extract_context();
    let id = headers.get("message-id").map(|v| v.as_str().to_owned());
    let process = ConsumerSpan::new(system::NATS, subject, id.as_deref()).start(&consumer, &creation);
    process.span().end();
    assert_joined(&t, subject, &process);
}

#[tokio::test]
async fn redis_stream_consumer_joins_producer_trace() {
    use agentrace::carrier::redis::{StreamFields, extract_from_entry};
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};

    let t = Telemetry::new();
    let (producer, consumer) = (t.tracer("producer"), t.tracer("consumer"));
    let client = redis::Client::open(broker_url("AGENTRACE_REDIS_URL")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| broker_missing("redis-server", e));
    let stream = format!("agentrace:test:{}", std::process::id());

    let send = ProducerSpan::new(system::REDIS, &stream, None).start(&producer, &edge_context());
    let mut fields = StreamFields::from_context(&send).0;
    fields.push(("payload".into(), "plan".into()));
    let id: String = con.xadd(&stream, "*", &fields).await.unwrap();
    send.span().set_attribute(KeyValue::new("messaging.message.id", id.clone()));
    send.span().end();

    let reply: StreamReadReply =
        con.xread_options(&[&stream], &["0"], &StreamReadOptions::default().count(1).block(5000)).await.unwrap();
    let entry = &reply.keys[0].ids[0];
    let creation = extract_from_entry(&entry.map);
    let process = ConsumerSpan::new(system::REDIS, &stream, Some(&entry.id)).start(&consumer, &creation);
    process.span().end();
    let _: () = con.del(&stream).await.unwrap();
    assert_joined(&t, &stream, &process);
}

#[tokio::test]
async fn amqp_consumer_joins_producer_trace() {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let t = Telemetry::new();
    let (producer, consumer) = (t.tracer("producer"), t.tracer("consumer"));
    let conn = Connection::connect(&broker_url("AGENTRACE_AMQP_URL"), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| broker_missing("rabbitmq-server", e));
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("agentrace.test.{}", std::process::id());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let send = ProducerSpan::new(system::RABBITMQ, &queue, Some("amqp-1")).start(&producer, &edge_context());
    let mut headers = FieldTable::default();
    headers.inject_context(&send);
    let props = BasicProperties::default().with_headers(headers).with_message_id("amqp-1".into());
    channel
        .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), b"plan", props)
        .await
        .unwrap()
        .await
        .unwrap();
    send.span().end();

    let mut consumer_stream = channel
        .basic_consume(queue.as_str().into(), "t".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer_stream.next())
        .await
        .expect("delivery in 10 s")
        .unwrap()
        .unwrap();
    let headers = delivery.properties.headers().clone().expect("headers arrive");
    let creation = headers.extract_context();
    let id = delivery.properties.message_id().as_ref().map(|s| s.as_str().to_owned());
    let process = ConsumerSpan::new(system::RABBITMQ, &queue, id.as_deref()).start(&consumer, &creation);
    process.span().end();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    assert_joined(&t, &queue, &process);
    assert!(creation.span().span_context().is_remote());
}
