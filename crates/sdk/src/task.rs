//! Context that survives `tokio::spawn`, `spawn_blocking`, `std::thread`, rayon and callbacks.
//!
//! The OpenTelemetry context is thread-local and a spawned task starts with an empty one, so a
//! span started there becomes a new root: the `lost_context` finding of our doctor. [`Captured`]
//! takes the current context at the spawn site and re-attaches it where the work runs. With the
//! `tracing` feature it also captures the current `tracing` span and re-enters it, so
//! `#[instrument]` spans in the task get the right parent through `tracing-opentelemetry`.
//!
//! ```
//! use agentrace::task::Captured;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! let _guard = sent.attach();
//! // A thread pool runs the job later, on another thread, with no context of its own…
//! let job = Captured::current().wrap_once(|| Context::current().span().span_context().trace_id());
//! let seen = std::thread::spawn(job).join().unwrap();
//! // …and yet it runs in the context it was handed over in.
//! assert_eq!(seen, trace_id);
//! ```

use std::future::Future;

use opentelemetry::Context;
use opentelemetry::context::FutureExt as _;

/// The context of a spawn site, to re-attach where the work runs.
#[derive(Debug, Clone)]
pub struct Captured {
    otel: Context,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Captured {
    /// Captures the current OpenTelemetry context (and `tracing` span, with feature `tracing`).
    pub fn current() -> Self {
        Captured {
            otel: Context::current(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// Captures an explicit OpenTelemetry context (no `tracing` span).
    pub fn from_context(cx: Context) -> Self {
        Captured {
            otel: cx,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }

    /// The captured OpenTelemetry context.
    pub fn context(&self) -> &Context {
        &self.otel
    }

    /// Runs `f` with the captured context attached.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        // tracing first, then OpenTelemetry: the attached OTel context is then what
        // `Context::current()` returns inside, even when the tracing span is disabled.
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        let _guard = self.otel.clone().attach();
        f()
    }

    /// Wraps a one-shot closure (a callback, a thread body).
    pub fn wrap_once<R>(self, f: impl FnOnce() -> R) -> impl FnOnce() -> R {
        move || self.in_scope(f)
    }

    /// Wraps a reusable closure (a rayon `map`, an event handler).
    pub fn wrap_fn<A, R>(self, f: impl Fn(A) -> R) -> impl Fn(A) -> R {
        move |a| self.in_scope(|| f(a))
    }

    /// Wraps a future so every poll runs in the captured context.
    pub fn wrap_future<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        let fut = fut.with_context(self.otel);
        #[cfg(feature = "tracing")]
        let fut = tracing::Instrument::instrument(fut, self.span);
        fut
    }
}

/// `tokio::spawn` that keeps the caller's context.
#[cfg(feature = "tokio")]
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Captured::current().wrap_future(fut))
}

/// `tokio::task::spawn_blocking` that keeps the caller's context.
#[cfg(feature = "tokio")]
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(Captured::current().wrap_once(f))
}

/// `std::thread::spawn` that keeps the caller's context.
pub fn spawn_thread<F, R>(f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    std::thread::spawn(Captured::current().wrap_once(f))
}

/// `rayon::spawn` that keeps the caller's context. For parallel iterators, wrap the closure:
/// `items.par_iter().map(Captured::current().wrap_fn(|x| work(x)))`.
#[cfg(feature = "rayon")]
pub fn rayon_spawn<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    rayon::spawn(Captured::current().wrap_once(f))
}

/// Extension for futures: `.in_current_context()` before handing a future to any executor.
pub trait FutureContextExt: Future + Sized {
    /// Wraps the future with the current context (and `tracing` span).
    fn in_current_context(self) -> impl Future<Output = Self::Output> {
        Captured::current().wrap_future(self)
    }
}

impl<F: Future> FutureContextExt for F {}
