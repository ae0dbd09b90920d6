//! Claim: with `--queue nats://…` or `--queue redis://…` the demo's hand-off goes through a real
//! broker, carrying the SDK's envelope: with propagation on, each request is still one trace;
//! with the queue hop broken, the consumers are joined to their producers by the job id.
//!
//! Needs the brokers of `scripts/services.sh start`, found through `AGENTRACE_NATS_URL` and
//! `AGENTRACE_REDIS_URL` (`scripts/services.sh env`), which `scripts/test.sh` starts and exports;
//! without them the test fails, it does not skip.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use crate::support;

use support::demo;

fn over(queue: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([OsStr::new("--data-dir"), dir.path().as_os_str()]);

    let on = demo::prefix(&format!("{tag}-on"));
    demo::run(&server, &on, &["--queue", queue, "--propagation", "on", "--requests", "1"]);
    let spans = demo::settled_spans(&server, &format!("{on}-1"));
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "{queue}: {traces:?}");

    let broken = demo::prefix(&format!("{tag}-queue"));
    demo::run(
        &server,
        &broken,
        &["--queue", queue, "--propagation", "partial", "--broken-hop", "queue", "--requests", "1"],
    );
    let diagnosis = demo::doctor(&server, &format!("{broken}-1"));
    let orphans = demo::findings(&diagnosis, "orphan_root");
    assert_eq!(orphans.len(), 2, "{queue}: {:#}", diagnosis["findings"]);
    for f in orphans {
        let repair = demo::repair_of(&diagnosis, f["span_id"].as_str().unwrap());
        assert_eq!(repair["evidence"], "messaging.message.id", "{queue}: {repair}");
        assert_eq!(repair["applied"], true, "{queue}: {repair}");
    }
}

fn broker_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh start && eval \"$(scripts/services.sh env)\"` first")
    })
}

#[test]
fn over_nats() {
    over(&broker_url("AGENTRACE_NATS_URL"), "nats");
}

#[test]
fn over_redis() {
    over(&broker_url("AGENTRACE_REDIS_URL"), "redis");
}
