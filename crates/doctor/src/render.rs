//! Text rendering of a [`Diagnosis`], for a terminal or a pipe.
//!
//! The face of the road's end: `agentrace doctor` prints this. It is a pure
//! function of the diagnosis and the options, so golden tests can pin it.
//! Colour is an option the caller decides (on for a terminal only); without
//! it the output is plain text that greps and diffs well.

use std::fmt::Write;

use crate::diagnosis::{Diagnosis, Request, TreeSpan};

/// How to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colour; only for a terminal.
    pub color: bool,
    /// Most spans printed per request; the rest are counted.
    pub max_spans: usize,
    /// Most requests printed; the rest are counted.
    pub max_requests: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions { color: false, max_spans: 200, max_requests: 20 }
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
}

const BAR: usize = 24;

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the waterfall of each request, then three answers: what broke,
/// what failed, where the time went; then the agents.
pub fn text(d: &Diagnosis, options: &TextOptions) -> String {
    let p = Paint { on: options.color };
    let mut out = String::new();
    let s = &d.summary;
    let _ = writeln!(
        out,
        "{} {} in {} → {} · {} applied · {}",
        p.bold("agentrace doctor:"),
        plural(s.spans, "span", "spans"),
        plural(s.traces, "trace", "traces"),
        plural(s.requests, "request", "requests"),
        plural(s.repairs_applied, "repair", "repairs"),
        plural(s.synthetic_spans, "synthetic span", "synthetic spans"),
    );
    for r in d.requests.iter().take(options.max_requests) {
        out.push('\n');
        request(&mut out, r, options, &p);
    }
    if d.requests.len() > options.max_requests {
        let _ =
            writeln!(out, "\n… {} more requests (use --format json for all)", d.requests.len() - options.max_requests);
    }

    let _ = writeln!(out, "\n{}", p.bold("What broke"));
    if !d.has_broken_propagation() {
        let _ = writeln!(out, "  {}", p.green("nothing: trace context reached every hop"));
    }
    for f in d.findings.iter().filter(|f| f.kind.is_broken()) {
        let _ = writeln!(out, "  {} {}", p.red(f.kind.as_str()), f.message);
    }
    if !d.repairs.is_empty() {
        let _ = writeln!(out, "  repairs:");
        for r in &d.repairs {
            let state = if r.applied { p.yellow("applied  ") } else { p.dim("suggested") };
            let why = r.reason.as_deref().map(|w| format!(" — not applied: {w}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    {state} {:.2} {} → {} ({}){why}",
                r.confidence, r.span_id, r.parent_span_id, r.detail
            );
        }
    }

    let _ = writeln!(out, "\n{}", p.bold("What failed"));
    match &d.failure {
        None => {
            let _ = writeln!(out, "  {}", p.green("nothing: no span recorded an error"));
        }
        Some(f) => {
            // The summary names the kind of step (`LLM call …`, `tool …`); the
            // category follows with the chain, so neither stutters.
            let _ = writeln!(out, "  {}", p.red(&f.summary));
            let chain: Vec<&str> = f.chain.iter().map(|c| c.name.as_str()).collect();
            let _ = writeln!(
                out,
                "  {}",
                p.dim(&format!("category {} · chain: {}", f.category.as_str(), chain.join(" → ")))
            );
            if d.failures.len() > 1 {
                let _ = writeln!(out, "  ({} of {} requests failed)", d.failures.len(), d.requests.len());
            }
        }
    }

    for r in &d.retries {
        let what = r.error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} `{}` ({}) failed{what} and was retried: {:.0} ms lost, not a failure",
            p.yellow("retry"),
            r.name,
            r.service,
            r.cost_ms
        );
    }

    let _ = writeln!(out, "\n{} (critical path, {:.1} ms)", p.bold("Where the time went"), d.critical_path_ms);
    let width = d.time_breakdown.iter().map(|t| t.agent.chars().count()).max().unwrap_or(5).max(5);
    for t in d.time_breakdown.iter().take(12) {
        let _ = writeln!(
            out,
            "  {:<11} {:<width$} {:>10.1} ms {:>6.1}%",
            t.category.as_str(),
            t.agent,
            t.ms,
            t.share * 100.0
        );
    }
    if d.time_breakdown.len() > 12 {
        let _ = writeln!(out, "  … {} more rows", d.time_breakdown.len() - 12);
    }
    // Slow is not broken: gaps are told here, with their size, not under "What broke".
    for f in d.findings.iter().filter(|f| !f.kind.is_broken()) {
        let _ = writeln!(out, "  {} {}", p.yellow(f.kind.as_str()), f.message);
    }

    if !d.agents.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("Agents"));
        let width = d.agents.iter().map(|a| a.name.chars().count() + 2 * a.depth as usize).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "  {:<width$} {:>5} {:>5} {:>9} {:>9} {:>10} {:>6}   subtree: llm tools tokens cost",
            "agent", "llm", "tools", "in tok", "out tok", "cost $", "errors"
        );
        for a in &d.agents {
            let name = format!("{}{}", "  ".repeat(a.depth as usize), a.name);
            let t = &a.subtree;
            let _ = writeln!(
                out,
                "  {:<width$} {:>5} {:>5} {:>9} {:>9} {:>10.6} {:>6}   {} {} {} {:.6}",
                name,
                a.llm_calls,
                a.tool_calls,
                a.input_tokens,
                a.output_tokens,
                a.cost_usd,
                a.errors,
                t.llm_calls,
                t.tool_calls,
                t.input_tokens + t.output_tokens,
                t.cost_usd
            );
        }
    }
    let (cached, written, reasoning) = d.agents.iter().fold((0u64, 0u64, 0u64), |(c, w, r), a| {
        (c + a.cached_input_tokens, w + a.cache_write_input_tokens, r + a.reasoning_tokens)
    });
    if cached + written + reasoning > 0 {
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!(
                "of these tokens: {cached} cached input and {written} written to the cache (inside in tok), \
                 {reasoning} reasoning (inside out tok)"
            ))
        );
    }
    if !d.cached_input_at_input_price.is_empty() {
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!(
                "cached input priced as input (no cached-input price): {}",
                d.cached_input_at_input_price.join(", ")
            ))
        );
    }
    if !d.unpriced_models.is_empty() {
        let _ = writeln!(out, "  {}", p.dim(&format!("no price for: {}", d.unpriced_models.join(", "))));
    }
    out
}

fn request(out: &mut String, r: &Request, options: &TextOptions, p: &Paint) {
    let joined = if r.original_traces.len() > 1 {
        format!(" · joined from {} traces", r.original_traces.len())
    } else {
        String::new()
    };
    let session = r.session.as_deref().map(|s| format!(" · session {s}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "{} {} · `{}` ({}){session} · {:.1} ms{joined}",
        p.bold("request"),
        r.trace_id,
        r.name,
        r.service,
        r.duration_ms
    );
    let total = r.duration_ms.max(1e-9);
    // For each depth, whether a later sibling follows (draws the `│` rails).
    let mut rails: Vec<bool> = Vec::new();
    for (k, s) in r.spans.iter().enumerate().take(options.max_spans) {
        let depth = s.depth as usize;
        rails.truncate(depth);
        let last = is_last_sibling(&r.spans, k);
        let mut prefix = String::new();
        for d in 1..depth {
            prefix.push_str(if rails.get(d).copied().unwrap_or(false) { "│ " } else { "  " });
        }
        if depth > 0 {
            prefix.push_str(if last { "└ " } else { "├ " });
        }
        while rails.len() <= depth {
            rails.push(false);
        }
        rails[depth] = !last;
        let bar = bar(s, total);
        let mut label = format!("{}{} · {}", prefix, s.name, s.service);
        if s.agent != s.service {
            label.push_str(&format!(" [{}]", s.agent));
        }
        let mut line = format!(
            "  {:>10.1} {:>10.1}  {}  ",
            s.offset_ms,
            s.duration_ms,
            if s.critical { bar.clone() } else { p.dim(&bar) }
        );
        if s.synthetic {
            line.push_str(&p.dim(&format!("{label} (synthetic)")));
        } else if s.error {
            line.push_str(&p.red(&format!("{label} ✗")));
        } else {
            line.push_str(&label);
        }
        if let Some(e) = s.repaired {
            line.push_str(&p.yellow(&format!(" ⟵ joined by {}", e.as_str())));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if r.spans.len() > options.max_spans {
        let _ = writeln!(out, "  … {} more spans", r.spans.len() - options.max_spans);
    }
}

fn is_last_sibling(spans: &[TreeSpan], k: usize) -> bool {
    let depth = spans[k].depth;
    for s in &spans[k + 1..] {
        if s.depth < depth {
            return true;
        }
        if s.depth == depth {
            return false;
        }
    }
    true
}

fn bar(s: &TreeSpan, total: f64) -> String {
    let from = ((s.offset_ms.max(0.0) / total) * BAR as f64).floor() as usize;
    let to = (((s.offset_ms.max(0.0) + s.duration_ms) / total) * BAR as f64).ceil() as usize;
    let from = from.min(BAR - 1);
    let to = to.clamp(from + 1, BAR);
    let mut b = String::with_capacity(BAR * 3);
    for i in 0..BAR {
        b.push(if i >= from && i < to { '█' } else { '·' });
    }
    b
}
