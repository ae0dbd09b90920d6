//! `google.rpc.Status`, the error body both OTLP transports answer with:
//! in the gRPC `grpc-status-details-bin` trailer, and as the body of an
//! OTLP/HTTP error (protobuf or JSON, as the request was).

use std::time::Duration;

use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Only ever `RetryInfo` here; OTLP/HTTP's JSON body does not carry it
    /// (the `Retry-After` header does).
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub(crate) details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

impl RpcStatus {
    /// A status with no details.
    pub(crate) fn new(code: i32, message: String) -> RpcStatus {
        RpcStatus { code, message, details: Vec::new() }
    }

    /// A status carrying `RetryInfo`, which OTLP clients need before they
    /// treat `RESOURCE_EXHAUSTED` as retryable, and which says how long to wait.
    pub(crate) fn retry_after(code: i32, message: String, delay: Duration) -> RpcStatus {
        let retry = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
            }),
        };
        RpcStatus {
            code,
            message,
            details: vec![Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: retry.encode_to_vec(),
            }],
        }
    }
}
