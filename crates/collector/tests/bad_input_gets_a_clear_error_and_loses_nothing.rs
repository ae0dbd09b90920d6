//! Claim: malformed, oversized or odd input gets a clear answer that says
//! what was wrong (or a documented normalisation), never a crash, and
//! nothing stored before is lost. Requests here are hand-made on purpose:
//! no real SDK sends these bytes.

use crate::support;

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::blocking::Client;

const GOOD_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn json_span(trace_id: &str, span_id: &str, extra: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"bad-input"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"{trace_id}","spanId":"{span_id}","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2"{extra}}}]}}]}}]}}"#
    )
}

struct Sent {
    status: u16,
    body: Vec<u8>,
}

fn post(client: &Client, url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Sent {
    let mut req = client.post(url).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    Sent { status, body: r.bytes().unwrap().to_vec() }
}

fn json_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["message"].as_str().unwrap().to_owned()
}

/// `google.rpc.Status`, as the receiver encodes it for protobuf clients.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn http_bad_input() {
    let collector = support::start(|c| {
        c.receivers.otlp.max_request_bytes = 64 * 1024;
        c.receivers.otlp.max_decompressed_bytes = 256 * 1024;
        c.receivers.otlp.max_attributes = 100;
    });
    let client = Client::new();
    let url = format!("{}/v1/traces", collector.http());
    let json = "application/json";
    let proto = "application/x-protobuf";

    // Something good is stored first; it must survive everything below.
    let ok = post(&client, &url, json, None, json_span(GOOD_TRACE, "00f067aa0ba902b7", "").into_bytes());
    assert_eq!(ok.status, 200);
    let before = support::fetch_trace(&collector.api(), GOOD_TRACE);

    let r = post(&client, &url, "text/plain", None, b"hello".to_vec());
    assert_eq!(r.status, 415);
    assert!(json_message(&r.body).contains("unsupported Content-Type"));

    let r = post(&client, &url, json, None, b"{\"resourceSpans\": [".to_vec());
    assert_eq!(r.status, 400);
    assert!(json_message(&r.body).starts_with("malformed OTLP JSON"), "{}", json_message(&r.body));

    let r = post(&client, &url, proto, None, vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
    assert_eq!(r.status, 400);
    let status = RpcStatus::decode(r.body.as_slice()).expect("a protobuf client gets a protobuf Status");
    assert_eq!(status.code, 3);
    assert!(status.message.starts_with("malformed OTLP protobuf"), "{}", status.message);

    // Non-UTF-8 in a protobuf string field.
    let span = [0x2a, 0x01, 0xff];
    let scope = [&[0x12, span.len() as u8][..], &span].concat();
    let resource = [&[0x12, scope.len() as u8][..], &scope].concat();
    let request = [&[0x0a, resource.len() as u8][..], &resource].concat();
    let r = post(&client, &url, proto, None, request);
    assert_eq!(r.status, 400);
    assert!(RpcStatus::decode(r.body.as_slice()).unwrap().message.contains("UTF-8"));

    let r = post(&client, &url, json, None, vec![b' '; 65 * 1024]);
    assert_eq!(r.status, 413);
    assert!(json_message(&r.body).contains("larger than the limit of 65536 bytes"));

    let r = post(&client, &url, json, Some("gzip"), gzip(&vec![b' '; 1024 * 1024]));
    assert_eq!(r.status, 413, "a gzip bomb is refused");
    assert!(json_message(&r.body).contains("inflates past the limit"));

    let r = post(&client, &url, json, Some("gzip"), b"\x1f\x8bnot really".to_vec());
    assert_eq!(r.status, 400);
    assert!(json_message(&r.body).contains("gzip"));

    let r = post(&client, &url, json, Some("br"), b"{}".to_vec());
    assert_eq!(r.status, 415);
    assert!(json_message(&r.body).contains("Content-Encoding"));

    // Enum names where integers belong: accepted, read as the integers.
    let named = json_span(
        "11111111111111111111111111111111",
        "2222222222222222",
        r#","kind":"SPAN_KIND_CONSUMER","status":{"code":"STATUS_CODE_ERROR"}"#,
    );
    let r = post(&client, &url, json, None, named.into_bytes());
    assert_eq!(r.status, 200);
    let got = support::fetch_trace(&collector.api(), "11111111111111111111111111111111");
    let span = &got.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!((span.kind, span.status.as_ref().unwrap().code), (5, 2));

    // Wrong-length and all-zero IDs: those spans are rejected, counted, explained.
    let mixed = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"33333333333333333333333333333333","spanId":"4444444444444444","name":"fine"},
            {"traceId":"00000000000000000000000000000000","spanId":"4444444444444445","name":"zero"},
            {"traceId":"3333333333333333333333333333","spanId":"4444444444444446","name":"short"},
            {"traceId":"33333333333333333333333333333333","spanId":"44444444","name":"short span"}]}]}]}"#;
    let r = post(&client, &url, json, None, mixed.as_bytes().to_vec());
    assert_eq!(r.status, 200);
    let response: ExportTraceServiceResponse = serde_json::from_slice(&r.body).unwrap();
    let partial = response.partial_success.expect("partial success is reported");
    assert_eq!(partial.rejected_spans, 3);
    assert!(partial.error_message.contains("all zeros"), "{}", partial.error_message);
    assert_eq!(support::fetch_trace(&collector.api(), "33333333333333333333333333333333").resource_spans.len(), 1);

    // Absurd attribute counts are capped and counted; absurd nesting rejects the span.
    let attrs: Vec<String> = (0..500).map(|i| format!(r#"{{"key":"k{i}","value":{{"intValue":"{i}"}}}}"#)).collect();
    let wide = json_span(
        "55555555555555555555555555555555",
        "6666666666666666",
        &format!(r#","attributes":[{}]"#, attrs.join(",")),
    );
    assert_eq!(post(&client, &url, json, None, wide.into_bytes()).status, 200);
    let got = support::fetch_trace(&collector.api(), "55555555555555555555555555555555");
    let span = &got.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!((span.attributes.len(), span.dropped_attributes_count), (100, 400));

    // Nothing stored before was touched, and the server still answers.
    assert_eq!(support::fetch_trace(&collector.api(), GOOD_TRACE), before);
    let (status, health) = support::get_json(&format!("{}/health", collector.api()));
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert!(
        support::metric(&collector.api(), "agentrace_receiver_requests_refused_total{reason=\"malformed\"}") >= 4.0
    );
    assert_eq!(
        support::metric(&collector.api(), "agentrace_receiver_spans_refused_total{reason=\"invalid_span\"}"),
        3.0
    );
    // The same count under the OpenTelemetry Collector's name, per transport.
    let refused = |t: &str| {
        support::metric(
            &collector.api(),
            &format!("otelcol_receiver_refused_spans{{receiver=\"otlp\",transport=\"{t}\"}}"),
        )
    };
    assert_eq!(refused("grpc") + refused("http"), 3.0);
}

#[test]
fn grpc_bad_input() {
    let collector = support::start(|c| {
        c.receivers.otlp.max_decompressed_bytes = 64 * 1024;
        c.receivers.otlp.max_request_bytes = 64 * 1024;
    });
    let err = support::grpc_raw(&collector, vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().starts_with("malformed OTLP protobuf"), "{}", err.message());

    // Over the limit: refused before decoding, and not with OUT_OF_RANGE,
    // which OTLP senders retry forever; it can never fit.
    let err = support::grpc_raw(&collector, vec![0u8; 100 * 1024]).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("at most 65536 bytes") && err.message().contains("smaller batches"), "{err}");

    // An empty request is valid OTLP and stores nothing.
    let ok = support::grpc_raw(&collector, Vec::new()).unwrap();
    assert_eq!(ok.partial_success, None);
    assert_eq!(
        support::metric(&collector.api(), "agentrace_receiver_requests_refused_total{reason=\"malformed\"}"),
        1.0
    );
}

/// `n` spans of one trace with nothing in them but valid IDs and a name:
/// a request with nothing to redact (it takes the byte-level lane), small
/// to send and large to decode.
fn small_spans(n: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let spans = (1..=n)
        .map(|i| Span {
            trace_id: support::hex_decode(GOOD_TRACE),
            span_id: i.to_be_bytes().to_vec(),
            name: "s".into(),
            ..Default::default()
        })
        .collect();
    support::one_scope(spans).encode_to_vec()
}

// A collector that keeps spans holds a request it never decodes to the
// decoded-size limit too (it reads every span into rows and blocks): the
// same body is refused over both transports whichever road it would take,
// and nothing of it is stored; one under the limit takes the lane.
#[test]
fn a_clean_request_past_the_decoded_limit_is_refused_as_a_decoded_one_is() {
    let collector = support::start(|c| c.receivers.otlp.max_decoded_bytes = 1024 * 1024);
    let body = small_spans(10_000);
    assert!(body.len() < 400 * 1024, "{} bytes sent", body.len());
    let http = Client::new()
        .post(format!("{}/v1/traces", collector.http()))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(http.status(), 413);
    let err = support::grpc_raw(&collector, body).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let undecoded = || support::metric(&collector.api(), "agentrace_receiver_requests_forwarded_undecoded_total");
    assert_eq!(undecoded(), 0.0);
    let (status, _) = support::get_json(&format!("{}/api/v3/traces/{GOOD_TRACE}", collector.api()));
    assert_eq!(status, 404, "nothing of it is stored");
    support::grpc_raw(&collector, small_spans(10)).unwrap();
    assert_eq!(undecoded(), 1.0);
}
