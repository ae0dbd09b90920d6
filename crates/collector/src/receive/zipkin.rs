//! Zipkin v2 receiver: `POST /api/v2/spans`, a JSON list of spans
//! (`application/json`, the default) or a protobuf `ListOfSpans`
//! (`application/x-protobuf`), plain or gzip. Off unless
//! `receivers.zipkin.endpoint` is set.
//!
//! The spans are translated to OTLP as the OpenTelemetry Collector's
//! Zipkin receiver translates them ([`agentrace_model::zipkin`]) and then
//! take the OTLP receivers' road: the same limits, redaction, store and
//! pipeline. Answers as Zipkin's server does: `202 Accepted` with no body;
//! `400` with a message saying what was wrong; `413`, `415`; `429`/`503`
//! with `Retry-After` when agentrace cannot take more right now.

use std::time::Instant;

use agentrace_model::zipkin::{self, ZipkinError};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{BodyError, InflateError, Ingest, IngestError, RETRY_AFTER, ReserveError, read_body};
use crate::metrics::{RefuseReason, Transport};

/// Zipkin's v2 spans path.
pub const SPANS_PATH: &str = "/api/v2/spans";

#[derive(Clone)]
struct ZipkinState {
    ingest: Ingest,
    max_request_bytes: usize,
}

/// The receiver's routes.
pub fn router(ingest: Ingest, max_request_bytes: usize) -> Router {
    Router::new().route(SPANS_PATH, post(receive)).with_state(ZipkinState { ingest, max_request_bytes })
}

fn answer(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

fn retry_later(status: StatusCode, message: String) -> Response {
    let mut response = answer(status, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER.as_secs().max(1)));
    response
}

async fn receive(State(state): State<ZipkinState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = take(&state, &headers, body).await;
    state.ingest.metrics().latency(Transport::Zipkin, started.elapsed());
    response
}

async fn take(state: &ZipkinState, headers: &HeaderMap, body: Body) -> Response {
    let metrics = state.ingest.metrics();
    let mime = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = match mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        // Zipkin's own server takes a body without a type as JSON.
        "" | "application/json" => true,
        "application/x-protobuf" | "application/protobuf" => false,
        _ => {
            metrics.refused_request(RefuseReason::UnsupportedMedia, 0);
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {mime:?}: send application/json or application/x-protobuf"),
            );
        }
    };
    if let Err(e) = state.ingest.check_memory() {
        return retry_later(StatusCode::TOO_MANY_REQUESTS, e.to_string());
    }
    let bytes = match read_body(body, state.max_request_bytes, state.ingest.read_timeout()).await {
        Ok(bytes) => bytes,
        Err(e @ BodyError::TooLarge(_)) => {
            metrics.refused_request(RefuseReason::TooLarge, 0);
            return answer(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Err(e @ BodyError::TimedOut(_)) => {
            metrics.refused_request(RefuseReason::Timeout, 0);
            return answer(StatusCode::REQUEST_TIMEOUT, e.to_string());
        }
        Err(e @ BodyError::Read(_)) => {
            metrics.refused_request(RefuseReason::Malformed, 0);
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let _admitted = match state.ingest.admit() {
        Ok(a) => a,
        Err(e) => return retry_later(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    };
    metrics.request(Transport::Zipkin, bytes.len());
    let payload = match state.ingest.inflate(headers, &bytes) {
        Ok(p) => p,
        Err(InflateError::TooLarge(e)) => return answer(StatusCode::PAYLOAD_TOO_LARGE, e),
        Err(InflateError::Malformed(e)) => return answer(StatusCode::BAD_REQUEST, e),
        Err(InflateError::Unsupported(e)) => return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, e),
    };
    let payload: &[u8] = &payload;
    let _decoding = match state.ingest.reserve_cost(zipkin::decoded_cost(payload, json)) {
        Ok(d) => d,
        Err(ReserveError::TooLarge(e)) => return answer(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        Err(ReserveError::Busy(e)) => return retry_later(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
    };
    let limits = state.ingest.limits();
    let decoded = if json { zipkin::decode_json(payload, limits) } else { zipkin::decode_protobuf(payload, limits) };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e @ ZipkinError::DecodedTooLarge { .. }) => {
            metrics.refused_request(RefuseReason::TooLarge, 0);
            return answer(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
        }
        Err(e) => {
            metrics.refused_request(RefuseReason::Malformed, 0);
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match state.ingest.ingest(decoded, Transport::Zipkin).await {
        // Zipkin has no partial success: spans that failed validation are
        // counted in /metrics and named in the log.
        Ok(accepted) => {
            if accepted.rejected_spans > 0 {
                tracing::warn!(
                    rejected = accepted.rejected_spans,
                    reason = %accepted.error_message,
                    "Zipkin spans refused by validation"
                );
            }
            StatusCode::ACCEPTED.into_response()
        }
        Err(e @ IngestError::Busy(_)) => retry_later(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e @ IngestError::Unavailable(_)) => retry_later(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
