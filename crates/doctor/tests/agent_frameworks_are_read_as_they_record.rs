//! How the doctor reads agent frameworks as each records itself (OpenAI
//! Agents SDK, pydantic-ai, LangGraph, smolagents, AutoGen, openai-v2):
//! agents and their delegation edges, tokens per agent, the failure, and
//! where the time went when an agent waits for work done across a queue,
//! judged against the truth each corpus case recorded while it ran.
//!
//! Every figure is printed. Asserted for every case: each agent the
//! framework ran is recognised, under its own name, with its delegation
//! edges, its token totals are exact (where the instrumentation records
//! usage at all), the failure's span and category are right, and a span
//! that only waited for another agent's work gives that time to the work.

use crate::common;

use common::corpus;

#[test]
fn agent_frameworks_are_read_as_they_record() {
    check(&corpus::committed_dir(), "committed corpus");
}

#[test]
#[ignore = "needs a fresh recording of the corpus: scripts/test.sh records one and runs this with --ignored"]
fn a_fresh_recording_of_the_frameworks_is_read_as_it_recorded() {
    let dir = std::env::var_os("AGENTRACE_FRESH_CORPUS")
        .expect("AGENTRACE_FRESH_CORPUS names a folder recorded by scripts/corpus.sh");
    check(std::path::Path::new(&dir), "fresh recording");
}

#[allow(clippy::print_stderr)]
fn check(root: &std::path::Path, label: &str) {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for case in corpus::cases(root) {
        let d = corpus::diagnose(&case);
        let name = format!("{}/{}", case.truth.suite, case.truth.case);
        if let Some(problems) = corpus::score_waits(&case, &d) {
            lines.push(format!(
                "{name:<58} time through {} hand-off waits {}",
                case.truth.waits.len(),
                if problems.is_empty() { "right" } else { "wrong" }
            ));
            if !problems.is_empty() {
                lines.push(format!("    {}", problems.join("\n    ")));
                failures.push(name.clone());
            }
        }
        let Some(s) = corpus::score_agents(&case, &d) else { continue };
        lines.push(format!(
            "{name:<58} agents {}/{}  edges {}/{}  tokens exact {}/{}  failure {}",
            s.recognised,
            s.agents,
            s.edges_found,
            s.edges,
            s.tokens_exact,
            s.agents,
            if s.failure_right { "right" } else { "wrong" }
        ));
        if !s.problems.is_empty() {
            lines.push(format!("    {}", s.problems.join("\n    ")));
            failures.push(name);
        }
    }
    eprintln!("{label}:\n{}", lines.join("\n"));
    assert!(!lines.is_empty(), "{label}: no framework case under {}", root.display());
    assert!(failures.is_empty(), "{label}: not read as recorded: {failures:?}\n{}", lines.join("\n"));
}
