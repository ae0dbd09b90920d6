//! A producer and a consumer over a real broker, in one trace: the producer's `send` span
//! travels in the message headers (stream fields for Redis); the consumer's `process` span
//! parents on it and links to it, and carries the `session.id` baggage set at the edge.
//!
//! Run: `cargo run -p agentrace --example broker-pair -- nats|redis|amqp|kafka [URL]`. Without a
//! URL it uses the broker's standard local port, or the one `scripts/services.sh env` exports
//! (`AGENTRACE_NATS_URL`, `AGENTRACE_REDIS_URL`, `AGENTRACE_AMQP_URL`; Kafka: `127.0.0.1:9092`). The two
//! sides export as services `<broker>-producer` and `<broker>-consumer` over OTLP (`OTEL_*`).

#[path = "common/otlp.rs"]
mod otlp;

use std::time::Duration;

use agentrace::carrier::ContextCarrier;
use agentrace::messaging::{ConsumerSpan, ProducerSpan, system};
use futures::StreamExt;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

type Error = Box<dyn std::error::Error>;

struct Sides {
    producer: otlp::Telemetry,
    consumer: otlp::Telemetry,
}

impl Sides {
    fn new(producer: &'static str, consumer: &'static str) -> Self {
        Sides { producer: otlp::Telemetry::init(producer), consumer: otlp::Telemetry::init(consumer) }
    }
}

fn edge() -> Context {
    Context::new().with_baggage([KeyValue::new("session.id", "demo-session")])
}

fn report(process: &Context) {
    let sc = process.span().span_context().clone();
    let session = process.baggage().get("session.id").map(|v| v.as_str().to_owned());
    // An example's output is its point.
    #[allow(clippy::print_stdout)]
    {
        println!("consumer span {:016x} in trace {:032x}, session.id={session:?}", sc.span_id(), sc.trace_id());
    }
}

async fn nats(url: &str, sides: &Sides) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let subject = "agentrace.demo";
    let mut sub = client.subscribe(subject).await?;
    let send =
        ProducerSpan::new(system::NATS, subject, Some("demo-1")).start(&sides.producer.tracer("producer"), &edge());
    let mut headers = async_nats::HeaderMap::new();
    headers.inject_context(&send);
    client.publish_with_headers(subject, headers, "plan the trip".into()).await?;
    client.flush().await?;
    send.span().end();
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next()).await?.ok_or("subscription closed")?;
    let creation = msg.headers.map(|h| h.extract_context()).unwrap_or_default();
    let process =
        ConsumerSpan::new(system::NATS, subject, Some("demo-1")).start(&sides.consumer.tracer("consumer"), &creation);
    report(&process);
    process.span().end();
    Ok(())
}

async fn redis_stream(url: &str, sides: &Sides) -> Result<(), Error> {
    use agentrace::carrier::redis::{StreamFields, extract_from_entry};
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    let mut con = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let stream = "agentrace:demo";
    let send = ProducerSpan::new(system::REDIS, stream, None).start(&sides.producer.tracer("producer"), &edge());
    let mut fields = StreamFields::from_context(&send).0;
    fields.push(("payload".into(), "plan the trip".into()));
    let id: String = con.xadd(stream, "*", &fields).await?;
    send.span().set_attribute(KeyValue::new("messaging.message.id", id.clone()));
    send.span().end();
    let reply: StreamReadReply = con.xread_options(&[stream], &["0"], &StreamReadOptions::default().count(100)).await?;
    let entry = reply.keys.first().and_then(|k| k.ids.iter().find(|e| e.id == id)).ok_or("entry not found")?;
    let process = ConsumerSpan::new(system::REDIS, stream, Some(&entry.id))
        .start(&sides.consumer.tracer("consumer"), &extract_from_entry(&entry.map));
    report(&process);
    process.span().end();
    let _: i64 = con.xdel(stream, &[&id]).await?;
    Ok(())
}

async fn amqp(url: &str, sides: &Sides) -> Result<(), Error> {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let queue = "agentrace.demo";
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let send =
        ProducerSpan::new(system::RABBITMQ, queue, Some("demo-1")).start(&sides.producer.tracer("producer"), &edge());
    let mut headers = FieldTable::default();
    headers.inject_context(&send);
    let props = BasicProperties::default().with_headers(headers).with_message_id("demo-1".into());
    channel
        .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), b"plan the trip", props)
        .await?
        .await?;
    send.span().end();
    let mut deliveries = channel
        .basic_consume(queue.into(), "demo".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let delivery =
        tokio::time::timeout(Duration::from_secs(10), deliveries.next()).await?.ok_or("consumer closed")??;
    let creation = delivery.properties.headers().as_ref().map(|h| h.extract_context()).unwrap_or_default();
    let process =
        ConsumerSpan::new(system::RABBITMQ, queue, Some("demo-1")).start(&sides.consumer.tracer("consumer"), &creation);
    report(&process);
    process.span().end();
    delivery.ack(BasicAckOptions::default()).await?;
    Ok(())
}

async fn kafka(brokers: &str, sides: &Sides) -> Result<(), Error> {
    use agentrace::carrier::kafka::{extract_from, inject_into};
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = "agentrace-demo";
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "agentrace-demo")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let send =
        ProducerSpan::new(system::KAFKA, topic, Some("demo-1")).start(&sides.producer.tracer("producer"), &edge());
    let record =
        FutureRecord::to(topic).key("demo-1").payload("plan the trip").headers(inject_into(OwnedHeaders::new(), &send));
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
    send.span().end();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    let creation = msg.headers().map(extract_from).unwrap_or_default();
    let process =
        ConsumerSpan::new(system::KAFKA, topic, Some("demo-1")).start(&sides.consumer.tracer("consumer"), &creation);
    report(&process);
    process.span().end();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "nats".into());
    let url = args.next();
    let url_or =
        |var: &str, standard: &str| url.clone().or_else(|| std::env::var(var).ok()).unwrap_or_else(|| standard.into());
    let result = match broker.as_str() {
        "nats" => {
            let sides = Sides::new("nats-producer", "nats-consumer");
            let r = nats(&url_or("AGENTRACE_NATS_URL", "nats://127.0.0.1:4222"), &sides).await;
            (r, sides)
        }
        "redis" => {
            let sides = Sides::new("redis-producer", "redis-consumer");
            let r = redis_stream(&url_or("AGENTRACE_REDIS_URL", "redis://127.0.0.1:6379/"), &sides).await;
            (r, sides)
        }
        "amqp" => {
            let sides = Sides::new("amqp-producer", "amqp-consumer");
            let r = amqp(&url_or("AGENTRACE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"), &sides).await;
            (r, sides)
        }
        "kafka" => {
            let sides = Sides::new("kafka-producer", "kafka-consumer");
            let r = kafka(url.as_deref().unwrap_or("127.0.0.1:9092"), &sides).await;
            (r, sides)
        }
        other => return Err(format!("unknown broker {other:?}: use nats, redis, amqp or kafka").into()),
    };
    let (outcome, sides) = result;
    sides.producer.shutdown();
    sides.consumer.shutdown();
    outcome
}
