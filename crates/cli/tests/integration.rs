//! The `agentrace` command's integration tests, one module per claim, in one test binary (`[[test]]`
//! `integration` in Cargo.toml, with `autotests = false`): each file of this
//! directory was a binary of its own, and compiling the shared helpers into each and linking each
//! against the same dependencies was most of what building them cost.
//! A new file here is a module of this list, or it is never compiled:
//! `every_test_file_is_a_module_of_its_crates_test_binary` (in the CLI's) says so.

mod support;

mod collectors_share_one_postgres;
mod demo_is_repaired_by_the_live_collector_before_export;
#[cfg(feature = "brokers")]
mod demo_over_a_real_broker_joins_the_queue_hop;
mod demo_says_where_its_spans_cannot_go;
mod demo_with_one_broken_hop_reports_only_that_hop;
mod demo_with_propagation_on_gives_one_trace_per_request;
mod demo_without_propagation_is_repaired_and_diagnosed;
mod doctor_reads_from_a_running_collector;
mod kill_9_loses_nothing_acknowledged;
mod serve_demo_fills_the_collector_on_first_run;
mod serve_refuses_an_empty_token_and_warns_when_unguarded;
mod serve_stays_up_under_hostile_senders;

/// Every test file of a crate whose tests are one binary (`autotests = false`)
/// is a module of its `tests/integration.rs`: cargo builds no other.
#[test]
fn every_test_file_is_a_module_of_its_crates_test_binary() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for krate in std::fs::read_dir(&crates).unwrap().map(|e| e.unwrap().path()) {
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap_or_default();
        if !manifest.contains("\nautotests = false\n") {
            continue;
        }
        let declared = std::fs::read_to_string(krate.join("tests/integration.rs")).unwrap();
        for path in std::fs::read_dir(krate.join("tests")).unwrap().map(|e| e.unwrap().path()) {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "rs") && stem != "integration" {
                assert!(
                    declared.contains(&format!("\nmod {stem};")),
                    "{} is not a module of its crate's tests/integration.rs",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    // The collector's, the CLI's and the doctor's.
    assert!(checked >= 40, "only {checked} test files found under {}", crates.display());
}
