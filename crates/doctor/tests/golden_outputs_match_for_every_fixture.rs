//! Every fixture's diagnosis, as JSON and as text, matches its golden file.

use crate::common;

use agentrace_doctor::render::{self, TextOptions};

#[test]
fn golden_outputs_match_for_every_fixture() {
    let names = common::fixture_names();
    assert!(names.len() >= 18, "the corpus is all there: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let diagnosis = common::analyse(name);
        let json = serde_json::to_string_pretty(&diagnosis).expect("serialises") + "\n";
        let text = render::text(&diagnosis, &TextOptions::default());
        for (file, actual) in [(format!("{name}.json"), json), (format!("{name}.txt"), text)] {
            if let Err(e) = common::check_golden(&file, &actual) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_diff_shows_what_changed_with_context() {
    let d = common::diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n");
    assert_eq!(d, "  …\n  b\n  c\n- d\n+ D\n  e\n  f\n  …\n");
}
