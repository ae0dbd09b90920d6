//! # agentrace: one connected trace across every boundary an AI agent crosses
//!
//! A multi-agent request crosses queues, MCP calls, subprocesses, spawned tasks and thread pools.
//! At each of those hops W3C trace context is easy to lose, and the trace falls apart into
//! orphaned roots. This crate makes each hop one line, on top of the official `opentelemetry`
//! crates (it never replaces them):
//!
//! - [`propagation`]: strict W3C `traceparent` / `tracestate` / `baggage` propagators that plug
//!   into OpenTelemetry's global propagator, with an inbound-baggage trust boundary;
//! - [`carrier`]: where the context travels: a JSON envelope, MCP `_meta`, HTTP headers,
//!   subprocess environment variables, NATS / AMQP / Kafka headers, Redis stream fields;
//! - [`task`]: spawn helpers that keep the context across `tokio::spawn`, `spawn_blocking`,
//!   threads, rayon and callbacks (with or without `tracing`);
//! - [`baggage`]: a span processor that copies allow-listed baggage onto every span;
//! - [`genai`] and [`messaging`]: span helpers for the OpenTelemetry GenAI and messaging
//!   conventions, plus agent-coordination attributes under `app.agent.*` ([`semconv`]);
//! - `mcp` (feature `mcp`): client and server instrumentation for `rmcp`.
//!
//! ## Features
//!
//! The core needs only `opentelemetry`, `opentelemetry_sdk` and serde. Each integration is a
//! feature, so a service pulls only the clients it uses: `http` (`HeaderMap`), `reqwest`
//! (request extension), `tower` (server layer), `tokio` (spawn helpers, `tokio::process`
//! carrier), `tracing` (re-enter `tracing` spans in spawned work), `rayon`, `nats` (async-nats),
//! `amqp` (lapin), `redis` (streams), `kafka` (rdkafka), `mcp` (rmcp). None of them pulls the
//! collector's server stack.
//!
//! Never on the request path: a panic or an error because a peer sent a bad header. Bad input is
//! ignored exactly as the W3C specifications say, and a new trace starts.
//!
//! ## Getting started
//!
//! ```
//! use agentrace::baggage::BaggageSpanProcessor;
//! use agentrace::carrier::{envelope::Traced, ContextCarrier};
//! use agentrace::propagation::{install_global_propagator, W3CPropagator};
//! use opentelemetry::baggage::BaggageExt;
//! use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
//! use opentelemetry::{Context, KeyValue};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! // Once per process: strict propagation, and baggage copied onto spans.
//! install_global_propagator(W3CPropagator::new());
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(BaggageSpanProcessor::allow(["session.id"]))
//!     .build();
//! let tracer = provider.tracer("orchestrator");
//!
//! // Producer: set baggage once at the edge, send the context beside the payload.
//! let edge = Context::current().with_baggage([KeyValue::new("session.id", "s-42")]);
//! let span = tracer.start_with_context("send tasks", &edge);
//! let cx = edge.with_span(span);
//! let message = serde_json::to_string(&Traced::with_context("plan the trip", &cx)).unwrap();
//!
//! // Consumer (another process): the worker's span joins the producer's trace.
//! let received: Traced<String> = serde_json::from_str(&message).unwrap();
//! let (parent, task) = received.into_parts();
//! let worker = tracer.start_with_context("process", &parent);
//! assert_eq!(worker.span_context().trace_id(), cx.span().span_context().trace_id());
//! assert_eq!(parent.baggage().get("session.id").unwrap().as_str(), "s-42");
//! assert_eq!(task, "plan the trip");
//! ```
//!
//! ## What never belongs in baggage
//!
//! Baggage is sent in clear text to every downstream service, including third parties, and is
//! copied onto spans. Never put secrets, tokens, prompts, personal data beyond an opaque id, or
//! anything large in it. Drop inbound baggage at the edge of your system
//! ([`propagation::InboundBaggage::Drop`]), because a caller can write anything there.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod baggage;
pub mod carrier;
pub mod genai;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod messaging;
pub mod propagation;
pub mod semconv;
pub mod task;
pub mod w3c;

/// The instrumenting guide's Rust snippets (`docs/instrumenting.md`), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/instrumenting.md")]
pub struct InstrumentingGuide;
