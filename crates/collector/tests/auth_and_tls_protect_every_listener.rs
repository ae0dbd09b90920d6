//! Claims: with a bearer token configured, every receiver and API route but
//! `/health` refuses a request without it (gRPC as `UNAUTHENTICATED`), and
//! the official Python SDK gets through with
//! `OTEL_EXPORTER_OTLP_HEADERS`-style headers; with TLS configured, the SDK
//! exports over TLS to both receivers and the API answers over HTTPS.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use agentrace_collector::config::TlsConfig;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

#[test]
fn bearer_token_guards_receivers_and_api() {
    let collector = support::start(|c| c.auth.bearer_token = Some("s3cret-token".into()));
    let client = reqwest::blocking::Client::new();

    let r = client.get(format!("{}/api/v3/services", collector.api())).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client
        .post(format!("{}/v1/traces", collector.http()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer wrong")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let err = support::grpc_raw(&collector, Vec::new()).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    assert_eq!(client.get(format!("{}/health", collector.api())).send().unwrap().status(), 200);

    // The real SDKs, with the header, over both transports.
    for (protocol, endpoint) in [("grpc", collector.grpc()), ("http/protobuf", collector.http())] {
        let sent = support::python_send(&[
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--header",
            "authorization=Bearer s3cret-token",
        ]);
        let r = client
            .get(format!("{}/api/v3/traces/{}", collector.api(), sent.trace_ids[0]))
            .bearer_auth("s3cret-token")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{protocol}");
    }
    // Without the header the Python SDK's export fails, and the sender says so.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_spans.py");
    let out = Command::new(support::python())
        .arg(script)
        .args(["--protocol", "http/protobuf", "--endpoint", &collector.http()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an export without the token must not be acknowledged");
}

#[test]
fn tls_on_every_listener() {
    let collector = support::start(|c| {
        c.tls = Some(TlsConfig { cert_file: fixture("test-only-cert.pem"), key_file: fixture("test-only-key.pem") })
    });
    let c = collector.collector.as_ref().unwrap();
    let grpc = format!("https://localhost:{}", c.grpc_addr.unwrap().port());
    let http = format!("https://localhost:{}", c.http_addr.unwrap().port());
    let api = format!("https://localhost:{}", c.api_addr.unwrap().port());
    let cert = fixture("test-only-cert.pem");
    for (protocol, endpoint) in [("grpc", &grpc), ("http/protobuf", &http)] {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_spans.py");
        let out = Command::new(support::python())
            .arg(script)
            .args(["--protocol", protocol, "--endpoint", endpoint])
            .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &cert)
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &cert)
            // `requests` lets these override the exporter's own CA setting.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol} over TLS failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The API speaks HTTPS too; plain HTTP to it gets nowhere.
    let out = Command::new(support::python())
        .args(["-c", "import requests, sys; print(requests.get(sys.argv[1], verify=sys.argv[2]).text)"])
        .arg(format!("{api}/api/v3/services"))
        .arg(&cert)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("py-orchestrator"), "{body} {}", String::from_utf8_lossy(&out.stderr));
    let plain = reqwest::blocking::Client::new().get(format!("http://{}/api/v3/services", c.api_addr.unwrap())).send();
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}
