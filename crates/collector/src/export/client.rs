//! One OTLP request to one backend, over gRPC or HTTP, with the answer
//! sorted into taken, retryable and refused for good.

use std::str::FromStr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;

use crate::config::{ExportProtocol, ExporterConfig};

/// Why an export did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Worth trying again, after `after` if the backend said.
    #[error("{message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// The backend's requested delay.
        after: Option<Duration>,
    },
    /// The backend refused the data for good.
    #[error("{0}")]
    Permanent(String),
    /// The exporter's settings cannot work (bad URL, bad header).
    #[error("exporter configuration: {0}")]
    Config(String),
}

/// A client for one backend.
pub enum OtlpClient {
    /// OTLP/gRPC.
    Grpc {
        /// The generated client.
        client: TraceServiceClient<Channel>,
        /// Metadata sent with every request.
        metadata: MetadataMap,
        /// Per-request deadline.
        timeout: Duration,
    },
    /// OTLP/HTTP.
    Http {
        /// The HTTP client.
        client: reqwest::Client,
        /// `…/v1/traces`.
        url: String,
        /// JSON rather than protobuf bodies.
        json: bool,
        /// Headers sent with every request.
        headers: reqwest::header::HeaderMap,
    },
}

impl OtlpClient {
    /// A client for `config`'s endpoint and protocol; connects lazily.
    pub fn new(config: &ExporterConfig) -> Result<OtlpClient, ClientError> {
        match config.protocol {
            ExportProtocol::Grpc => {
                let channel = Channel::from_shared(config.endpoint.clone())
                    .map_err(|e| ClientError::Config(format!("{}: {e}", config.endpoint)))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout)
                    .connect_lazy();
                let mut metadata = MetadataMap::new();
                for (k, v) in &config.headers {
                    let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                        .map_err(|e| ClientError::Config(format!("header {k:?}: {e}")))?;
                    let value =
                        MetadataValue::from_str(v).map_err(|e| ClientError::Config(format!("header {k:?}: {e}")))?;
                    metadata.insert(key, value);
                }
                let client = TraceServiceClient::new(channel)
                    .max_decoding_message_size(4 << 20)
                    .max_encoding_message_size(usize::MAX);
                Ok(OtlpClient::Grpc { client, metadata, timeout: config.timeout })
            }
            ExportProtocol::HttpProtobuf | ExportProtocol::HttpJson => {
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .build()
                    .map_err(|e| ClientError::Config(e.to_string()))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &config.headers {
                    let name = reqwest::header::HeaderName::from_str(k)
                        .map_err(|e| ClientError::Config(format!("header {k:?}: {e}")))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| ClientError::Config(format!("header {k:?}: {e}")))?;
                    headers.insert(name, value);
                }
                Ok(OtlpClient::Http {
                    client,
                    url: traces_url(&config.endpoint),
                    json: config.protocol == ExportProtocol::HttpJson,
                    headers,
                })
            }
        }
    }

    /// Sends one request; on success, how many spans the backend rejected.
    pub async fn export(&self, request: &ExportTraceServiceRequest) -> Result<u64, ClientError> {
        match self {
            OtlpClient::Grpc { client, metadata, timeout } => {
                let mut req = tonic::Request::new(request.clone());
                *req.metadata_mut() = metadata.clone();
                req.set_timeout(*timeout);
                match client.clone().export(req).await {
                    Ok(resp) => Ok(rejected(&resp.into_inner())),
                    Err(status) => Err(grpc_error(&status)),
                }
            }
            OtlpClient::Http { client, url, json, headers } => {
                let (body, content_type) = if *json {
                    let body = serde_json::to_vec(request).map_err(|e| ClientError::Permanent(e.to_string()))?;
                    (body, "application/json")
                } else {
                    (request.encode_to_vec(), "application/x-protobuf")
                };
                let resp = client
                    .post(url)
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| ClientError::Retryable { message: format!("{url}: {e}"), after: None })?;
                let status = resp.status();
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = resp.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let answer = if *json {
                        serde_json::from_slice::<ExportTraceServiceResponse>(&bytes).unwrap_or_default()
                    } else {
                        ExportTraceServiceResponse::decode(bytes.as_ref()).unwrap_or_default()
                    };
                    return Ok(rejected(&answer));
                }
                let message =
                    format!("{url} answered {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]));
                match status.as_u16() {
                    429 | 502 | 503 | 504 => Err(ClientError::Retryable { message, after }),
                    _ => Err(ClientError::Permanent(message)),
                }
            }
        }
    }
}

fn rejected(answer: &ExportTraceServiceResponse) -> u64 {
    answer.partial_success.as_ref().map(|p| p.rejected_spans.max(0) as u64).unwrap_or(0)
}

fn grpc_error(status: &tonic::Status) -> ClientError {
    use tonic::Code;
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Cancelled
        | Code::DeadlineExceeded => ClientError::Retryable { message, after: None },
        _ => ClientError::Permanent(message),
    }
}

/// The OTLP/HTTP traces URL of an endpoint: as given when it names a path,
/// else with `/v1/traces` added (as `OTEL_EXPORTER_OTLP_ENDPOINT` works).
pub(crate) fn traces_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    match rest.find('/') {
        Some(i) if rest[i..] != *"/" => endpoint.to_owned(),
        _ => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_endpoint_gets_the_traces_path() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/custom/traces"), "http://h:4318/custom/traces");
    }

    #[test]
    fn only_the_codes_the_spec_names_are_retried() {
        assert!(matches!(grpc_error(&tonic::Status::unavailable("down")), ClientError::Retryable { .. }));
        assert!(matches!(grpc_error(&tonic::Status::invalid_argument("bad")), ClientError::Permanent(_)));
    }
}
