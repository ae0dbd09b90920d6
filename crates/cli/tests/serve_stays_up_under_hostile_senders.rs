//! Claim: hostile senders neither crash `agentrace serve` nor lock a
//! well-behaved sender out.
//!
//! - Slow clients: with places for 4 requests at once, 16 connections send
//!   OTLP/HTTP headers and then their body one byte at a time (a slow-loris
//!   body). A body still arriving holds no place, so a normal sender's export
//!   is accepted while they trickle. Each trickled body is cut off at the
//!   read timeout with a 408 that says why (counted under
//!   `reason="timeout"` in `/metrics`), and a connection that sends nothing
//!   at all is closed at the header timeout. The same over OTLP/gRPC: 16
//!   HTTP/2 streams trickling their message hold no place, a polite export
//!   is answered OK, and each trickled stream ends in `DEADLINE_EXCEEDED`.
//! - Memory amplification: 16 MB of empty spans (2 bytes each on the wire,
//!   hundreds decoded), a 61 KB gzip body inflating to 60 MiB of them, and
//!   three such bodies at once are refused for what they would take once
//!   decoded, with a final answer that says so; the server's resident
//!   memory stays under its limit, and a normal sender is served after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support;

const SLOW_CLIENTS: usize = 16;

fn span_json(name: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"polite"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"{name}","kind":1,"startTimeUnixNano":"{now}","endTimeUnixNano":"{}"}}]}}]}}]}}"#,
        now + 1_000_000
    )
}

/// What the server answered on `stream`, up to the first 4 KiB or the end.
fn answer(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    loop {
        match stream.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == buf.len() || String::from_utf8_lossy(&buf[..got]).contains("did not arrive") {
                    break;
                }
            }
            Err(e) => panic!("no answer within 60 s ({e}): the slow connection was never cut off"),
        }
    }
    String::from_utf8_lossy(&buf[..got]).into_owned()
}

#[test]
fn trickling_clients_lock_no_one_out_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(
        &config,
        "receivers:\n  otlp:\n    max_concurrent_requests: 4\n    read_timeout: 3s\n    read_header_timeout: 2s\n",
    )
    .unwrap();
    let server = support::start([
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().join("data").as_os_str(),
    ]);
    let addr = server.http.trim_start_matches("http://").to_owned();

    // Sixteen slow clients: headers promising 100 kB, then a byte every 200 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(
                b"POST /v1/traces HTTP/1.1\r\nHost: agentrace\r\nContent-Type: application/json\r\n\
                  Content-Length: 100000\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    let tricklers: Vec<_> = slow
        .iter()
        .map(|s| {
            let (mut s, stop) = (s.try_clone().unwrap(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && s.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    // Let their headers reach the server's handlers before the polite sender
    // comes (ordering only; nothing is asserted on time).
    std::thread::sleep(Duration::from_millis(500));

    // A polite sender is served while they trickle.
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .body(span_json("polite request"))
        .send()
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200, "a polite sender was refused while slow clients trickled: {}", r.text().unwrap());

    // Every trickled body is cut off at the read timeout, with a reason.
    for (i, s) in slow.iter_mut().enumerate() {
        let text = answer(s);
        assert!(text.starts_with("HTTP/1.1 408"), "slow client {i} got: {text:?}");
        assert!(text.contains("did not arrive within 3s"), "slow client {i} got: {text:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.join().unwrap();
    }
    let metrics = client.get(format!("{}/metrics", server.api)).send().unwrap().text().unwrap();
    let timeouts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("agentrace_receiver_requests_refused_total{reason=\"timeout\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the timeout refusals are in /metrics");
    assert!(timeouts >= SLOW_CLIENTS as f64, "{timeouts} timeouts counted for {SLOW_CLIENTS} slow clients");

    // A connection that never sends a request head is closed, and so is a
    // keep-alive connection left idle after its request was answered.
    let mut idle = TcpStream::connect(&addr).unwrap();
    assert_closed(&mut idle, "a connection that sent nothing");
    let mut kept = TcpStream::connect(&addr).unwrap();
    let body = span_json("kept-alive request");
    write!(
        kept,
        "POST /v1/traces HTTP/1.1\r\nHost: agentrace\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the kept-alive request was answered");
    assert_closed(&mut kept, "an idle keep-alive connection");
}

/// Reads until the server closes `stream`; fails if it is still open after 60 s.
fn assert_closed(stream: &mut TcpStream, what: &str) {
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // the rest of an answer
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what} was still open after 60 s ({e})"),
        }
    }
}

/// Protobuf of one ResourceSpans/ScopeSpans holding `n` empty spans.
fn empty_spans(n: usize) -> Vec<u8> {
    fn varint(mut v: usize, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let scope_len = 2 * n;
    let mut rs = vec![0x12]; // ResourceSpans.scope_spans
    varint(scope_len, &mut rs);
    let mut body = vec![0x0a]; // ExportTraceServiceRequest.resource_spans
    varint(rs.len() + scope_len, &mut body);
    body.extend_from_slice(&rs);
    body.reserve(scope_len);
    for _ in 0..n {
        body.extend_from_slice(&[0x12, 0x00]); // ScopeSpans.spans: an empty Span
    }
    body
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn amplified_bodies_are_refused_for_what_they_would_decode_to() {
    const LIMIT: u64 = 512 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, format!("receivers:\n  otlp:\n    memory_limit: {LIMIT}\n")).unwrap();
    let mut server = support::start([
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().join("data").as_os_str(),
    ]);
    let pid = server.child.id();
    let url = format!("{}/v1/traces", server.http);
    let client = reqwest::blocking::Client::new();
    let post = |body: Vec<u8>, gzip: bool| {
        let mut r = client.post(&url).header("content-type", "application/x-protobuf");
        if gzip {
            r = r.header("content-encoding", "gzip");
        }
        let r = r.body(body).send().unwrap();
        let status = r.status();
        (status, String::from_utf8_lossy(&r.bytes().unwrap()).into_owned())
    };

    // 16 MB of empty spans: 8 million spans once decoded.
    let flat = empty_spans(8 * 1024 * 1024 - 16);
    assert!(flat.len() <= 16 * 1024 * 1024);
    let (status, text) = post(flat.clone(), false);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("once decoded") && text.contains("send smaller batches"), "{text}");

    // A gzip bomb: ~60 KiB that inflate to 60 MiB of empty spans.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &empty_spans(30 * 1024 * 1024)).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 128 * 1024, "{} bytes", bomb.len());
    let (status, text) = post(bomb, true);
    assert_eq!(status, 413, "{text}");

    // Three at once.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (url, body) = (url.clone(), flat.clone());
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 413);
    }

    // Still up, within its limit, and serving.
    assert!(server.child.try_wait().unwrap().is_none(), "the server died");
    let rss = resident_bytes(pid);
    assert!(rss < LIMIT, "resident {rss} bytes, over the {LIMIT}-byte memory limit");
    let r = client.post(&url).header("content-type", "application/json").body(span_json("after the attack")).send();
    assert_eq!(r.unwrap().status(), 200);
    let _ = server.child.kill();
}

/// The `grpc-status` of a response: in its headers (a trailers-only
/// answer) or in its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> (String, String) {
    let response = response.await.expect("an HTTP/2 response");
    let header = |h: &http::HeaderMap, k: &str| h.get(k).map(|v| v.to_str().unwrap_or_default().to_owned());
    if let Some(status) = header(response.headers(), "grpc-status") {
        return (status, header(response.headers(), "grpc-message").unwrap_or_default());
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the response body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("gRPC trailers");
    (header(&trailers, "grpc-status").unwrap_or_default(), header(&trailers, "grpc-message").unwrap_or_default())
}

#[test]
fn trickling_grpc_streams_lock_no_one_out_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, "receivers:\n  otlp:\n    max_concurrent_requests: 4\n    read_timeout: 3s\n").unwrap();
    let server = support::start([
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().join("data").as_os_str(),
    ]);
    let addr = server.grpc.clone();
    let export = format!("http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let request = |uri: &str| {
        http::Request::post(uri).header("content-type", "application/grpc").header("te", "trailers").body(()).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let mut slow = Vec::new();
        for _ in 0..SLOW_CLIENTS {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let (client, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            let mut client = client.ready().await.unwrap();
            let (response, mut send) = client.send_request(request(&export), false).unwrap();
            // A gRPC frame promising 1000 bytes, then one every 200 ms.
            send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 3, 232]), false).unwrap();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) && send.send_data(bytes::Bytes::from_static(b" "), false).is_ok() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            slow.push(response);
        }
        // Let their streams reach the server (ordering only).
        tokio::time::sleep(Duration::from_millis(500)).await;

        // A polite export, over its own connection, is answered OK meanwhile.
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let body: ExportTraceServiceRequest =
            serde_json::from_str(&span_json("polite grpc request")).expect("OTLP JSON");
        let message = body.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let (response, mut send) = client.send_request(request(&export), false).unwrap();
        send.send_data(bytes::Bytes::from(frame), true).unwrap();
        let (status, message) = grpc_status(response).await;
        assert_eq!(status, "0", "a polite export was refused while streams trickled: {message}");

        // Every trickled stream is cut off at the read timeout, with a reason.
        for (i, response) in slow.into_iter().enumerate() {
            let (status, message) = grpc_status(response).await;
            assert_eq!(status, "4", "slow stream {i}: DEADLINE_EXCEEDED expected, got {status} {message}");
            assert!(message.contains("did%20not%20arrive") || message.contains("did not arrive"), "{message}");
        }
        stop.store(true, Ordering::Relaxed);
    });
}
