//! A blackhole OTLP/gRPC backend for export benchmarks: it acknowledges
//! every request, counts the spans, and prints spans/s once a second.
//!
//! ```sh
//! taskset -c 1 target/release/examples/blackhole --listen 127.0.0.1:14317 &
//! taskset -c 0 target/release/agentrace serve --export-otlp-endpoint http://127.0.0.1:14317 --export-otlp-protocol grpc
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

struct Blackhole {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Blackhole {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize =
            request.get_ref().resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:14317".to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            other => {
                eprintln!("unknown argument {other}; usage: blackhole [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let spans = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&spans);
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = counter.load(Ordering::Relaxed);
            if now != last {
                println!("{} spans/s ({now} total)", now - last);
                last = now;
            }
        }
    });
    // (Gzip accepted, as OTLP receivers do: Rotel 0.0.1-alpha10 compresses
    // whatever its compression flags say.)
    let service = TraceServiceServer::new(Blackhole { spans })
        .max_decoding_message_size(256 << 20)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(listen.parse().expect("an address like 127.0.0.1:14317"))
        .await
        .expect("blackhole serves");
}
