//! Claim: with `--queue nats://…` or `--queue redis://…` the demo's hand-off goes through a real
//! broker, carrying the SDK's envelope: with propagation on, each request is still one trace;
//! with the queue hop broken, the consumers are joined to their producers by the job id.
//!
//! Needs the brokers of `scripts/services.sh start` (NATS on 14222, Redis on 16379), which
//! `scripts/test.sh` starts; without them the test fails, it does not skip.

use std::collections::BTreeSet;
use std::ffi::OsStr;

mod support;

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

#[test]
fn over_nats() {
    over("nats://127.0.0.1:14222", "nats");
}

#[test]
fn over_redis() {
    over("redis://127.0.0.1:16379", "redis");
}
