//! One OTLP request to one backend, over gRPC or HTTP, with the answer
//! sorted into taken, retryable and refused for good.

use std::str::FromStr;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;

use crate::config::{ExportCompression, ExportProtocol, ExporterConfig};

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
    /// The backend's answer says the exporter is aimed or authorised wrong
    /// (a gRPC port spoken to in OTLP/HTTP, a refused token): nothing was
    /// delivered, and nothing will be until an operator fixes it, so the
    /// batch stays queued rather than being counted as sent or dropped.
    #[error("exporter misconfigured: {0}")]
    Misconfigured(String),
}

/// A client for one backend.
pub enum OtlpClient {
    /// OTLP/gRPC.
    Grpc {
        /// The channel; requests go out as the bytes they were queued as.
        channel: Channel,
        /// Metadata sent with every request.
        metadata: MetadataMap,
        /// Per-request deadline.
        timeout: Duration,
        /// Messages gzip-compressed (`grpc-encoding: gzip`).
        gzip: bool,
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
        /// Bodies gzip-compressed (`Content-Encoding: gzip`).
        gzip: bool,
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
                Ok(OtlpClient::Grpc {
                    channel,
                    metadata,
                    timeout: config.timeout,
                    gzip: config.compression == ExportCompression::Gzip,
                })
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
                    gzip: config.compression == ExportCompression::Gzip,
                })
            }
        }
    }

    /// Encodes a request as this backend takes it: protobuf, or OTLP JSON.
    pub fn encode(&self, request: &ExportTraceServiceRequest) -> Result<Bytes, ClientError> {
        if self.takes_json() {
            serde_json::to_vec(request).map(Bytes::from).map_err(|e| ClientError::Permanent(e.to_string()))
        } else {
            Ok(Bytes::from(request.encode_to_vec()))
        }
    }

    /// Whether bodies are OTLP JSON (else protobuf).
    pub fn takes_json(&self) -> bool {
        matches!(self, OtlpClient::Http { json: true, .. })
    }

    /// Sends one request, already encoded by [`Self::encode`] (or, for
    /// protobuf, queued requests concatenated: repeated fields concatenate);
    /// on success, how many spans the backend rejected.
    pub async fn export(&self, body: Bytes) -> Result<u64, ClientError> {
        match self {
            OtlpClient::Grpc { channel, metadata, timeout, gzip } => {
                let mut req = tonic::Request::new(body);
                *req.metadata_mut() = metadata.clone();
                req.set_timeout(*timeout);
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                if *gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                grpc.ready().await.map_err(|e| ClientError::Retryable { message: e.to_string(), after: None })?;
                let path = PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
                match grpc.unary(req, path, RawRequestCodec).await {
                    Ok(resp) => Ok(rejected(&resp.into_inner())),
                    Err(status) => Err(grpc_error(&status)),
                }
            }
            OtlpClient::Http { client, url, json, headers, gzip } => {
                let content_type = if *json { "application/json" } else { "application/x-protobuf" };
                let mut request =
                    client.post(url).headers(headers.clone()).header(reqwest::header::CONTENT_TYPE, content_type);
                if *gzip {
                    request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let body = if *gzip { gzip_body(&body)? } else { body };
                let resp = request
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
                let grpc_status = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let html = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/html"));
                let bytes = resp.bytes().await.unwrap_or_default();
                // A gRPC server answers an HTTP/1.1 POST with 200 and a
                // grpc-status (12, unimplemented): nothing was received.
                if let Some(code) = grpc_status {
                    return Err(ClientError::Misconfigured(format!(
                        "{url} answered as an OTLP/gRPC server (HTTP {status}, grpc-status {code}): nothing was \
                         delivered; use protocol: grpc, or the backend's OTLP/HTTP port (4318)"
                    )));
                }
                if status.is_success() && html && !bytes.is_empty() {
                    return Err(ClientError::Misconfigured(format!(
                        "{url} answered {status} with an HTML page, not an OTLP response: is it the OTLP/HTTP \
                         endpoint (…/v1/traces)?"
                    )));
                }
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
                    401 | 403 => Err(ClientError::Misconfigured(format!(
                        "{message} — the backend refuses this exporter's credentials (headers)"
                    ))),
                    404 | 405 => Err(ClientError::Misconfigured(format!(
                        "{message} — no OTLP/HTTP traces endpoint there (…/v1/traces)"
                    ))),
                    _ => Err(ClientError::Permanent(message)),
                }
            }
        }
    }
}

/// Sends queued bytes as they are and decodes the answer with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawRequestCodec;

impl Codec for RawRequestCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<ExportTraceServiceResponse, ExportTraceServiceResponse>::default().decoder()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

/// `body` gzip-compressed, for `Content-Encoding: gzip`.
fn gzip_body(body: &[u8]) -> Result<Bytes, ClientError> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .map_err(|e| ClientError::Permanent(format!("gzip: {e}")))
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
        Code::Unauthenticated | Code::PermissionDenied => {
            ClientError::Misconfigured(format!("{message} — the backend refuses this exporter's credentials"))
        }
        Code::Unimplemented => {
            ClientError::Misconfigured(format!("{message} — no OTLP/gRPC trace service there (an OTLP/HTTP port?)"))
        }
        _ => ClientError::Permanent(message),
    }
}

/// The OTLP/HTTP traces URL of an endpoint: as given when it names a path,
/// else with `/v1/traces` added (as `OTEL_EXPORTER_OTLP_ENDPOINT` works).
pub(crate) fn traces_url(endpoint: &str) -> String {
    signal_url(endpoint, "/v1/traces")
}

/// An OTLP/HTTP signal's URL (`path`: `/v1/traces`, `/v1/metrics`) for an
/// endpoint: as given when it names a path, else with `path` added.
pub fn signal_url(endpoint: &str, path: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    match rest.find('/') {
        Some(i) if rest[i..] != *"/" => endpoint.to_owned(),
        _ => format!("{}{path}", endpoint.trim_end_matches('/')),
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

    // What goes on the wire with `compression: gzip` over OTLP/HTTP: the header, and a body that
    // inflates to the request (read by a bare TCP listener, so nothing decodes it on the way).
    #[tokio::test]
    async fn a_gzip_exporter_sends_a_gzip_body_that_says_so() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config =
            ExporterConfig::new(format!("http://{}", listener.local_addr().unwrap()), ExportProtocol::HttpProtobuf);
        config.compression = ExportCompression::Gzip;
        let client = OtlpClient::new(&config).unwrap();
        let body = Bytes::from(vec![7u8; 4096]);
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, body) = loop {
                let n = conn.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if seen.len() >= end + 4 + len {
                    break (head, seen[end + 4..end + 4 + len].to_vec());
                }
            };
            let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            conn.write_all(ok).await.unwrap();
            (head, body)
        });
        assert_eq!(client.export(body.clone()).await.unwrap(), 0);
        let (head, sent) = server.await.unwrap();
        assert!(head.contains("content-encoding: gzip"), "{head}");
        assert!(sent.len() < body.len(), "compressed: {} bytes", sent.len());
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&sent[..]), &mut inflated).unwrap();
        assert_eq!(inflated, body);
    }

    #[test]
    fn only_the_codes_the_spec_names_are_retried() {
        assert!(matches!(grpc_error(&tonic::Status::unavailable("down")), ClientError::Retryable { .. }));
        assert!(matches!(grpc_error(&tonic::Status::invalid_argument("bad")), ClientError::Permanent(_)));
        // A refused token or a wrong port is the operator's to fix: kept, not dropped.
        assert!(matches!(grpc_error(&tonic::Status::unauthenticated("token")), ClientError::Misconfigured(_)));
        assert!(matches!(grpc_error(&tonic::Status::unimplemented("no such service")), ClientError::Misconfigured(_)));
    }
}
