//! Wiring: opens the store, builds the receivers and the API, and serves
//! each on its listener with optional TLS and bearer-token authentication.
//!
//! Every listener is served the same way: an accept loop handing each
//! connection to hyper's auto (HTTP/1 + HTTP/2) connection builder, so
//! gRPC, OTLP/HTTP and the API share one code path for TLS, auth and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentrace_model::otlp::Limits;
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use std::sync::atomic::Ordering;

use crate::assemble::Pipeline;
use crate::config::{Config, ConfigError, ExportRepair, PipelineConfig, TlsConfig};
use crate::export::{self, ExportTarget};
use crate::metrics::{Metrics, RefuseReason};
use crate::receive::{Ingest, MemoryLimiter, Sinks, grpc, http};
use crate::redact::Redactor;
use crate::store::{Store, StoreError, query};

/// Why the collector could not start. The message names the address or
/// file at fault; the operator should fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// A thread could not be started (the system is out of resources).
    #[error("{0}")]
    Thread(String),
}

/// A running collector.
pub struct Collector {
    /// The OTLP/gRPC address actually bound (useful with port 0).
    pub grpc_addr: Option<SocketAddr>,
    /// The OTLP/HTTP address actually bound.
    pub http_addr: Option<SocketAddr>,
    /// The Zipkin receiver's address actually bound, when it is on.
    pub zipkin_addr: Option<SocketAddr>,
    /// The API/UI address actually bound.
    pub api_addr: Option<SocketAddr>,
    /// The store.
    pub store: Store,
    /// The collector's metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pipeline: Option<Pipeline>,
    exporter_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Collector {
    /// Opens the store and starts every configured listener.
    pub async fn start(config: Config) -> Result<Collector, StartError> {
        config.check()?;
        let token = config.bearer_token()?;
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let metrics = Arc::new(Metrics::default());
        let receiver = &config.receivers.otlp;
        let store = Store::open(&config.storage, receiver.max_pending_spans, Arc::clone(&metrics))?;
        let limits = Limits {
            max_decompressed_bytes: usize::try_from(receiver.max_decompressed_bytes).unwrap_or(usize::MAX),
            max_attributes: receiver.max_attributes,
            max_value_depth: receiver.max_value_depth,
            max_decoded_bytes: usize::try_from(receiver.max_decoded_bytes).unwrap_or(usize::MAX),
        };
        let max_grpc_message = limits.max_decompressed_bytes.max(max_request_bytes(&config));
        let redactor = Arc::new(Redactor::new(&config.redaction).map_err(|e| ConfigError::Invalid(e.to_string()))?);
        let mut exports = Vec::with_capacity(config.exporters.len());
        for e in &config.exporters {
            let name = export::exporter_name(e);
            let id = store.register_exporter(&name)?;
            let m = metrics.exporter(name);
            let (spans, bytes) = store.read(move |c| query::queue_totals(c, id)).await?;
            m.queued_spans.store(spans, Ordering::Relaxed);
            m.queued_bytes.store(bytes, Ordering::Relaxed);
            let (dead, _) = store.read(move |c| query::dead_letter_totals(c, id)).await?;
            m.dead_letter_spans.store(dead, Ordering::Relaxed);
            exports.push(ExportTarget { id, config: e.clone(), metrics: m });
        }
        let first_seq = store.read(query::queue_max_seq).await? + 1;
        let pipeline = if config.pipeline.enabled {
            // The pipeline's backlog (spans accepted while it was behind)
            // is a queue of its own; none on a shared store, where a
            // collector's rows would outlive its numbering.
            let backlog =
                if store.is_shared() { None } else { Some(store.register_exporter(crate::assemble::BACKLOG)?) };
            // Requests still queued for a repairing backend or in the
            // backlog are assembled again, so that what was open at a crash
            // is diagnosed before it is sent.
            let mut queues: Vec<i64> =
                exports.iter().filter(|t| t.config.repair != ExportRepair::Off).map(|t| t.id).collect();
            queues.extend(backlog);
            let replay = replay_queued(&store, &queues, config.pipeline.max_buffered_spans).await?;
            let pipeline_config = PipelineConfig {
                keep_decoded: config.pipeline.keep_decoded_within(receiver.memory_limit),
                ..config.pipeline.clone()
            };
            Pipeline::start(
                pipeline_config,
                store.clone(),
                Arc::clone(&metrics),
                first_seq,
                replay,
                exports.iter().any(|t| t.config.repair != ExportRepair::Off),
                backlog,
                tokio::runtime::Handle::current(),
            )
            .map_err(|e| StartError::Thread(format!("cannot start the pipeline thread: {e}")))?
        } else {
            Pipeline::disabled(first_seq)
        };
        let (shutdown, watch_rx) = watch::channel(false);
        let mut exporter_tasks = Vec::new();
        for t in &exports {
            let task = export::spawn(t.clone(), store.clone(), pipeline.handle(), watch_rx.clone())
                .map_err(|e| ConfigError::Invalid(format!("exporter {}: {e}", t.metrics.name)))?;
            exporter_tasks.push(task);
        }
        let memory = MemoryLimiter::start(receiver.memory_limit, watch_rx.clone());
        let sinks = Sinks {
            redactor,
            store_content: config.redaction.store_content,
            exports,
            pipeline: pipeline.handle(),
            memory,
            keep_spans: config.storage.keep_spans,
            read_timeout: receiver.read_timeout,
            // Four requests of the largest size at once, but never more than
            // half the memory limit (a request larger than the budget still
            // decodes, alone).
            decoding_budget: receiver
                .max_decoded_bytes
                .saturating_mul(4)
                .min(receiver.memory_limit.map_or(u64::MAX, |m| m / 2)),
        };
        let ingest = Ingest::new(store.clone(), Arc::clone(&metrics), limits, receiver.max_concurrent_requests, sinks);
        let max_request = max_request_bytes(&config);
        let mut tasks = JoinSet::new();
        let auth = Auth { token: token.map(Arc::from), metrics: Arc::clone(&metrics) };

        let mut bind = async |what: &'static str, addr: Option<SocketAddr>, router: Router| {
            let Some(addr) = addr else { return Ok(None) };
            let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })?;
            let local = listener.local_addr().map_err(|source| StartError::Bind { what, addr, source })?;
            let router = auth.clone().wrap(router);
            if !local.ip().is_loopback() && auth.token.is_none() && tls.is_none() {
                tracing::warn!(
                    %local,
                    what,
                    "listening beyond this machine without a bearer token or TLS: anyone who can reach it can send \
                     spans and read them; set auth.bearer_token (or AGENTRACE_BEARER_TOKEN) and tls"
                );
            }
            tasks.spawn(serve(listener, router, tls.clone(), receiver.read_header_timeout, watch_rx.clone()));
            tracing::info!(%local, what, "listening");
            Ok::<_, StartError>(Some(local))
        };

        let grpc_service = grpc::TraceGrpc::new(ingest.clone(), max_grpc_message);
        let grpc_router = tonic::service::Routes::new(grpc_service).prepare().into_axum_router();
        let grpc_addr = bind("OTLP/gRPC", receiver.grpc_endpoint, grpc_router).await?;
        let http_addr = bind("OTLP/HTTP", receiver.http_endpoint, http::router(ingest.clone(), max_request)).await?;
        let zipkin_router = crate::receive::zipkin::router(ingest.clone(), max_request);
        let zipkin_addr = bind("Zipkin", config.receivers.zipkin.endpoint, zipkin_router).await?;
        let api_router = crate::api::router(store.clone(), Arc::clone(&metrics), &config.api, &config.pipeline);
        let api_addr = bind("API", config.api.endpoint, api_router).await?;
        Ok(Collector {
            grpc_addr,
            http_addr,
            zipkin_addr,
            api_addr,
            store,
            metrics,
            shutdown,
            tasks,
            pipeline: Some(pipeline),
            exporter_tasks,
        })
    }

    /// Stops listening, lets requests in flight finish (up to 10 s), then
    /// waits for the store to commit what it holds.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            tracing::warn!("requests still running after 10 s; closing anyway");
            self.tasks.abort_all();
        }
        // Exporters stop at once; what they have not sent stays queued on disk.
        for t in self.exporter_tasks.drain(..) {
            let _ = t.await;
        }
        // The pipeline closes and diagnoses what is open, and keeps it.
        if let Some(p) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || p.stop()).await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// Requests still in `queues` (those of repairing backends and the
/// pipeline's backlog), newest last, as many as the pipeline's memory
/// budget holds: the traces that were open when agentrace last stopped are
/// among the newest. A request in several queues is taken once.
async fn replay_queued(
    store: &Store,
    queues: &[i64],
    budget: usize,
) -> Result<Vec<(u64, Vec<crate::assemble::Packed>)>, StoreError> {
    let mut replay: std::collections::BTreeMap<u64, (u64, Vec<crate::assemble::Packed>)> = Default::default();
    let mut held = 0u64;
    if store.is_shared() {
        // A collector starts under a new name: the rows it queued before are
        // a stopped collector's, sent as they are by whichever takes them.
        return Ok(Vec::new());
    }
    for &id in queues {
        let mut after = 0;
        loop {
            let window = query::QueueWindow { after, max_seq: u64::MAX, max_spans: 100_000, max_bytes: 64 << 20 };
            let rows = store.read(move |c| query::queue_peek(c, id, window)).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            for row in rows {
                if replay.contains_key(&row.seq) {
                    continue;
                }
                let (seq, spans) = (row.seq, row.spans);
                let Ok(packed) = crate::assemble::pack_queued(row) else { continue };
                held += spans;
                replay.insert(seq, (spans, packed));
                while held > budget as u64 {
                    let Some((_, (spans, _))) = replay.pop_first() else { break };
                    held -= spans;
                }
            }
        }
    }
    Ok(replay.into_iter().map(|(seq, (_, packed))| (seq, packed)).collect())
}

/// Bearer-token check, shared by every listener. `/health` stays open so
/// that orchestrators can probe without the secret, and so do the UI's
/// static files, which hold no span data.
#[derive(Clone)]
struct Auth {
    token: Option<Arc<str>>,
    metrics: Arc<Metrics>,
}

impl Auth {
    fn wrap(self, router: Router) -> Router {
        if self.token.is_none() {
            return router;
        }
        router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let auth = self.clone();
            async move { auth.check(req, next).await }
        }))
    }

    async fn check(&self, req: Request, next: Next) -> Response {
        let Some(token) = &self.token else { return next.run(req).await };
        // The UI's static shell carries no data; it asks for the token and
        // sends it on every API call, which a browser cannot do for the
        // navigation that loads the page.
        if req.uri().path() == "/health" || crate::ui::is_static_asset(req.uri().path()) {
            return next.run(req).await;
        }
        let presented = req
            .headers()
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            return next.run(req).await;
        }
        self.metrics.refused_request(RefuseReason::Unauthenticated, 0);
        let message = "missing or wrong bearer token: send Authorization: Bearer <token>";
        let is_grpc = req
            .headers()
            .get(::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if is_grpc {
            return tonic::Status::unauthenticated(message).into_http::<axum::body::Body>().into_response();
        }
        let mut response = crate::api::ApiError::unauthorized(message).into_response();
        response.headers_mut().insert(::http::header::WWW_AUTHENTICATE, ::http::HeaderValue::from_static("Bearer"));
        response
    }
}

fn max_request_bytes(config: &Config) -> usize {
    usize::try_from(config.receivers.otlp.max_request_bytes).unwrap_or(usize::MAX)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn load_tls(config: &TlsConfig) -> Result<TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(|iter| iter.collect())
        .map_err(|e| StartError::Tls(format!("cannot read certificates from {}: {e}", config.cert_file.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!("no certificate in {}", config.cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| StartError::Tls(format!("cannot read private key from {}: {e}", config.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(format!("certificate and key do not match: {e}")))?;
    // gRPC needs HTTP/2; OTLP/HTTP and the API speak either.
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    read_header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A connection that sends no complete request head within the timeout
    // (a slow-loris client, or an HTTP/1 keep-alive connection left idle) is
    // closed, so idle and half-open connections do not pile up.
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(read_header_timeout);
    // HTTP/2 (gRPC) peers that stop answering pings are dropped.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        match &tls {
            None => {
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // Until its first byte, a connection is in no protocol's
                    // hands (hyper waits to tell HTTP/1 from HTTP/2), so no
                    // header timeout runs yet: one that sends nothing is
                    // closed here.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(read_header_timeout, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
