//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The service is written out here rather than generated, for one reason:
//! the generated server decodes with tonic's prost codec, which answers a
//! malformed message with `INTERNAL`. OTLP wants `INVALID_ARGUMENT` (not
//! retryable) and a message saying what was wrong, so tonic hands us the
//! raw (already decompressed, size-capped) bytes and our own bounded decoder
//! does the rest, the same one the HTTP receiver and the fuzz targets use.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use agentrace_model::otlp;
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::{Code, Status};

use super::status::RpcStatus;
use super::{BodyError, Ingest, IngestError, RETRY_AFTER, ReserveError, read_body};
use crate::metrics::{RefuseReason, Transport};

/// The gRPC method path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The trace service, ready to be routed (see [`tonic::service::Routes`]).
#[derive(Clone)]
pub struct TraceGrpc {
    ingest: Ingest,
    max_message_bytes: usize,
}

impl TraceGrpc {
    /// A service over `ingest`. `max_message_bytes` caps a message both as
    /// sent and after gzip inflation (tonic applies one limit to both).
    pub fn new(ingest: Ingest, max_message_bytes: usize) -> TraceGrpc {
        TraceGrpc { ingest, max_message_bytes }
    }
}

impl tonic::server::NamedService for TraceGrpc {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for TraceGrpc
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented("agentrace receives traces only (TraceService/Export)").into_http())
            });
        }
        let this = self.clone();
        Box::pin(async move {
            // Under memory pressure, refuse before the body is read.
            if let Err(e) = this.ingest.check_memory() {
                return Ok(retryable(Code::ResourceExhausted, e.to_string()).into_http());
            }
            let max = this.max_message_bytes;
            // The whole body first, within the read timeout: a client that
            // trickles its message holds a stream for that long at most, and
            // no place among the requests handled at once. One message of at
            // most `max` bytes plus its 5-byte gRPC frame header.
            let (parts, body) = req.into_parts();
            let bytes = match read_body(body, max.saturating_add(5), this.ingest.read_timeout()).await {
                Ok(bytes) => bytes,
                Err(BodyError::TooLarge(_)) => {
                    this.ingest.metrics().refused_request(RefuseReason::TooLarge, 0);
                    return Ok(too_large(&format!("the message is larger than {max} bytes"), max).into_http());
                }
                Err(e @ BodyError::TimedOut(_)) => {
                    this.ingest.metrics().refused_request(RefuseReason::Timeout, 0);
                    return Ok(Status::deadline_exceeded(e.to_string()).into_http());
                }
                Err(e @ BodyError::Read(_)) => {
                    this.ingest.metrics().refused_request(RefuseReason::Malformed, 0);
                    return Ok(Status::invalid_argument(e.to_string()).into_http());
                }
            };
            let admitted = match this.ingest.admit() {
                Ok(a) => a,
                Err(e) => return Ok(retryable(Code::ResourceExhausted, e.to_string()).into_http()),
            };
            let mut encodings = EnabledCompressionEncodings::default();
            encodings.enable(tonic::codec::CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(encodings, encodings)
                .apply_max_message_size_config(Some(max), None);
            let req = http::Request::from_parts(parts, http_body_util::Full::new(bytes));
            let response = grpc.unary(ExportCall(this), req).await;
            drop(admitted);
            Ok(too_large_is_final(response, max))
        })
    }
}

/// tonic refuses a message over the size limit with `OUT_OF_RANGE`, which
/// OTLP lists as retryable: a sender would resend the same batch forever.
/// It can never fit, so it is answered `INVALID_ARGUMENT` (not retryable)
/// with what to do about it.
fn too_large_is_final(response: http::Response<tonic::body::Body>, max: usize) -> http::Response<tonic::body::Body> {
    let out_of_range = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.parse::<i32>().ok() == Some(Code::OutOfRange as i32));
    if !out_of_range {
        return response;
    }
    let said = response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| percent_encoding::percent_decode_str(m).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    too_large(&said, max).into_http()
}

/// The final answer to a message that can never fit.
fn too_large(said: &str, max: usize) -> Status {
    Status::invalid_argument(format!(
        "{said}: this collector takes messages of at most {max} bytes (receivers.otlp.max_request_bytes and \
         max_decompressed_bytes); send smaller batches (the SDK's max export batch size)"
    ))
}

struct ExportCall(TraceGrpc);

impl tonic::server::UnaryService<Bytes> for ExportCall {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Result<tonic::Response<ExportTraceServiceResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.0.ingest.clone();
        Box::pin(async move {
            let started = Instant::now();
            let body = request.into_inner();
            let metrics = ingest.metrics().clone();
            metrics.request(Transport::Grpc, body.len());
            let result = export(&ingest, body).await;
            metrics.latency(Transport::Grpc, started.elapsed());
            result.map(tonic::Response::new)
        })
    }
}

async fn export(ingest: &Ingest, body: Bytes) -> Result<ExportTraceServiceResponse, Status> {
    // Memory for what the request takes once decoded, reserved before
    // anything is decoded and held until it is stored. A collector that keeps
    // or diagnoses spans reserves it for a clean body too, which it reads
    // into as many rows and blocks (so the same body meets the same limit
    // whichever road it takes); a pass-through makes nothing of a clean body.
    let reserve = || match ingest.reserve_decoding(&body, otlp::Format::Protobuf) {
        Ok(d) => Ok(d),
        Err(ReserveError::TooLarge(e)) => Err(Status::invalid_argument(e.to_string())),
        Err(ReserveError::Busy(e)) => Err(retryable(Code::ResourceExhausted, e.to_string())),
    };
    let early = if ingest.is_pass_through() { None } else { Some(reserve()?) };
    // A clean body is taken as it came, never decoded.
    if let Some(clean) = ingest.clean(&body) {
        return answer(ingest.ingest_clean(clean, Transport::Grpc).await);
    }
    let _decoding = match early {
        Some(d) => d,
        None => reserve()?,
    };
    // (The reservation held the decoded cost within the limit.)
    let decoded = match otlp::decode_estimated(&body, otlp::Format::Protobuf, ingest.limits()) {
        Ok(d) => d,
        Err(e) => {
            ingest.metrics().refused_request(RefuseReason::Malformed, 0);
            return Err(Status::invalid_argument(e.to_string()));
        }
    };
    answer(ingest.ingest(decoded, Transport::Grpc).await)
}

fn answer(result: Result<super::Accepted, IngestError>) -> Result<ExportTraceServiceResponse, Status> {
    match result {
        Ok(accepted) => Ok(accepted.into_response()),
        Err(e @ IngestError::Busy(_)) => Err(retryable(Code::ResourceExhausted, e.to_string())),
        Err(e @ IngestError::Unavailable(_)) => Err(retryable(Code::Unavailable, e.to_string())),
    }
}

/// A retryable status whose details carry how long to wait.
fn retryable(code: Code, message: String) -> Status {
    let details = RpcStatus::retry_after(code as i32, message.clone(), RETRY_AFTER);
    Status::with_details(code, message, Bytes::from(details.encode_to_vec()))
}

/// A codec that hands the request through as bytes and encodes the
/// response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<ExportTraceServiceResponse, ExportTraceServiceResponse>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n)))
    }
}
