//! The span model shared by agentrace's collector and doctor.
//!
//! This crate sits at the very start of the data's road: every span that
//! reaches agentrace, over the network or from a file, is decoded here
//! ([`otlp`]) and validated before anything else looks at it. It is pure: no
//! sockets, no files, no clocks. It must never grow a dependency on a server
//! stack, because the doctor (a library with no I/O) and fuzz targets build
//! on it.
//!
//! Two representations live here:
//!
//! - the OTLP protobuf types from `opentelemetry-proto`, which the collector
//!   keeps byte for byte so that what went in comes out unchanged;
//! - [`Span`], a flat, owned view of one span with its resource and scope,
//!   which analysis code reads without caring about OTLP's nesting.
//!
//! # Getting started
//!
//! ```
//! use agentrace_model::{otlp, Span};
//!
//! let body = br#"{"resourceSpans":[{"resource":{"attributes":[
//!     {"key":"service.name","value":{"stringValue":"planner"}}]},
//!   "scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
//!     "spanId":"00f067aa0ba902b7","name":"invoke_agent planner","kind":2,
//!     "startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
//! let request = otlp::decode_json(body, &otlp::Limits::default())?;
//! let spans = Span::from_request(&request.request);
//! assert_eq!(spans[0].service_name(), "planner");
//! assert_eq!(spans[0].trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! # Ok::<(), otlp::DecodeError>(())
//! ```

pub mod ids;
pub mod keys;
pub mod otlp;
pub mod patch;
pub mod span;
pub mod span_bytes;
pub mod value;
pub mod zipkin;

pub use ids::{IdError, SpanId, TraceId};
pub use span::{Event, Link, Resource, Scope, Span, SpanKind, StatusCode};
pub use value::{Attributes, Key, Value};
