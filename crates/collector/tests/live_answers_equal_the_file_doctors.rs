//! One answer everywhere: every case of the doctor's real-library corpus
//! (`crates/doctor/tests/corpus/*/cases/*`, spans recorded from Celery, the
//! `mcp` SDK, OpenLLMetry, OpenInference, httpx/aiohttp services, thread
//! pools and the agent frameworks), sent to a running collector, gives for
//! every connected request the answer `agentrace doctor` gives on the same
//! file: the same requests (the same arrived traces joined into each), the
//! same findings, repairs (applied and suggested), failure, retries, agents
//! and usage. Each case is sent three times, to a fresh collector each
//! time: shuffled; reversed with the last batch arriving late but within
//! the trace timeout; and one service at a time, each after everything
//! sent before has closed (as processes whose batch span processors wait
//! longer than the trace timeout deliver it). Once every trace has closed,
//! the stored answers must equal the file doctor's in all three.
//!
//! Under load (`..._live_under_load`), each case runs among healthy agent
//! traffic of two other services, 40 traces a second from as long before the
//! case as it lasts (a second at least) to a second after it, sent
//! interleaved with the case's batches:
//! traces close in large batches, and each diagnosis has many more traces
//! beside it than the case's own. Every request of the case must still get
//! the file doctor's answer over everything sent; the background may make
//! the file doctor less sure of the case than the case alone (more
//! candidates), never surer (no join applied, no finding on a hop that did
//! not break); and no background request may get a finding.
//!
//! With a context bound far below a case and its background
//! (`a_live_context_cut_short_..._under_load`), most diagnoses leave traces
//! out: the live answers may then be less sure than the file doctor's, never
//! surer (every other case, which keeps the test command within its time).
//!
//! With `AGENTRACE_FRESH_CORPUS=DIR`, the cases recorded afresh there (by
//! `scripts/corpus.sh`, as the README's test command does) are judged too.
//!
//! The collector keeps content here (`store_content: keep`): the doctor
//! reads evidence inside content (tool call IDs in a model's output, a tool's
//! unusable output), and the live pipeline diagnoses the spans as the store
//! keeps them, so with content dropped both answers would be made from
//! different spans.

use crate::support;

#[path = "../benches/support/agent_spans.rs"]
mod agent_spans;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentrace_collector::config::{Config, ContentAction};
use agentrace_doctor::{Config as DoctorConfig, Doctor, RequestAnswer};
use agentrace_model::otlp::{self, Limits};
use agentrace_model::{Span, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;

/// How long a trace stays open after its last span; the late batch of the
/// second order arrives well within it. On a loaded CI machine, sending a
/// case's batches (each acknowledged only once durable) once took longer
/// than the timeout, so a trace closed before the batches it depends on
/// arrived: not the arrival this test promises. Such a run is sent again
/// (see [`live`]), never judged.
const TRACE_TIMEOUT: Duration = Duration::from_secs(4);

/// The trace timeout of a delivery: twice as long over PostgreSQL, whose
/// acknowledgements (a `COPY` and a commit each, twelve collectors and the
/// rest of the test command on one server) once took longer than half of 4 s
/// three times running (CI run 49).
fn trace_timeout() -> Duration {
    if support::on_postgres() { TRACE_TIMEOUT * 2 } else { TRACE_TIMEOUT }
}
/// The trace timeout of a delivery under load (on SQLite; the test does not
/// run over PostgreSQL).
const UNDER_LOAD_TRACE_TIMEOUT: Duration = Duration::from_secs(8);
const LATE_BY: Duration = Duration::from_millis(150);

/// Cases sent at once, each to its own collector. A case spends most of its
/// time waiting for its traces to close, not computing, so many run at once
/// even on two cores (4 at once took 172 s for the committed corpus).
const PARALLEL: usize = 12;

/// Cases sent at once over PostgreSQL: twice [`PARALLEL`]. That run is the
/// test command's last step and runs alone, waiting on trace timeouts twice
/// as long: 71 s instead of 103 s for the committed corpus here, its CPU
/// 58 s of them on two cores, and no delivery sent again.
fn parallel() -> usize {
    if support::on_postgres() { 2 * PARALLEL } else { PARALLEL }
}

fn cases_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(suites) = std::fs::read_dir(root) else { return out };
    for suite in suites.flatten() {
        let cases = suite.path().join("cases");
        let Ok(entries) = std::fs::read_dir(&cases) else { continue };
        for case in entries.flatten() {
            if case.path().join("spans.jsonl").is_file() {
                out.push(case.path());
            }
        }
    }
    out.sort();
    out
}

/// The case's export requests, in the order they were recorded.
fn batches(case: &Path) -> Vec<ExportTraceServiceRequest> {
    let text = std::fs::read_to_string(case.join("spans.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| otlp::decode_json(l.as_bytes(), &Limits::default()).expect("a recorded batch decodes").request)
        .collect()
}

fn doctor_config() -> DoctorConfig {
    // As the live pipeline configures its doctor (see `assemble::Pipeline::start`).
    DoctorConfig {
        apply_threshold: agentrace_collector::config::PipelineConfig::default().apply_threshold,
        include_tree: false,
        ..DoctorConfig::default()
    }
}

/// The file doctor's answer, request by request.
fn offline(batches: &[ExportTraceServiceRequest]) -> BTreeMap<String, RequestAnswer> {
    let spans: Vec<Span> = batches.iter().flat_map(Span::from_request).collect();
    let diagnosis = Doctor::new(doctor_config()).analyse(&spans);
    diagnosis.request_answers().into_iter().map(|a| (key(&a), a)).collect()
}

/// A request's identity: its connected trace and its root span (a trace
/// with a span whose parent never arrived holds two requests).
fn key(a: &RequestAnswer) -> String {
    format!("{}/{}", a.request.trace_id, a.request.span_id)
}

/// A small deterministic shuffle, seeded by the case's name.
fn shuffled<T>(mut items: Vec<T>, seed: &str) -> Vec<T> {
    let mut state =
        seed.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
    items
}

/// Every request row the collector stored, with its answer, paging through.
fn live_requests(api: &str) -> BTreeMap<String, RequestAnswer> {
    let mut out = BTreeMap::new();
    let mut before = String::new();
    loop {
        let (status, body) = support::get_json(&format!("{api}/api/agentrace/requests?limit=200&answers=true{before}"));
        assert_eq!(status, 200, "{body}");
        let rows = body["requests"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            let answer: RequestAnswer = serde_json::from_value(row["answer"].clone())
                .unwrap_or_else(|e| panic!("an answer decodes: {e}: {row}"));
            out.insert(key(&answer), answer);
        }
        match rows.last() {
            Some(last) if rows.len() == 200 => {
                before = format!(
                    "&before={}:{}:{}",
                    last["start_unix_nano"],
                    last["request_id"].as_str().unwrap(),
                    last["root_span_id"].as_str().unwrap()
                );
            }
            _ => return out,
        }
    }
}

/// Sends the batches in order (the last one `late` after the others) to a
/// fresh collector and reads back its stored answers once every trace has
/// closed and the rows stopped changing.
fn live(batches: &[ExportTraceServiceRequest], late: Option<Duration>) -> BTreeMap<String, RequestAnswer> {
    live_within(batches, late, trace_timeout())
}

/// [`live`] with a trace timeout of one's own.
fn live_within(
    batches: &[ExportTraceServiceRequest],
    late: Option<Duration>,
    timeout: Duration,
) -> BTreeMap<String, RequestAnswer> {
    live_bounded(batches, late, timeout, None).0
}

/// [`live_within`] with `pipeline.max_context_spans` set (the default
/// when `None`); also says how many diagnoses left traces out at that
/// bound (`agentrace_pipeline_contexts_cut_total`).
// (Each discarded delivery is said on the test's output, with its slowest gap.)
#[allow(clippy::print_stderr)]
fn live_bounded(
    batches: &[ExportTraceServiceRequest],
    late: Option<Duration>,
    timeout: Duration,
    max_context_spans: Option<usize>,
) -> (BTreeMap<String, RequestAnswer>, u64) {
    // A machine too busy to deliver the case within the trace timeout
    // breaks the test's premise, not the collector: that run is discarded
    // and the case sent again to a fresh collector, after a pause that
    // grows (CI run 59, on a machine building 1.4x slower than usual,
    // found three cases starved three times running).
    for attempt in 0..5 {
        match live_once(batches, late, timeout, max_context_spans) {
            Ok(answers) => return answers,
            Err(gap) => eprintln!("a case's batches arrived {gap:?} apart (at most {:?}): sent again", timeout / 2),
        }
        std::thread::sleep(Duration::from_secs(attempt + 1));
    }
    panic!("five times the machine could not deliver a case's batches within the trace timeout");
}

/// One delivery to a fresh collector; the gap when some batch of the case
/// arrived more than half the trace timeout after the case's batch before it
/// (besides `late`; background requests between them count in the gap).
fn live_once(
    batches: &[ExportTraceServiceRequest],
    late: Option<Duration>,
    timeout: Duration,
    max_context_spans: Option<usize>,
) -> Result<(BTreeMap<String, RequestAnswer>, u64), Duration> {
    let mut running = start_bounded(timeout, max_context_spans);
    let (last, first) = batches.split_last().expect("a case has spans");
    let of_case = |b: &ExportTraceServiceRequest| {
        b.resource_spans.iter().any(|rs| {
            !rs.resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter(|a| a.key == "service.name")
                .filter_map(|a| a.value.as_ref()?.value.as_ref())
                .any(|v| matches!(v, any_value::Value::StringValue(s) if s.starts_with("background-")))
        })
    };
    let mut slowest = Duration::ZERO;
    let mut since = std::time::Instant::now();
    for b in first {
        support::send_otlp(&running, b);
        if of_case(b) {
            slowest = slowest.max(since.elapsed());
            since = std::time::Instant::now();
        }
    }
    if let Some(late) = late {
        std::thread::sleep(late);
        since = std::time::Instant::now();
    }
    support::send_otlp(&running, last);
    slowest = slowest.max(since.elapsed());
    if slowest > timeout / 2 {
        running.stop();
        return Err(slowest);
    }
    let seen = settled(&running.api());
    let cut = support::metric(&running.api(), "agentrace_pipeline_contexts_cut_total") as u64;
    running.stop();
    Ok((seen, cut))
}

fn start(trace_timeout: Duration) -> support::Running {
    start_bounded(trace_timeout, None)
}

fn start_bounded(trace_timeout: Duration, max_context_spans: Option<usize>) -> support::Running {
    support::start(|c: &mut Config| {
        c.pipeline.trace_timeout = trace_timeout;
        if let Some(limit) = max_context_spans {
            c.pipeline.max_context_spans = limit;
        }
        c.redaction.store_content = ContentAction::Keep;
        c.storage.retention.max_age = None;
        // Twelve collectors share this process, whose resident memory the
        // memory limiter reads: one collector's limit is no limit of twelve.
        c.receivers.otlp.memory_limit = None;
    })
}

/// Every accepted request is in a closed trace whose answer is stored
/// (an open-traces gauge alone reads 0 while a just-accepted request is
/// still on its way to the pipeline, or a closed trace's answer is being
/// written: the answers read then would be the ones before it).
fn all_answered(api: &str) -> bool {
    support::metric(api, "agentrace_pipeline_requests_behind") == 0.0
        && support::metric(api, "agentrace_pipeline_open_traces") == 0.0
}

/// The stored answers once every trace has closed and the rows stopped changing.
fn settled(api: &str) -> BTreeMap<String, RequestAnswer> {
    support::wait_for(120, "every trace to close", || all_answered(api));
    let mut seen = live_requests(api);
    support::wait_for(120, "the stored answers to settle", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = live_requests(api);
        let settled = now == seen && !now.is_empty();
        seen = now;
        settled
    });
    seen
}

/// Each process exports on its own clock (the OpenTelemetry SDKs' batch
/// span processors wait 5 s by default, longer than the collector's trace
/// timeout): the batches are grouped by the service that sent them, and
/// each service's batches arrive only once everything sent before has
/// closed and been diagnosed. The services go in the order of their first
/// appearance (a caller's spans before its callee's) or, with `callees_first`,
/// the reverse (a callee's orphan is diagnosed before its caller arrives).
fn live_one_service_at_a_time(
    batches: &[ExportTraceServiceRequest],
    callees_first: bool,
) -> BTreeMap<String, RequestAnswer> {
    let mut running = start(Duration::from_millis(300));
    let api = running.api();
    let mut services: Vec<(String, Vec<&ExportTraceServiceRequest>)> = Vec::new();
    for b in batches {
        let name = b
            .resource_spans
            .first()
            .and_then(|r| r.resource.as_ref())
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        match services.iter_mut().find(|(n, _)| *n == name) {
            Some((_, group)) => group.push(b),
            None => services.push((name, vec![b])),
        }
    }
    if callees_first {
        services.reverse();
    }
    for (_, group) in &services {
        for b in group {
            support::send_otlp(&running, b);
        }
        support::wait_for(120, "the service's traces to close", || all_answered(&api));
    }
    let seen = settled(&api);
    running.stop();
    seen
}

/// What differs between the two answers, in words.
fn differences(
    case: &str,
    order: &str,
    file: &BTreeMap<String, RequestAnswer>,
    live: &BTreeMap<String, RequestAnswer>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, want) in file {
        match live.get(id) {
            None => out.push(format!(
                "{case} [{order}]: request {id} ({} / {}) of traces {:?} is missing live",
                want.request.service, want.request.name, want.request.original_traces
            )),
            Some(got) if got != want => {
                let show = |a: &RequestAnswer| serde_json::to_string_pretty(a).unwrap();
                out.push(format!(
                    "{case} [{order}]: request {id} differs:\n--- file doctor\n{}\n--- live\n{}",
                    show(want),
                    show(got)
                ));
            }
            Some(_) => {}
        }
    }
    for (id, got) in live {
        if !file.contains_key(id) {
            out.push(format!(
                "{case} [{order}]: live has request {id} ({} / {}) of traces {:?} that the file doctor does not",
                got.request.service, got.request.name, got.request.original_traces
            ));
        }
    }
    out
}

/// Judges every case with `one` (given the case's directory and its name,
/// `suite/case`), [`parallel()`] at once; every difference found.
fn each_case(cases: &[PathBuf], one: impl Fn(&Path, &str) -> Vec<String> + Sync) -> Vec<String> {
    assert!(!cases.is_empty(), "no corpus cases found");
    let queue = std::sync::Mutex::new(cases.to_vec());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel() {
            scope.spawn(|| {
                // (Taken in a call of its own: the queue's lock is released
                // before the case is judged, not held through it, as it would
                // be by a temporary of the `while let` itself.)
                let next = || queue.lock().unwrap().pop();
                while let Some(case) = next() {
                    let name = format!(
                        "{}/{}",
                        case.parent().and_then(|p| p.parent()).and_then(|p| p.file_name()).unwrap().to_string_lossy(),
                        case.file_name().unwrap().to_string_lossy()
                    );
                    let found = one(&case, &name);
                    failures.lock().unwrap().extend(found);
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

// The figures go to the test's output, for the closing note and the README.
#[allow(clippy::print_stderr)]
fn judge(cases: &[PathBuf]) {
    let requests = std::sync::atomic::AtomicUsize::new(0);
    let failures = each_case(cases, |case, name| {
        let mut failures = Vec::new();
        let sent = batches(case);
        let file = offline(&sent);
        requests.fetch_add(file.len(), std::sync::atomic::Ordering::Relaxed);
        let orders = [
            ("shuffled", shuffled(sent.clone(), name), None),
            ("reversed, last batch late", sent.iter().rev().cloned().collect(), Some(LATE_BY)),
        ];
        // Over PostgreSQL (the test command's second run) one order: the
        // orders try the pipeline, which is the same code whichever store it
        // writes to; the store's part is the same in each.
        for (order, batches, late) in orders.into_iter().take(if support::on_postgres() { 1 } else { 2 }) {
            let got = live(&batches, late);
            failures.extend(differences(name, order, &file, &got));
        }
        if support::on_postgres() {
            return failures;
        }
        // Both directions passed on the whole committed corpus (stop 27);
        // each case takes one, by its name, to keep the test's time.
        let callees_first = name.len() % 2 == 0;
        let got = live_one_service_at_a_time(&sent, callees_first);
        let order = if callees_first {
            "one service at a time, callees first, each after the others closed"
        } else {
            "one service at a time, callers first, each after the others closed"
        };
        failures.extend(differences(name, order, &file, &got));
        failures
    });
    eprintln!(
        "{} cases, {} requests by the file doctor, each sent in {} orders{}: {} differences",
        cases.len(),
        requests.into_inner(),
        if support::on_postgres() { 1 } else { 3 },
        if support::on_postgres() { " (store: PostgreSQL)" } else { "" },
        failures.len()
    );
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n\n"));
}

/// Background traces a second, and how far before and after the case they run.
const BACKGROUND_PER_SECOND: f64 = 40.0;
const BACKGROUND_AROUND_NS: u64 = 1_000_000_000;
/// Background traces per export request.
const BACKGROUND_PER_REQUEST: usize = 100;

/// Healthy agent traffic of other services over the case's time, `per_second` traces a second, from as
/// long before it as it lasts (at least [`BACKGROUND_AROUND_NS`]) to
/// [`BACKGROUND_AROUND_NS`] after: the load generator's agent
/// requests (six spans each: an agent, a model call, a tool call, a
/// producer and its consumer, a retrieval; sessions, message and tool call
/// IDs of their own), spread evenly, in export requests of
/// [`BACKGROUND_PER_REQUEST`] traces.
fn background(case: &[ExportTraceServiceRequest], per_second: f64) -> Vec<ExportTraceServiceRequest> {
    let times = case.iter().flat_map(support::spans).map(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
    let (lo, hi) = times.fold((u64::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e.max(s))));
    // The other services were running before the case began, for at least
    // as long as the case lasts: their history is what tells their own work
    // from work that lost its caller.
    let before = BACKGROUND_AROUND_NS.max(hi - lo);
    let (from, to) = (lo.saturating_sub(before), hi.saturating_add(BACKGROUND_AROUND_NS));
    let traces = ((to - from) as f64 / 1e9 * per_second).ceil().max(1.0) as u64;
    let mut out: Vec<ExportTraceServiceRequest> = Vec::new();
    for j in 0..traces {
        let mut r = agent_spans::request(j + 1, 6, agent_spans::Shape::Agents);
        let at = from + (to - from) / traces * j;
        let rs = &mut r.resource_spans[0];
        for a in rs.resource.iter_mut().flat_map(|r| r.attributes.iter_mut()) {
            if a.key == "service.name" {
                a.value = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(agent_spans::s(["background-planner", "background-worker"][j as usize % 2])),
                });
            }
        }
        let first = rs.scope_spans[0].spans.iter().map(|s| s.start_time_unix_nano).min().unwrap_or(0);
        for s in rs.scope_spans.iter_mut().flat_map(|ss| ss.spans.iter_mut()) {
            s.start_time_unix_nano = s.start_time_unix_nano - first + at;
            s.end_time_unix_nano = s.end_time_unix_nano - first + at;
        }
        match out.last_mut() {
            Some(last) if last.resource_spans.len() < BACKGROUND_PER_REQUEST => {
                last.resource_spans.extend(r.resource_spans)
            }
            _ => out.push(r),
        }
    }
    out
}

/// Background requests sent between two batches of a case, at most: each
/// takes the sender a round trip, and a case's batches must arrive within
/// half the trace timeout of each other (CI runs 59-61: a long case's share
/// of 600-span requests between two of its batches took longer than that
/// on a busy machine).
const MAX_BACKGROUND_BETWEEN: usize = 2;

/// The case's batches with the background woven around them: evenly, but
/// for what would go between two of its batches past
/// [`MAX_BACKGROUND_BETWEEN`], which goes before its first.
fn interleaved(
    case: &[ExportTraceServiceRequest],
    background: &[ExportTraceServiceRequest],
) -> Vec<ExportTraceServiceRequest> {
    let n = case.len();
    let bound = |i: usize| background.len() * i / (n + 1);
    let mut front: Vec<ExportTraceServiceRequest> = background[..bound(1)].to_vec();
    let mut between: Vec<&[ExportTraceServiceRequest]> = Vec::with_capacity(n);
    for i in 1..n {
        let (from, to) = (bound(i), bound(i + 1));
        let kept = to - (to - from).min(MAX_BACKGROUND_BETWEEN);
        front.extend(background[from..kept].iter().cloned());
        between.push(&background[kept..to]);
    }
    let mut out = front;
    for (i, b) in case.iter().enumerate() {
        out.push(b.clone());
        if let Some(slot) = between.get(i) {
            out.extend(slot.iter().cloned());
        }
    }
    out.extend(background[bound(n)..].iter().cloned());
    out
}

/// What the background made the file doctor surer of than the case alone:
/// a join applied, or a finding on a span that is no broken hop's orphan in
/// the case's ground truth (`truth.json`).
fn no_surer(
    case_name: &str,
    case: &Path,
    alone: &BTreeMap<String, RequestAnswer>,
    with: &BTreeMap<String, RequestAnswer>,
) -> Vec<String> {
    let truth: serde_json::Value = std::fs::read_to_string(case.join("truth.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let broken: BTreeSet<String> = truth["broken_hops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["orphan_span_id"].as_str().map(str::to_owned))
        .collect();
    let (joins, findings) = surer(alone, with);
    let mut out: Vec<String> = joins
        .into_iter()
        .map(|j| {
            format!(
                "{case_name} [file doctor, with the background]: join {j} applied, which the case alone does not apply"
            )
        })
        .collect();
    out.extend(findings.into_iter().filter(|(_, span)| !broken.contains(span)).map(|(kind, span)| {
        format!("{case_name} [file doctor, with the background]: finding {kind} on span {span}, which broke no hop")
    }));
    out
}

/// What `answers` are surer of than `reference`: the joins (orphan/parent
/// span IDs) they apply and it does not, and their findings (kind, span
/// ID) that it does not have.
fn surer(
    reference: &BTreeMap<String, RequestAnswer>,
    answers: &BTreeMap<String, RequestAnswer>,
) -> (Vec<String>, Vec<(String, String)>) {
    let applied = |answers: &BTreeMap<String, RequestAnswer>| -> BTreeSet<String> {
        answers
            .values()
            .flat_map(|a| &a.repairs)
            .filter(|r| r.applied)
            .map(|r| format!("{}/{}", r.span_id, r.parent_span_id))
            .collect()
    };
    let found = |answers: &BTreeMap<String, RequestAnswer>| -> BTreeSet<(String, String)> {
        answers.values().flat_map(|a| &a.findings).map(|f| (format!("{:?}", f.kind), f.span_id.to_string())).collect()
    };
    (
        applied(answers).difference(&applied(reference)).cloned().collect(),
        found(answers).difference(&found(reference)).cloned().collect(),
    )
}

/// The trace IDs of a set of export requests.
fn trace_ids(batches: &[ExportTraceServiceRequest]) -> BTreeSet<TraceId> {
    batches.iter().flat_map(support::spans).filter_map(|s| TraceId::from_slice(&s.trace_id).ok()).collect()
}

// The figures go to the test's output, for the closing note and the README.
#[allow(clippy::print_stderr)]
#[test]
fn every_corpus_case_gets_the_file_doctors_answer_live_under_load() {
    let corpus = support::workspace_root().join("crates/doctor/tests/corpus");
    let cases = cases_under(&corpus);
    let counts = std::sync::Mutex::new((0usize, 0usize, 0usize));
    let failures = each_case(&cases, |case, name| {
        let sent = batches(case);
        let ours = trace_ids(&sent);
        let behind = background(&sent, BACKGROUND_PER_SECOND);
        let everything: Vec<ExportTraceServiceRequest> = sent.iter().chain(&behind).cloned().collect();
        let of_case = |answers: BTreeMap<String, RequestAnswer>| -> BTreeMap<String, RequestAnswer> {
            answers.into_iter().filter(|(_, a)| a.request.original_traces.iter().any(|t| ours.contains(t))).collect()
        };
        let all_file = offline(&everything);
        let alone = offline(&sent);
        let file = of_case(all_file.clone());
        // The premise: other services' healthy traffic may make the doctor
        // less sure of the case (more candidates, fewer suggestions), never
        // surer: no join applied that the case alone does not apply, no
        // finding but on a hop that broke.
        let mut failures = no_surer(name, case, &alone, &file);
        // Twice the trace timeout: twelve collectors each taking a case and
        // its background on a busy machine (CI runs 59-62, on a VM building
        // 1.4x slower than usual, found one to three cases whose batches
        // could not arrive within 2 s of each other five times running).
        let all_live = live_within(&interleaved(&sent, &behind), None, UNDER_LOAD_TRACE_TIMEOUT);
        failures.extend(
            all_live
                .iter()
                .chain(&all_file)
                .filter(|(_, a)| !a.request.original_traces.iter().any(|t| ours.contains(t)))
                .filter(|(_, a)| !a.findings.is_empty() || !a.repairs.is_empty())
                .map(|(id, a)| format!("{name} [under load]: background request {id} has findings {:?}", a.findings)),
        );
        let got = of_case(all_live);
        failures.extend(differences(name, "under load", &file, &got));
        let mut c = counts.lock().unwrap();
        c.0 += file.len();
        c.1 += behind.iter().map(|b| b.resource_spans.len()).sum::<usize>();
        c.2 += behind.iter().flat_map(support::spans).count();
        failures
    });
    let (requests, traces, spans) = counts.into_inner().unwrap();
    eprintln!(
        "{} cases, {requests} requests by the file doctor, among {traces} background traces ({spans} spans){}: {} differences",
        cases.len(),
        if support::on_postgres() { " (store: PostgreSQL)" } else { "" },
        failures.len()
    );
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n\n"));
}

/// The context bound of [`a_live_context_cut_short_is_never_surer_than_the_file_doctor_under_load`],
/// and its background traces a second: a context of about twenty
/// background traces, a fraction of what runs beside a case (a hundred
/// traces and more), so that most diagnoses leave traces out, at a quarter
/// of the under-load test's background (the cost of the test is in it).
const CUT_CONTEXT_SPANS: usize = 120;
const CUT_BACKGROUND_PER_SECOND: f64 = 10.0;

/// Under load past `pipeline.max_context_spans`, a diagnosis is given only
/// part of what ran beside its traces (the nearest, up to the bound). The
/// file doctor reads everything. The live answer may then be less sure
/// (a join held, a break missed) but never surer: no join applied and no
/// finding, on the case's requests or on the healthy background's, that
/// the file doctor over everything sent does not have.
// The figures go to the test's output, for the closing note and the README.
#[allow(clippy::print_stderr)]
#[test]
fn a_live_context_cut_short_is_never_surer_than_the_file_doctor_under_load() {
    let corpus = support::workspace_root().join("crates/doctor/tests/corpus");
    // Every other case, by name: every suite is tried, at half the cost (a
    // collector per case, for the trace timeout and more).
    let cases: Vec<PathBuf> = cases_under(&corpus).into_iter().step_by(2).collect();
    let counts = std::sync::Mutex::new((0usize, 0u64, 0usize));
    let failures = each_case(&cases, |case, name| {
        let sent = batches(case);
        let behind = background(&sent, CUT_BACKGROUND_PER_SECOND);
        let everything: Vec<ExportTraceServiceRequest> = sent.iter().chain(&behind).cloned().collect();
        let file = offline(&everything);
        let (live, cut) =
            live_bounded(&interleaved(&sent, &behind), None, UNDER_LOAD_TRACE_TIMEOUT, Some(CUT_CONTEXT_SPANS));
        let less_sure = differences(name, "cut short", &file, &live).len();
        let mut c = counts.lock().unwrap();
        c.0 += file.len();
        c.1 += cut;
        c.2 += less_sure;
        let (joins, findings) = surer(&file, &live);
        // A join held leaves the time its orphan filled unaccounted in the
        // caller, and the answer says so (a timing gap, which a healthy
        // trace may have too); a discontinuity restates the joins applied
        // (compared above) at the root of the request they make, which a
        // join held moves. Both follow from being less sure; neither is a
        // claim of its own.
        let findings =
            findings.into_iter().filter(|(kind, _)| !matches!(kind.as_str(), "TimingGap" | "TraceDiscontinuity"));
        let mut out: Vec<String> = joins
            .into_iter()
            .map(|j| {
                format!("{name} [live, context cut short]: join {j} applied, which the file doctor does not apply")
            })
            .collect();
        out.extend(findings.into_iter().map(|(kind, span)| {
            let said = live.values().flat_map(|a| &a.findings).find(|f| f.span_id.to_string() == span);
            let said = said.map(|f| f.message.as_str()).unwrap_or_default();
            format!("{name} [live, context cut short]: finding {kind} on span {span}, which the file doctor does not report: {said}")
        }));
        out
    });
    let (requests, cut, less_sure) = counts.into_inner().unwrap();
    eprintln!(
        "{} cases, {requests} requests by the file doctor{}, contexts of at most {CUT_CONTEXT_SPANS} spans: {cut} diagnoses left traces out, {less_sure} differences from the file doctor, {} of them surer",
        cases.len(),
        if support::on_postgres() { " (store: PostgreSQL)" } else { "" },
        failures.len()
    );
    assert!(cut > 0, "no diagnosis left a trace out: the bound tests nothing");
    assert!(failures.is_empty(), "{} answers surer than the file doctor's:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_corpus_case_gets_the_file_doctors_answer_live() {
    let corpus = support::workspace_root().join("crates/doctor/tests/corpus");
    let cases = cases_under(&corpus);
    // Over PostgreSQL (the test command's second pass) every other case, by
    // name: the pipeline is the same code whichever store it writes to, and
    // what that pass tries (the rows it writes and reads back, requests
    // split across collectors) every suite's cases try; the whole corpus
    // there was the pass's longest test (110 s of 126 in CI run 100).
    let cases = if support::on_postgres() { cases.into_iter().step_by(2).collect() } else { cases };
    judge(&cases);
}

#[test]
#[ignore = "needs AGENTRACE_FRESH_CORPUS, a corpus recorded by scripts/corpus.sh (the README's test command runs it)"]
fn every_freshly_recorded_case_gets_the_file_doctors_answer_live() {
    let dir = std::env::var_os("AGENTRACE_FRESH_CORPUS").expect("AGENTRACE_FRESH_CORPUS names the recorded corpus");
    judge(&cases_under(Path::new(&dir)));
}
