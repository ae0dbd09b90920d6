//! Claim: `agentrace demo --propagation off` (the default) gives the article's orphans at the
//! queue, the MCP call and the thread pool; the doctor, reading the real collector, reports each
//! one at its hop, repairs the two whose spans left evidence (the job id on both ends of the
//! queue, the model's tool call id on both ends of the MCP call), reports but does not apply a
//! timing-only guess for the thread pool, and still blames the tool for the malformed JSON.

use std::ffi::OsStr;

use crate::support;

use support::demo;

#[test]
fn orphans_are_found_at_each_hop_and_repaired_where_evidence_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([OsStr::new("--data-dir"), dir.path().as_os_str()]);
    let prefix = demo::prefix("off");
    // No --propagation: off is the default, the case the demo is for.
    demo::run(&server, &prefix, &["--requests", "2"]);

    let session = format!("{prefix}-1");
    let diagnosis = demo::doctor(&server, &session);
    let findings = &diagnosis["findings"];

    // The queue hop: each consumer started a new trace, joined to its producer by the job id.
    let queue = demo::findings(&diagnosis, "orphan_root");
    let mut consumers: Vec<&str> = queue.iter().map(|f| f["name"].as_str().unwrap()).collect();
    consumers.sort_unstable();
    assert_eq!(
        consumers,
        ["process agentrace.demo.jobs.budgeter", "process agentrace.demo.jobs.researcher"],
        "{findings:#}"
    );
    for f in &queue {
        assert_eq!(f["evidence"], "messaging.message.id", "{f}");
        let repair = demo::repair_of(&diagnosis, f["span_id"].as_str().unwrap());
        assert_eq!(repair["applied"], true, "{repair}");
        assert_eq!(repair["evidence"], "messaging.message.id");
    }

    // The MCP hop: the server's spans are roots, joined to the caller by the tool call id.
    let tools = demo::findings(&diagnosis, "tool_root");
    let mut calls: Vec<&str> = tools.iter().map(|f| f["name"].as_str().unwrap()).collect();
    calls.sort_unstable();
    assert_eq!(calls, ["tools/call estimate_budget", "tools/call search_hotels"], "{findings:#}");
    for f in &tools {
        assert_eq!(f["service"], "demo-tools");
        let repair = demo::repair_of(&diagnosis, f["span_id"].as_str().unwrap());
        assert_eq!(repair["applied"], true, "{repair}");
        assert_eq!(repair["evidence"], "gen_ai.tool.call.id");
    }

    // The thread pool: reported, with only timing to go on, so not repaired.
    let lost = demo::findings(&diagnosis, "lost_context");
    assert_eq!(lost.len(), 2, "{findings:#}");
    for f in &lost {
        assert_eq!(f["name"], "retrieval travel-guide");
        let repair = demo::repair_of(&diagnosis, f["span_id"].as_str().unwrap());
        assert_eq!(repair["applied"], false, "{repair}");
        assert_eq!(repair["evidence"], "heuristic.same_instance");
        assert!(repair["confidence"].as_f64().unwrap() < 0.8, "{repair}");
    }

    // The request is one again, from five trace IDs, and says how it was joined.
    let split = demo::findings(&diagnosis, "trace_discontinuity");
    assert_eq!(split.len(), 1, "{findings:#}");
    let message = split[0]["message"].as_str().unwrap();
    assert!(message.contains("messaging.message.id") && message.contains("gen_ai.tool.call.id"), "{message}");
    assert!(demo::findings(&diagnosis, "missing_parent").is_empty(), "{findings:#}");

    // What went wrong: the tool, found through the repaired MCP hop.
    let failure = &diagnosis["failure"];
    assert_eq!(failure["category"], "tool", "{failure:#}");
    assert_eq!(failure["service"], "demo-tools", "{failure:#}");
    assert_eq!(failure["name"], "execute_tool search_hotels", "{failure:#}");
    assert!(failure["message"].as_str().unwrap().contains("malformed JSON"), "{failure:#}");

    // Request 2: the slow queue shows once the consumer is joined to its producer.
    let diagnosis = demo::doctor(&server, &format!("{prefix}-2"));
    let gaps = demo::findings(&diagnosis, "timing_gap");
    assert!(gaps.iter().any(|g| g["name"] == "process agentrace.demo.jobs.budgeter"), "{:#}", diagnosis["findings"]);
    assert!(diagnosis["failure"].is_null(), "{:#}", diagnosis["failure"]);
}
