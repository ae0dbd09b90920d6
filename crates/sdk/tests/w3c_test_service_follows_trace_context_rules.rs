//! The `w3c-test-service` example, driven the way the official W3C harness drives it: a
//! `POST /test` with context headers and a callback URL; the callback must carry the right
//! context. (The full harness is run by hand; this keeps the example honest in `cargo test`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start() -> (Service, String, String, Seen) {
    use std::io::BufRead;
    let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/w3c-test-service");
    assert!(exe.exists(), "{} missing: `cargo test -p agentrace` builds the examples", exe.display());
    // Port 0: the service binds a free port itself and says which, so no other test's server can
    // take the port between choosing it and binding it.
    let mut child = std::process::Command::new(exe)
        .arg("127.0.0.1:0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9") // nothing listens: export is not under test
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let service = Service(child);
    let url =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("the service said {line:?}")).to_owned();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/callback",
        post(move |headers: HeaderMap| async move {
            s.lock().unwrap().push(headers);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (service, url, callback, seen)
}

async fn roundtrip(url: &str, callback: &str, seen: &Seen, headers: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    seen.lock().unwrap().clear();
    let client = reqwest::Client::new();
    let mut req = client.post(url).json(&serde_json::json!([{"url": callback, "arguments": []}]));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let status = req.send().await.unwrap().status();
    assert!(status.is_success(), "service answered {status}");
    let got = seen.lock().unwrap().pop().expect("service called back");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in got.iter() {
        out.entry(k.as_str().to_owned()).or_default().push(v.to_str().unwrap().to_owned());
    }
    out
}

fn trace_id(h: &HashMap<String, Vec<String>>) -> String {
    let tp = &h["traceparent"];
    assert_eq!(tp.len(), 1, "exactly one traceparent goes out");
    tp[0][3..35].to_owned()
}

const TRACE: &str = "12345678901234567890123456789012";

#[tokio::test]
async fn callbacks_carry_the_context_w3c_requires() {
    let (_service, url, cb, seen) = start().await;
    let valid = "00-12345678901234567890123456789012-1234567890123456-01";

    let h = roundtrip(
        &url,
        &cb,
        &seen,
        &[("traceparent", valid), ("tracestate", "foo@@bar=1,bar=2"), ("baggage", "tok=abc==")],
    )
    .await;
    assert_eq!(trace_id(&h), TRACE);
    assert!(!h["traceparent"][0].contains("1234567890123456-01"), "a new parent id for the callback");
    assert_eq!(h["tracestate"], ["foo@@bar=1,bar=2"]);
    assert_eq!(h["baggage"], ["tok=abc=="]);

    for bad in [
        vec![("traceparent", "00-12345678901234567890123456789011-1234567890123456-01"), ("traceparent", valid)],
        vec![("traceparent", "00-1234567890123456789012345678901A-1234567890123456-01")],
        vec![("traceparent", "00-12345678901234567890123456789012-1234567890123456-01.")],
        vec![("traceparent", "ff-12345678901234567890123456789012-1234567890123456-01")],
    ] {
        let h = roundtrip(&url, &cb, &seen, &bad).await;
        assert_ne!(trace_id(&h), TRACE, "{bad:?} must restart the trace");
        assert_ne!(trace_id(&h), "12345678901234567890123456789011");
    }

    let h = roundtrip(&url, &cb, &seen, &[("traceparent", valid), ("tracestate", "foo=1,bar=2,baz=bar=baz")]).await;
    assert_eq!(trace_id(&h), TRACE, "a bad tracestate keeps the traceparent");
    assert!(!h.contains_key("tracestate"), "and is dropped whole");
}
