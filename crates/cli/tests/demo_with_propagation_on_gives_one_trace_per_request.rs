//! Claim: `agentrace demo --propagation on` gives one connected trace per request, across the
//! job table, the MCP stdio subprocess and the thread pool, and the doctor finds no broken hop;
//! what it does find are the demo's faults: the tool that answered malformed JSON (blamed, not
//! the parser), the slow queue, and the rate-limited model call.
//!
//! The real binary serves on ephemeral ports; the real `agentrace demo` exports to it over
//! OTLP/HTTP; the test reads the spans back from the session API and asks `agentrace doctor`.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use crate::support;

use support::demo;

#[test]
fn every_request_is_one_trace_and_only_the_faults_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([OsStr::new("--data-dir"), dir.path().as_os_str()]);
    let prefix = demo::prefix("on");
    let out = demo::run(&server, &prefix, &["--propagation", "on", "--requests", "3"]);
    assert!(out.contains(&format!("agentrace doctor --server {} --session {prefix}-1", server.api)), "{out}");

    for n in 1..=3 {
        let session = format!("{prefix}-{n}");
        let spans = demo::settled_spans(&server, &session);
        let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
        assert_eq!(traces.len(), 1, "{session}: {} spans over traces {traces:?}", spans.len());
        let roots: Vec<&str> = spans.iter().filter(|s| s.parent_span_id.is_empty()).map(|s| s.name.as_str()).collect();
        assert_eq!(roots, ["invoke_agent planner"], "{session}");
        let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(services, BTreeSet::from(["budgeter", "demo-tools", "planner", "researcher"]), "{session}");
        // Every hop is there, inside the one trace: the queue, the MCP server (its start-up, its
        // handshake and the call), and the retrieval that ran on the thread pool.
        for name in [
            "process agentrace.demo.jobs.researcher",
            "demo-tools start",
            "initialize",
            "tools/call search_hotels",
            "retrieval travel-guide",
        ] {
            assert!(spans.iter().any(|s| s.name == name), "{session}: no span {name}");
        }

        let diagnosis = demo::doctor(&server, &session);
        for kind in demo::PROPAGATION_KINDS {
            assert!(
                demo::findings(&diagnosis, kind).is_empty(),
                "{session}: unexpected {kind}: {:#}",
                diagnosis["findings"]
            );
        }
        assert_eq!(diagnosis["repairs"].as_array().map(Vec::len), Some(0), "{session}");
        assert_eq!(diagnosis["summary"]["traces"], 1);
        let planner = diagnosis["agents"].as_array().unwrap().iter().find(|a| a["name"] == "planner").unwrap();
        assert!(planner["input_tokens"].as_i64().unwrap() > 0 && planner["cost_usd"].as_f64().unwrap() > 0.0);

        let failure = &diagnosis["failure"];
        match n {
            1 => {
                // The researcher's parse step failed; the doctor follows it to the tool server.
                assert_eq!(failure["category"], "tool", "{failure:#}");
                assert_eq!(failure["service"], "demo-tools", "{failure:#}");
                assert_eq!(failure["name"], "execute_tool search_hotels", "{failure:#}");
                assert!(failure["summary"].as_str().unwrap().contains("search_hotels"), "{failure:#}");
                assert!(demo::kinds(&diagnosis).is_empty(), "{:#}", diagnosis["findings"]);
            }
            2 => {
                assert!(failure.is_null(), "{failure:#}");
                // The slow queue shows as a gap at the budgeter's consumer (a loaded
                // machine may stretch other spans past the threshold too).
                let gaps = demo::findings(&diagnosis, "timing_gap");
                let queue = gaps.iter().find(|g| g["name"] == "process agentrace.demo.jobs.budgeter");
                let queue = queue.unwrap_or_else(|| panic!("{:#}", diagnosis["findings"]));
                assert!(queue["message"].as_str().unwrap().contains("waited"), "{queue}");
            }
            _ => {
                // The rate-limited call was retried and recovered: a retry with its
                // cost in time, not the request's failure.
                assert!(failure.is_null(), "{failure:#}");
                let retries = diagnosis["retries"].as_array().expect("retries");
                assert_eq!(retries.len(), 1, "{retries:#?}");
                assert_eq!(retries[0]["category"], "llm", "{:#}", retries[0]);
                assert_eq!(retries[0]["error_type"], "rate_limited", "{:#}", retries[0]);
                assert!(demo::kinds(&diagnosis).is_empty(), "{:#}", diagnosis["findings"]);
            }
        }
    }
}
