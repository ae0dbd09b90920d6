//! Shared set-up for the binary's integration tests: the real `agentrace
//! serve` on ephemeral ports, killed when the test ends, pass or fail.

#![allow(dead_code)]

pub mod demo;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `agentrace serve`.
pub struct Server {
    pub child: Child,
    /// OTLP/HTTP base URL.
    pub http: String,
    /// OTLP/gRPC address, `host:port`.
    pub grpc: String,
    /// API base URL.
    pub api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `agentrace serve` with `args` added (the data dir, a config), on
/// ephemeral ports for the listeners `args` do not place, and reads the
/// addresses it prints.
pub fn start<I, S>(args: I) -> Server
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    for flag in ["--otlp-grpc-addr", "--otlp-http-addr", "--ui-addr"] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.into(), "127.0.0.1:0".into()]);
        }
    }
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_agentrace")).arg("serve").args(args).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut http, mut api, mut grpc) = (None, None, None);
    while http.is_none() || api.is_none() || grpc.is_none() {
        let line = lines.next().expect("server printed its addresses").unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["OTLP/HTTP", addr, ..] => http = Some(format!("http://{addr}")),
            ["OTLP/gRPC", addr, ..] => grpc = Some((*addr).to_owned()),
            ["UI", "+", "API", url] => api = Some(url.to_string()),
            _ => {}
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, http: http.unwrap(), api: api.unwrap(), grpc: grpc.unwrap() }
}

/// One OTLP/HTTP protobuf request of `spans` spans of twenty attributes, all
/// of trace number `trace` (its ID ends in `tag`), for tests that count what
/// was acknowledged. Span times are recent: the default retention (7 days)
/// would otherwise delete them on a restart, which is retention working,
/// not a loss.
pub fn crash_request(trace: u64, tag: u8, spans: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&trace.to_be_bytes());
    trace_id[15] = tag;
    let text = |s: String| Some(AnyValue { value: Some(any_value::Value::StringValue(s)) });
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
            name: format!("step {i}"),
            kind: 1,
            start_time_unix_nano: now + i as u64,
            end_time_unix_nano: now + i as u64 + 500,
            attributes: (0..20)
                .map(|a| KeyValue { key: format!("attr.{a}"), value: text(format!("value-{a}-{i}")), key_strindex: 0 })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("crash-test".into()),
                    key_strindex: 0,
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The hex trace ID of [`crash_request`]'s trace number `trace`.
pub fn crash_trace_hex(trace: u64, tag: u8) -> String {
    format!("{trace:016x}00000000000000{tag:02x}")
}

/// Waits until `acked` holds at least `count` entries (a sender's
/// acknowledged requests), failing after a minute.
pub fn wait_until_acknowledged<T>(acked: &std::sync::Mutex<Vec<T>>, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < count {
        assert!(std::time::Instant::now() < deadline, "fewer than {count} requests acknowledged within a minute");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every one of [`crash_request`]'s `traces` (tagged `tag`) can be read
/// whole, `spans` spans each, from the collector at `api`.
pub fn assert_whole(api: &str, traces: &[u64], tag: u8, spans: usize, what: &str) {
    let client = reqwest::blocking::Client::new();
    for trace in traces {
        let url = format!("{api}/api/v3/traces/{}", crash_trace_hex(*trace, tag));
        let r = client.get(&url).send().unwrap();
        assert_eq!(r.status(), 200, "{what}: acknowledged trace {trace} lost");
        let body: serde_json::Value = r.json().unwrap();
        let got = body["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().len();
        assert_eq!(got, spans, "{what}: trace {trace} came back partial");
    }
}
