//! OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, plain or gzip.
//!
//! Answers as the OTLP/HTTP specification says: `200` with an
//! `ExportTraceServiceResponse` (partial success when spans were rejected),
//! `400` with a `google.rpc.Status` naming the problem, `413` for a body
//! over the limit, `408` for a body that did not arrive within the read
//! timeout, `415` for an unsupported content type or encoding, and
//! `429`/`503` with `Retry-After` when agentrace cannot take more right now.
//! Each answer is encoded in the request's own content type.

use std::time::Instant;

use agentrace_model::otlp;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;

use super::status::RpcStatus;
use super::{Accepted, BodyError, InflateError, Ingest, IngestError, RETRY_AFTER, ReserveError, read_body};
use crate::metrics::{RefuseReason, Transport};

/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";

#[derive(Clone)]
struct HttpState {
    ingest: Ingest,
    max_request_bytes: usize,
}

/// The receiver's routes.
pub fn router(ingest: Ingest, max_request_bytes: usize) -> Router {
    Router::new().route(TRACES_PATH, post(export)).with_state(HttpState { ingest, max_request_bytes })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn transport(self) -> Transport {
        match self {
            Encoding::Protobuf => Transport::HttpProtobuf,
            Encoding::Json => Transport::HttpJson,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

async fn export(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let metrics = state.ingest.metrics().clone();
    let mime = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let encoding = match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            metrics.refused_request(RefuseReason::UnsupportedMedia, 0);
            let message = format!("unsupported Content-Type {mime:?}: send application/x-protobuf or application/json");
            return status_response(Encoding::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, message);
        }
    };
    let response = receive(&state, &headers, body, encoding).await;
    metrics.latency(encoding.transport(), started.elapsed());
    response
}

async fn receive(state: &HttpState, headers: &HeaderMap, body: Body, encoding: Encoding) -> Response {
    let metrics = state.ingest.metrics();
    if let Err(e) = state.ingest.check_memory() {
        return retry_later(encoding, StatusCode::TOO_MANY_REQUESTS, 8, e.to_string());
    }
    let bytes = match read_body(body, state.max_request_bytes, state.ingest.read_timeout()).await {
        Ok(bytes) => bytes,
        Err(e @ BodyError::TooLarge(_)) => {
            metrics.refused_request(RefuseReason::TooLarge, 0);
            return status_response(encoding, StatusCode::PAYLOAD_TOO_LARGE, 8, e.to_string());
        }
        Err(e @ BodyError::TimedOut(_)) => {
            metrics.refused_request(RefuseReason::Timeout, 0);
            return status_response(encoding, StatusCode::REQUEST_TIMEOUT, 4, e.to_string());
        }
        Err(e @ BodyError::Read(_)) => {
            metrics.refused_request(RefuseReason::Malformed, 0);
            return status_response(encoding, StatusCode::BAD_REQUEST, 3, e.to_string());
        }
    };
    // A place among the requests handled at once, taken only now that the
    // body is here: decoding, redaction and the store are what it bounds.
    let _admitted = match state.ingest.admit() {
        Ok(a) => a,
        Err(e) => return retry_later(encoding, StatusCode::TOO_MANY_REQUESTS, 8, e.to_string()),
    };
    metrics.request(encoding.transport(), bytes.len());
    let payload = match state.ingest.inflate(headers, &bytes) {
        Ok(p) => p,
        Err(InflateError::TooLarge(e)) => return status_response(encoding, StatusCode::PAYLOAD_TOO_LARGE, 8, e),
        Err(InflateError::Malformed(e)) => return status_response(encoding, StatusCode::BAD_REQUEST, 3, e),
        Err(InflateError::Unsupported(e)) => {
            return status_response(encoding, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, e);
        }
    };
    // The body as inflated: a clean one is taken as it is.
    let payload: bytes::Bytes = match payload {
        std::borrow::Cow::Borrowed(_) => bytes.clone(),
        std::borrow::Cow::Owned(inflated) => bytes::Bytes::from(inflated),
    };
    // Memory for what the request takes once decoded, reserved before
    // anything is decoded and held until it is stored. A collector that keeps
    // or diagnoses spans reserves it for a clean body too, which it reads
    // into as many rows and blocks (so the same body meets the same limit
    // whichever road it takes); a pass-through makes nothing of a clean body.
    let format = match encoding {
        Encoding::Protobuf => otlp::Format::Protobuf,
        Encoding::Json => otlp::Format::Json,
    };
    let reserve = || match state.ingest.reserve_decoding(&payload, format) {
        Ok(d) => Ok(d),
        Err(ReserveError::TooLarge(e)) => {
            Err(Box::new(status_response(encoding, StatusCode::PAYLOAD_TOO_LARGE, 3, e.to_string())))
        }
        Err(ReserveError::Busy(e)) => {
            Err(Box::new(retry_later(encoding, StatusCode::TOO_MANY_REQUESTS, 8, e.to_string())))
        }
    };
    let early = match state.ingest.is_pass_through() {
        true => None,
        false => match reserve() {
            Ok(d) => Some(d),
            Err(refused) => return *refused,
        },
    };
    // A clean protobuf body is taken as it came, never decoded.
    let clean = match encoding {
        Encoding::Protobuf => state.ingest.clean(&payload),
        Encoding::Json => None,
    };
    if let Some(clean) = clean {
        return answer(encoding, state.ingest.ingest_clean(clean, encoding.transport()).await);
    }
    let _decoding = match early.map_or_else(reserve, Ok) {
        Ok(d) => d,
        Err(refused) => return *refused,
    };
    // (The reservation held the decoded cost within the limit.)
    let decoded = match otlp::decode_estimated(&payload, format, state.ingest.limits()) {
        Ok(d) => d,
        Err(e) => {
            metrics.refused_request(RefuseReason::Malformed, 0);
            return status_response(encoding, StatusCode::BAD_REQUEST, 3, e.to_string());
        }
    };
    answer(encoding, state.ingest.ingest(decoded, encoding.transport()).await)
}

fn answer(encoding: Encoding, result: Result<Accepted, IngestError>) -> Response {
    match result {
        Ok(accepted) => {
            let response = accepted.into_response();
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
            };
            ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(e @ IngestError::Busy(_)) => retry_later(encoding, StatusCode::TOO_MANY_REQUESTS, 8, e.to_string()),
        Err(e @ IngestError::Unavailable(_)) => {
            retry_later(encoding, StatusCode::SERVICE_UNAVAILABLE, 14, e.to_string())
        }
    }
}

fn status_response(encoding: Encoding, status: StatusCode, code: i32, message: String) -> Response {
    let rpc = RpcStatus::new(code, message);
    let body = match encoding {
        Encoding::Protobuf => rpc.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&rpc).unwrap_or_default(),
    };
    (status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

fn retry_later(encoding: Encoding, status: StatusCode, code: i32, message: String) -> Response {
    let mut response = status_response(encoding, status, code, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER.as_secs().max(1)));
    response
}
