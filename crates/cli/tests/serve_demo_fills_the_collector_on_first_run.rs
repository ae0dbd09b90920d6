//! Claim: `agentrace serve --demo` (the README's first command) starts the collector and runs the
//! demo against it, with propagation off and then on, so the first look at the API is never
//! empty: the demo's services are listed, and both runs' sessions are stored.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

#[test]
fn the_demo_services_and_sessions_appear_without_another_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([OsStr::new("--data-dir"), dir.path().as_os_str(), OsStr::new("--demo")]);
    let want = ["budgeter", "demo-tools", "planner", "researcher"];
    let deadline = Instant::now() + Duration::from_secs(60);
    let requests = loop {
        let services: Vec<String> = reqwest::blocking::get(format!("{}/api/v3/services", server.api))
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| serde_json::from_value(v["services"].clone()).ok())
            .unwrap_or_default();
        let search = format!(
            "{}/api/v3/traces?query.service_name=planner&query.start_time_min=2020-01-01T00:00:00Z&query.num_traces=100",
            server.api
        );
        let traces_seen = reqwest::blocking::get(search)
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .map(|v| {
                v["result"]["resourceSpans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
                    .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
                    .filter(|s| s["name"] == "invoke_agent planner")
                    .count()
            })
            .unwrap_or(0);
        // Four requests with propagation off, four with it on: eight planner roots.
        if want.iter().all(|w| services.iter().any(|s| s == w)) && traces_seen >= 8 {
            break traces_seen;
        }
        assert!(Instant::now() < deadline, "after 60 s: services {services:?}, {traces_seen} planner requests");
        std::thread::sleep(Duration::from_millis(300));
    };
    // No more than the two runs' requests: the demo ran once per mode, not in a loop.
    assert_eq!(requests, 8);
}
