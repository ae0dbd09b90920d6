//! `agentrace doctor`: the doctor library on files, stdin, or a running
//! collector, printed for a terminal or as JSON.
//!
//! This file is an edge of the road: it reads bytes (files, stdin, HTTP),
//! hands them to `agentrace_doctor::input` and `Doctor::analyse`, and
//! prints. Every decision about traces lives in the library.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentrace_doctor::render::{self, TextOptions};
use agentrace_doctor::{Config, Doctor, RepairMode};
use agentrace_model::otlp::Limits;
use agentrace_model::{Span, TraceId};
use anyhow::{Context, bail};

const AFTER_HELP: &str = "\
Input:
  Each FILE holds OTLP JSON (one ExportTraceServiceRequest, or one per line as
  the OpenTelemetry Collector's file exporter writes), OTLP protobuf, or gzip of
  either. `-` reads stdin; with no FILE and no --server, stdin is read when it is
  not a terminal. All files are analysed together, so the spans of one request
  may be spread over several files.

Exit status:
  0  healthy: context reached every hop and no span recorded an error
  1  the input could not be read (a file, stdin, the server)
  2  usage error
  3  trace context broke somewhere (see \"What broke\"); timing gaps, slow hops
     and traces joined by span links on purpose do not count
  4  context intact, but a request failed (see \"What failed\")

Examples:
  agentrace doctor traces.json
  agentrace doctor --format json exports/*.jsonl | jq '.findings[].kind'
  agentrace doctor --server http://127.0.0.1:4380 --session sess-42
  agentrace doctor --format otlp broken.json > connected.json";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The waterfall of each connected request, then what broke, what failed,
    /// where the time went, and the agents.
    Text,
    /// One JSON object: findings, repairs, failure, time_breakdown, agents, …
    Json,
    /// The connected view as one OTLP JSON request: repaired spans marked with
    /// `agentrace.repair.*`, synthetic spans with `agentrace.synthetic`.
    Otlp,
}

/// Diagnose traces: find where trace context broke, join the pieces back
/// from evidence, and say what failed and where the time went.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct DoctorArgs {
    /// OTLP files (JSON, JSON lines, protobuf, gzip); `-` for stdin.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Read from a running collector (its UI/API address, e.g. http://127.0.0.1:4380).
    #[arg(long, value_name = "URL", conflicts_with = "files")]
    server: Option<String>,
    /// With --server: the bearer token of a collector whose `auth.bearer_token` is set.
    #[arg(long, value_name = "TOKEN", env = "AGENTRACE_TOKEN", hide_env_values = true, requires = "server")]
    token: Option<String>,
    /// With --server: diagnose the connected request that holds this trace
    /// (32 hex digits; any arrived piece of the request names it).
    #[arg(long, value_name = "ID", requires = "server", conflicts_with = "session")]
    trace: Option<String>,
    /// With --server: every trace of a session (`session.id`, `gen_ai.conversation.id`, a Traceloop or Langfuse session).
    #[arg(long, value_name = "ID", requires = "server")]
    session: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Apply repairs at or above this confidence (0 to 1); below, they are suggestions.
    #[arg(long, value_name = "CONFIDENCE", default_value_t = Config::default().apply_threshold)]
    apply_threshold: f64,
    /// With --format otlp: mark repairs with an `inferred_parent` link instead of rewriting IDs.
    #[arg(long)]
    link_mode: bool,
}

/// Runs the command; see [`AFTER_HELP`] for the exit codes.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::default().with_apply_threshold(args.apply_threshold);
    if args.link_mode {
        config = config.with_repair_mode(RepairMode::Link);
    }
    if let Err(e) = config.validate() {
        return Ok(usage(&format!("--apply-threshold: {e}")));
    }
    // With --trace, the answer is for the connected request that holds the
    // trace, read from the same spans the live pipeline and the API read.
    let mut wanted: Option<TraceId> = None;
    let server = match args.server.as_deref().map(server_base).transpose() {
        Ok(server) => server,
        Err(message) => return Ok(usage(&message)),
    };
    let spans = match (&server, args.trace.as_deref(), args.session.as_deref()) {
        (Some(server), Some(trace), None) => {
            let Ok(id) = TraceId::from_hex(trace) else {
                return Ok(usage(&format!("--trace {trace:?} is not a trace ID (32 hex digits)")));
            };
            wanted = Some(id);
            let spans = fetch(server, args.token.as_deref(), &format!("/api/agentrace/traces/{id}/context"))?;
            if spans.is_empty() {
                bail!("the collector at {server} holds no span of trace {id}");
            }
            spans
        }
        (Some(server), None, Some(session)) => {
            let spans =
                fetch(server, args.token.as_deref(), &format!("/api/v3/sessions/{}/spans", percent_encode(session)))?;
            if spans.is_empty() {
                bail!(
                    "the collector at {server} holds no span of session {session:?} (a session is named by \
                     `session.id`, `gen_ai.conversation.id`, a Traceloop or Langfuse session attribute; the UI \
                     lists the sessions it has)"
                );
            }
            spans
        }
        (Some(_), _, _) => return Ok(usage("--server needs --trace ID or --session ID")),
        (None, _, _) => {
            let mut files = args.files.clone();
            if files.is_empty() {
                if std::io::stdin().is_terminal() {
                    return Ok(usage("no input: name FILEs, pipe spans to stdin, or use --server (see --help)"));
                }
                files.push(PathBuf::from("-"));
            }
            read_files(&files)?
        }
    };
    if spans.is_empty() {
        bail!("no spans in the input");
    }

    let doctor = Doctor::new(config);
    let (diagnosis, connected) = match wanted {
        Some(id) => {
            doctor.analyse_request(&spans, id).with_context(|| format!("the collector sent no span of trace {id}"))?
        }
        None if args.format == Format::Otlp => doctor.analyse_with_view(&spans),
        None => (doctor.analyse(&spans), Vec::new()),
    };
    let output = match args.format {
        Format::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            render::text(&diagnosis, &TextOptions { color, ..TextOptions::default() })
        }
        Format::Json => serde_json::to_string_pretty(&diagnosis)? + "\n",
        Format::Otlp => serde_json::to_string(&Span::to_request(&connected))? + "\n",
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output.as_bytes()).and_then(|_| stdout.flush()) {
        // A reader that stops early (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to stdout")?,
    }
    Ok(if diagnosis.has_broken_propagation() {
        ExitCode::from(3)
    } else if diagnosis.failure.is_some() {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    })
}

fn usage(message: &str) -> ExitCode {
    eprintln!("agentrace doctor: {message}");
    ExitCode::from(2)
}

fn read_files(files: &[PathBuf]) -> anyhow::Result<Vec<Span>> {
    let limits = Limits::default();
    let mut spans = Vec::new();
    for path in files {
        let (bytes, name) = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf).context("reading stdin")?;
            (buf, "stdin".to_owned())
        } else {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (bytes, path.display().to_string())
        };
        let read = agentrace_doctor::input::spans_from_bytes(&bytes, &limits).with_context(|| name.clone())?;
        if read.rejected > 0 {
            eprintln!("agentrace doctor: {name}: skipped {} invalid span(s)", read.rejected);
        }
        spans.extend(read.spans);
    }
    Ok(spans)
}

/// The collector's UI/API address from `--server`: a URL, or a bare
/// `host:port` (taken as `http://host:port`), without a trailing slash.
fn server_base(server: &str) -> Result<String, String> {
    let server = server.trim();
    let url = if server.contains("://") { server.to_owned() } else { format!("http://{server}") };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        Ok(u) => Err(format!(
            "--server {server:?}: the collector's UI/API address is http:// or https:// (not {}://), \
             e.g. http://127.0.0.1:4380",
            u.scheme()
        )),
        Err(e) => Err(format!("--server {server:?} is no address ({e}); e.g. http://127.0.0.1:4380 or 127.0.0.1:4380")),
    }
}

/// What to try when `--server` does not answer as the collector's API.
const API_HINT: &str = "give the collector's UI/API address (`api.listen`, http://127.0.0.1:4380 by default), not an \
                        OTLP receiver's (4317, 4318)";

fn fetch(server: &str, token: Option<&str>, path: &str) -> anyhow::Result<Vec<Span>> {
    let url = format!("{server}{path}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send() {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            bail!("nothing answers at {server} ({}): is `agentrace serve` running there? {API_HINT}", root_cause(&e))
        }
        Err(e) if e.is_timeout() => bail!("{server} did not answer GET {path} within 60 s"),
        // An OTLP/gRPC port speaks HTTP/2 only and drops an HTTP/1.1 request.
        Err(e) => bail!("{server} did not answer GET {path} as an HTTP API ({}): {API_HINT}", root_cause(&e)),
    };
    let status = response.status();
    let body = response.bytes().with_context(|| format!("reading the answer of GET {url}"))?;
    // The API's own errors are JSON, `{"error": {"message": …}}`.
    let api_error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned));
    match (status, api_error) {
        (s, _) if s.is_success() => {}
        (reqwest::StatusCode::UNAUTHORIZED, _) => bail!(
            "the collector at {server} wants its bearer token (401{}): give it with --token or AGENTRACE_TOKEN",
            if token.is_some() { ", and refused the one given" } else { "" }
        ),
        (_, Some(message)) => bail!("the collector at {server} answered GET {path} with {status}: {message}"),
        (reqwest::StatusCode::NOT_FOUND, None) => {
            bail!("{server} has no agentrace API (GET {path}: 404): {API_HINT}")
        }
        (_, None) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            bail!("{server} answered GET {path} with {status}: {text}");
        }
    }
    let read = agentrace_doctor::input::spans_from_bytes(&body, &Limits::default())
        .with_context(|| format!("decoding the answer of GET {url}"))?;
    Ok(read.spans)
}

/// The innermost error of a chain: `Connection refused (os error 111)`
/// rather than reqwest's three layers of wrapping.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

/// Percent-encodes a path segment (session IDs are user text).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DoctorArgs,
    }

    fn args(words: &[&str]) -> DoctorArgs {
        Wrapper::try_parse_from(std::iter::once("doctor").chain(words.iter().copied())).expect("valid args").args
    }

    fn fixture(name: &str) -> String {
        format!("{}/../doctor/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn exit_codes_say_healthy_broken_failed_and_usage() {
        let code = |words: &[&str]| run(args(words)).expect("runs");
        let json = ["--format", "json"];
        assert_eq!(code(&[&fixture("healthy_request.json"), json[0], json[1]]), ExitCode::SUCCESS);
        assert_eq!(code(&[&fixture("broken_queue_message_id.json"), json[0], json[1]]), ExitCode::from(3));
        assert_eq!(code(&[&fixture("failure_llm.json"), json[0], json[1]]), ExitCode::from(4));
        // A slow hop is not a broken one: a timing gap alone exits 0.
        assert_eq!(code(&[&fixture("broken_timing_gap.json"), json[0], json[1]]), ExitCode::SUCCESS);
        assert_eq!(code(&["--server", "http://127.0.0.1:9", json[0], json[1]]), ExitCode::from(2));
        assert_eq!(code(&["--apply-threshold", "2", &fixture("healthy_request.json")]), ExitCode::from(2));
        let missing = run(args(&["/nonexistent/trace.json"])).unwrap_err();
        assert!(format!("{missing:#}").contains("reading /nonexistent/trace.json"), "{missing:#}");
    }

    /// A one-shot HTTP server standing in for the collector's api_v3.
    fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body)).expect("write");
            String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned()
        });
        (url, handle)
    }

    #[test]
    fn server_sessions_are_fetched_from_the_api_and_diagnosed() {
        let request = std::fs::read_to_string(fixture("broken_mcp_tool_root.json")).expect("fixture");
        let (url, server) = serve_once(format!(r#"{{"result": {request}}}"#).into_bytes());
        let code = run(args(&["--server", &url, "--session", "sess m/1", "--format", "json"])).expect("runs");
        assert_eq!(code, ExitCode::from(3), "the MCP fixture has tool roots");
        assert_eq!(server.join().expect("served"), "GET /api/v3/sessions/sess%20m%2F1/spans HTTP/1.1");

        let (url, server) = serve_once(br#"{"result": {"resourceSpans": []}}"#.to_vec());
        let trace = "A6E70000000000060000000000000001";
        let err = run(args(&["--server", &url, "--trace", trace])).unwrap_err();
        assert_eq!(err.to_string(), format!("the collector at {url} holds no span of trace {}", trace.to_lowercase()));
        assert_eq!(
            server.join().expect("served"),
            format!("GET /api/agentrace/traces/{}/context HTTP/1.1", trace.to_lowercase())
        );
    }

    #[test]
    fn a_bare_host_and_port_is_an_address_and_other_schemes_are_refused() {
        assert_eq!(server_base("127.0.0.1:4380").as_deref(), Ok("http://127.0.0.1:4380"));
        assert_eq!(server_base("https://obs.example/agentrace/").as_deref(), Ok("https://obs.example/agentrace"));
        assert!(server_base("grpc://127.0.0.1:4317").unwrap_err().contains("http:// or https://"));
        assert!(server_base("http://").is_err());
    }

    #[test]
    fn a_server_that_is_not_the_api_says_what_to_give_instead() {
        // Nothing listens: connection refused, named as such, with the default address.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let err = run(args(&["--server", &addr.to_string(), "--session", "s"])).unwrap_err().to_string();
        assert!(err.starts_with(&format!("nothing answers at http://{addr}")), "{err}");
        assert!(err.contains("http://127.0.0.1:4380"), "{err}");

        // A server that answers 404 with no API error (an OTLP/HTTP receiver).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .expect("write");
        });
        let err = run(args(&["--server", &url, "--session", "s"])).unwrap_err().to_string();
        server.join().expect("served");
        assert!(err.contains("has no agentrace API") && err.contains("not an OTLP receiver"), "{err}");

        // The API's own error is passed on.
        let (url, server) = serve_once(br#"{"result": {"resourceSpans": []}}"#.to_vec());
        let err = run(args(&["--server", &url, "--session", "nobody"])).unwrap_err().to_string();
        server.join().expect("served");
        assert!(err.contains("holds no span of session \"nobody\""), "{err}");
    }

    #[test]
    fn session_ids_are_encoded_as_one_path_segment() {
        assert_eq!(percent_encode("sess-42"), "sess-42");
        assert_eq!(percent_encode("a/b c?"), "a%2Fb%20c%3F");
    }
}
