//! Claim: `agentrace demo --propagation partial --broken-hop HOP` breaks that hop and no other,
//! and the doctor reports exactly that hop: the queue (orphan consumers, joined by job id), the
//! MCP call (tool roots, joined by tool call id), or the thread pool (`lost_context`, not joined).

use std::collections::BTreeSet;
use std::ffi::OsStr;

use crate::support;

use support::demo;

fn broken_hop_findings(hop: &str) -> (BTreeSet<String>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([OsStr::new("--data-dir"), dir.path().as_os_str()]);
    let prefix = demo::prefix(&format!("partial-{hop}"));
    demo::run(&server, &prefix, &["--propagation", "partial", "--broken-hop", hop, "--requests", "1"]);
    let diagnosis = demo::doctor(&server, &format!("{prefix}-1"));
    (demo::kinds(&diagnosis), diagnosis)
}

fn set(kinds: &[&str]) -> BTreeSet<String> {
    kinds.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn a_broken_queue_shows_only_at_the_queue() {
    let (kinds, diagnosis) = broken_hop_findings("queue");
    assert_eq!(kinds, set(&["orphan_root", "trace_discontinuity"]), "{:#}", diagnosis["findings"]);
    for f in demo::findings(&diagnosis, "orphan_root") {
        assert!(f["name"].as_str().unwrap().starts_with("process agentrace.demo.jobs."), "{f}");
        assert_eq!(f["evidence"], "messaging.message.id");
    }
    assert!(diagnosis["repairs"].as_array().unwrap().iter().all(|r| r["applied"] == true));
}

#[test]
fn a_broken_mcp_call_shows_only_at_the_tool_server() {
    let (kinds, diagnosis) = broken_hop_findings("mcp");
    assert_eq!(kinds, set(&["tool_root", "trace_discontinuity"]), "{:#}", diagnosis["findings"]);
    for f in demo::findings(&diagnosis, "tool_root") {
        assert_eq!(f["service"], "demo-tools", "{f}");
        assert_eq!(f["evidence"], "gen_ai.tool.call.id");
    }
    assert_eq!(diagnosis["failure"]["category"], "tool");
}

#[test]
fn a_broken_thread_pool_shows_only_as_lost_context() {
    let (kinds, diagnosis) = broken_hop_findings("thread-pool");
    assert_eq!(kinds, set(&["lost_context"]), "{:#}", diagnosis["findings"]);
    assert!(diagnosis["repairs"].as_array().unwrap().iter().all(|r| r["applied"] == false));
}
