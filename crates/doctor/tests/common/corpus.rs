//! The real-library corpus (`tests/corpus/`, see its README): loading the
//! recorded cases and scoring a diagnosis against the ground truth each case
//! recorded while it ran.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agentrace_doctor::{Config, Diagnosis, Doctor, Evidence};
use agentrace_model::Span;
use agentrace_model::otlp::Limits;
use serde::Deserialize;

/// One case's truth.json.
#[derive(Debug, Deserialize)]
pub struct Truth {
    pub case: String,
    pub suite: String,
    pub healthy: bool,
    #[serde(default)]
    pub broken_hops: Vec<Hop>,
    /// Agent frameworks' cases: every agent that ran, as the framework names it.
    #[serde(default)]
    pub agents: Option<Vec<TrueAgent>>,
    /// Agent frameworks' cases: where the request failed, if it did.
    #[serde(default)]
    pub failure: Option<TrueFailure>,
    /// False when the instrumentation records no token usage at all (then
    /// no reader can total tokens).
    #[serde(default = "yes")]
    pub tokens_in_spans: bool,
    /// Spans that only waited for work on the other side of a hand-off
    /// (beside the span that sent it), with that work.
    #[serde(default)]
    pub waits: Vec<TrueWait>,
}

/// A span that waited for work another agent did across a queue, as the
/// case saw it run.
#[derive(Debug, Deserialize)]
pub struct TrueWait {
    pub waiter_span_id: String,
    /// The agent that did the work.
    pub work_agent: String,
    /// The work's spans (the agent's span, its model call).
    pub work_span_ids: Vec<String>,
    /// How long the work ran while the wait was open, ms.
    pub overlap_ms: f64,
}

/// An agent as the case saw it run, with the tokens its own model calls used.
#[derive(Debug, Deserialize)]
pub struct TrueAgent {
    pub name: String,
    #[serde(default)]
    pub delegates_to: Vec<String>,
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The failure a case made happen.
#[derive(Debug, Deserialize)]
pub struct TrueFailure {
    pub span_name: String,
    #[serde(default)]
    pub span_id: Option<String>,
    pub category: String,
}

/// A place where context was lost, as the case saw it at run time.
#[derive(Debug, Deserialize)]
pub struct Hop {
    pub hop: String,
    pub orphan_span_id: String,
    pub parent_span_ids: Vec<String>,
    pub must_repair: bool,
    pub kinds: Vec<String>,
    /// False when the case's own account says the spans hold no sign that a
    /// caller existed (then a finding is welcome but not required).
    #[serde(default = "yes")]
    pub detectable: bool,
}

fn yes() -> bool {
    true
}

/// A recorded case: its folder, spans and truth.
pub struct Case {
    pub dir: PathBuf,
    pub spans: Vec<Span>,
    pub truth: Truth,
}

/// The committed corpus.
pub fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every case under `root` (`root/<suite>/cases/<case>/`), sorted by path.
pub fn cases(root: &Path) -> Vec<Case> {
    let mut dirs = Vec::new();
    for suite in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let cases = suite.path().join("cases");
        for case in std::fs::read_dir(&cases).into_iter().flatten().flatten() {
            if case.path().join("truth.json").exists() {
                dirs.push(case.path());
            }
        }
    }
    dirs.sort();
    dirs.into_iter().map(|dir| load(&dir)).collect()
}

pub fn load(dir: &Path) -> Case {
    let bytes =
        std::fs::read(dir.join("spans.jsonl")).unwrap_or_else(|e| panic!("{}: spans.jsonl: {e}", dir.display()));
    let read = agentrace_doctor::input::spans_from_bytes(&bytes, &Limits::default())
        .unwrap_or_else(|e| panic!("{}: spans.jsonl: {e}", dir.display()));
    assert_eq!(read.rejected, 0, "{}: every recorded span is valid", dir.display());
    let truth: Truth = serde_json::from_slice(&std::fs::read(dir.join("truth.json")).expect("truth.json"))
        .unwrap_or_else(|e| panic!("{}: truth.json: {e}", dir.display()));
    Case { dir: dir.to_owned(), spans: read.spans, truth }
}

pub fn diagnose(case: &Case) -> Diagnosis {
    Doctor::new(Config::default()).analyse(&case.spans)
}

/// The finding kinds that name a root cut off from its caller.
const ROOT_BREAKS: [&str; 3] = ["orphan_root", "tool_root", "lost_context"];

/// The counts the issue asks for, per case.
#[derive(Debug, Default, Clone)]
pub struct Score {
    pub breaks: usize,
    /// Breaks the case says the spans cannot show.
    pub undetectable: usize,
    pub must_repair: usize,
    pub detected: usize,
    pub repaired: usize,
    pub suggested: usize,
    pub wrong: usize,
    pub false_findings: usize,
    /// What went wrong, for a human.
    pub problems: Vec<String>,
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        self.breaks += other.breaks;
        self.undetectable += other.undetectable;
        self.must_repair += other.must_repair;
        self.detected += other.detected;
        self.repaired += other.repaired;
        self.suggested += other.suggested;
        self.wrong += other.wrong;
        self.false_findings += other.false_findings;
    }

    pub fn row(&self, name: &str) -> String {
        format!(
            "{name:<58} breaks {:>3} ({} undetectable)  detected {:>3}  repaired {:>2}/{:<2} suggested {:>2}  wrong {}  false {}",
            self.breaks,
            self.undetectable,
            self.detected,
            self.repaired,
            self.must_repair,
            self.suggested,
            self.wrong,
            self.false_findings
        )
    }

    /// Whether the case meets the bar: nothing false, nothing wrong, every
    /// break seen, every unique pairing joined.
    pub fn passes(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn score(case: &Case, d: &Diagnosis) -> Score {
    let t = &case.truth;
    let mut s = Score {
        breaks: t.broken_hops.len(),
        undetectable: t.broken_hops.iter().filter(|h| !h.detectable).count(),
        ..Score::default()
    };
    let hops: BTreeMap<&str, &Hop> = t.broken_hops.iter().map(|h| (h.orphan_span_id.as_str(), h)).collect();
    s.must_repair = t.broken_hops.iter().filter(|h| h.must_repair).count();

    let mut detected: BTreeSet<&str> = BTreeSet::new();
    for f in d.findings.iter().filter(|f| f.kind.is_broken()) {
        let id = f.span_id.to_string();
        match hops.get(id.as_str()) {
            // `orphan_root`, `tool_root` and `lost_context` all say "this
            // root lost its caller"; which one fits depends on what the
            // orphan is (a tool, in-process work), so any of them detects it.
            Some(h) if ROOT_BREAKS.contains(&f.kind.as_str()) || h.kinds.iter().any(|k| k == f.kind.as_str()) => {
                detected.insert(h.orphan_span_id.as_str());
            }
            Some(h) => s.problems.push(format!(
                "{}: `{}` reported as {} (truth: {:?}): {}",
                h.hop,
                f.name,
                f.kind.as_str(),
                h.kinds,
                f.message
            )),
            // A request split over trace IDs is the consequence of its
            // broken hops, reported at its root.
            None if f.kind.as_str() == "trace_discontinuity" && !t.healthy => {}
            None => {
                s.false_findings += 1;
                s.problems.push(format!("false {} at `{}` ({}): {}", f.kind.as_str(), f.name, f.service, f.message));
            }
        }
    }
    s.detected = detected.len();
    for h in t.broken_hops.iter().filter(|h| h.detectable) {
        if !detected.contains(h.orphan_span_id.as_str()) {
            s.problems.push(format!("missed: {} (orphan {})", h.hop, h.orphan_span_id));
        }
    }

    let mut repaired: BTreeSet<&str> = BTreeSet::new();
    for r in &d.repairs {
        let (orphan, parent) = (r.span_id.to_string(), r.parent_span_id.to_string());
        match hops.get(orphan.as_str()) {
            Some(h) if h.parent_span_ids.contains(&parent) => {
                if r.applied {
                    repaired.insert(h.orphan_span_id.as_str());
                } else {
                    s.suggested += 1;
                }
            }
            Some(h) if r.applied => {
                s.wrong += 1;
                s.problems.push(format!("wrong join: {} joined to {parent} ({})", h.hop, r.detail));
            }
            // A span link is the instrumentation's own statement of where a
            // trace came from: following it is no guess.
            None if r.applied && r.evidence != Evidence::Link => {
                s.wrong += 1;
                s.problems.push(format!("wrong join of a span that is no orphan: {orphan} → {parent} ({})", r.detail));
            }
            _ => {}
        }
    }
    s.repaired = repaired.len();
    for h in t.broken_hops.iter().filter(|h| h.must_repair) {
        if !repaired.contains(h.orphan_span_id.as_str()) {
            s.problems.push(format!("not repaired although the pairing is unique: {}", h.hop));
        }
    }
    s
}

/// How the doctor read an agent framework's case, against its truth.
#[derive(Debug, Default)]
pub struct AgentScore {
    pub agents: usize,
    pub recognised: usize,
    pub edges: usize,
    pub edges_found: usize,
    pub tokens_exact: usize,
    pub failure_right: bool,
    pub problems: Vec<String>,
}

pub fn score_agents(case: &Case, d: &Diagnosis) -> Option<AgentScore> {
    let truth = case.truth.agents.as_ref()?;
    let mut s = AgentScore { agents: truth.len(), ..AgentScore::default() };
    let named: BTreeMap<&str, &agentrace_doctor::AgentStats> = d
        .agents
        .iter()
        .filter(|a| a.source != agentrace_doctor::AgentSource::Service)
        .map(|a| (a.name.as_str(), a))
        .collect();
    let found_edges: BTreeSet<(&str, &str)> = d
        .delegations
        .iter()
        .filter(|e| named.contains_key(e.from.as_str()) && named.contains_key(e.to.as_str()))
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    // Each framework's agents are named by the convention it records them in, and the JSON says
    // which (an agent named another way would be a guess that happened to match).
    let conventions: &[&str] = match case.truth.suite.as_str() {
        "autogen" => &["autogen", "gen_ai"],
        "langgraph" => &["langgraph"],
        "openai_agents" => &["gen_ai", "openinference", "traceloop"],
        "openai_v2" => &["gen_ai"],
        "pydantic_ai" => &["pydantic_ai"],
        "smolagents" => &["openinference"],
        _ => &[],
    };
    for a in truth {
        match named.get(a.name.as_str()) {
            Some(got) => {
                s.recognised += 1;
                let source = serde_json::to_value(got.source).ok().and_then(|v| v.as_str().map(str::to_owned));
                if !conventions.is_empty() && !source.as_deref().is_some_and(|c| conventions.contains(&c)) {
                    s.problems.push(format!("{}: named by {source:?}, not by {conventions:?}", a.name));
                }
                // Tokens are what the issue holds exact; a call that failed
                // before any usage is counted by the doctor and not by the
                // stand-in, so call counts are reported, not required.
                if (got.input_tokens, got.output_tokens) == (a.input_tokens, a.output_tokens)
                    || !case.truth.tokens_in_spans
                {
                    s.tokens_exact += 1;
                } else {
                    s.problems.push(format!(
                        "{}: {} calls {}/{} tokens, truth {} calls {}/{}",
                        a.name,
                        got.llm_calls,
                        got.input_tokens,
                        got.output_tokens,
                        a.llm_calls,
                        a.input_tokens,
                        a.output_tokens
                    ));
                }
            }
            None => s.problems.push(format!("agent {} not recognised", a.name)),
        }
        for to in &a.delegates_to {
            s.edges += 1;
            if found_edges.contains(&(a.name.as_str(), to.as_str())) {
                s.edges_found += 1;
            } else {
                s.problems.push(format!("edge {} → {} missing", a.name, to));
            }
        }
    }
    let truth_edges: BTreeSet<(&str, &str)> =
        truth.iter().flat_map(|a| a.delegates_to.iter().map(move |t| (a.name.as_str(), t.as_str()))).collect();
    for e in found_edges.difference(&truth_edges) {
        s.problems.push(format!("edge {} → {} is not in the truth", e.0, e.1));
    }
    let mut extra: Vec<&str> = named.keys().copied().filter(|n| !truth.iter().any(|a| a.name == *n)).collect();
    extra.sort_unstable();
    if !extra.is_empty() {
        s.problems.push(format!("agents not in the truth: {extra:?}"));
    }
    s.failure_right = match (&case.truth.failure, &d.failure) {
        (None, None) => true,
        (Some(t), Some(f)) => {
            let span_ok = t.span_id.as_deref().map_or(f.name == t.span_name, |id| f.span_id.to_string() == id);
            span_ok && f.category.as_str() == t.category
        }
        _ => false,
    };
    if !s.failure_right {
        s.problems.push(format!(
            "failure: doctor {:?}, truth {:?}",
            d.failure.as_ref().map(|f| (&f.name, f.category.as_str())),
            case.truth.failure.as_ref().map(|f| (&f.span_name, &f.category))
        ));
    }
    Some(s)
}

/// "Where the time went" across asynchronous hand-offs, against the case's
/// waits: the work each wait waited for is on the critical path, and the
/// agent that did it is credited with at least 90 % of the time it ran
/// while the waits were open (not the waiting agent). `None` without waits.
pub fn score_waits(case: &Case, d: &Diagnosis) -> Option<Vec<String>> {
    if case.truth.waits.is_empty() {
        return None;
    }
    let mut problems = Vec::new();
    let critical: BTreeSet<String> =
        d.requests.iter().flat_map(|r| r.spans.iter()).filter(|s| s.critical).map(|s| s.span_id.to_string()).collect();
    let mut owed: BTreeMap<&str, f64> = BTreeMap::new();
    for w in &case.truth.waits {
        for id in &w.work_span_ids {
            if !critical.contains(id) {
                problems.push(format!(
                    "span {id}, the work wait {} waited for, is not on the critical path",
                    w.waiter_span_id
                ));
            }
        }
        *owed.entry(w.work_agent.as_str()).or_default() += w.overlap_ms;
    }
    for (agent, ms) in owed {
        let credited: f64 = d.time_breakdown.iter().filter(|t| t.agent == agent).map(|t| t.ms).sum();
        if credited < 0.9 * ms {
            problems.push(format!(
                "{agent} is credited with {credited:.0} ms of the critical path, though it worked {ms:.0} ms while waited for"
            ));
        }
    }
    Some(problems)
}
