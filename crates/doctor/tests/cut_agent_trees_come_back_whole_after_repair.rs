//! Property tests over random agent trees: cut at random hops (keeping the
//! evidence a real system still emits), the doctor puts every piece back
//! where it was; and its answer does not depend on the order spans arrive
//! in, nor on duplicates.

use crate::common;

use agentrace_doctor::{Config, Doctor, FindingKind};
use common::synth;
use proptest::prelude::*;

fn sorted(mut spans: Vec<agentrace_model::Span>) -> Vec<agentrace_model::Span> {
    spans.sort_by_key(|s| (s.trace_id, s.span_id));
    spans
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cut_agent_trees_come_back_whole_after_repair(seed in any::<u64>(), size in 10usize..120, cut in 0u64..=100) {
        let g = synth::session(seed, 7, size, cut, 1_700_000_000_000_000_000);
        let (d, view) = Doctor::new(Config::default()).analyse_with_view(&g.cut);

        let applied = d.repairs.iter().filter(|r| r.applied).count();
        prop_assert_eq!(applied, g.cuts, "one applied repair per cut hop");
        prop_assert!(d.repairs.iter().all(|r| r.applied && r.evidence.is_exact()), "{:?}", d.repairs);

        let mut back: Vec<_> = view.into_iter().filter(|s| !synth::is_synthetic(s)).collect();
        back.iter_mut().for_each(synth::strip_repair_marks);
        let (back, original) = (sorted(back), sorted(g.original.clone()));
        let shape = |v: &[agentrace_model::Span]| -> Vec<String> {
            v.iter().map(|s| format!("{} {} {:?} {}", s.trace_id, s.span_id, s.parent_span_id, s.name)).collect()
        };
        prop_assert_eq!(shape(&back), shape(&original), "same tree");
        prop_assert!(back == original, "and the same spans, attribute for attribute");

        // The uncut system is healthy: nothing found, nothing repaired.
        let healthy = Doctor::new(Config::default()).analyse(&g.original);
        prop_assert!(healthy.findings.is_empty(), "{:#?}", healthy.findings);
        prop_assert!(healthy.repairs.is_empty());
        // Every cut is reported: a break per cut hop, at the callee.
        let breaks = d.findings.iter().filter(|f| matches!(f.kind, FindingKind::OrphanRoot | FindingKind::ToolRoot)).count();
        let linked = d.repairs.iter().filter(|r| r.evidence == agentrace_doctor::Evidence::Link).count();
        prop_assert_eq!(breaks + linked, g.cuts);
    }

    #[test]
    fn the_answer_does_not_depend_on_arrival_order_or_duplicates(seed in any::<u64>(), shuffle in any::<u64>(), size in 10usize..80) {
        let g = synth::session(seed, 3, size, 50, 1_700_000_000_000_000_000);
        let doctor = Doctor::new(Config::default());
        let (first, first_view) = doctor.analyse_with_view(&g.cut);

        let mut rng = synth::Rng::new(shuffle);
        let mut shuffled = g.cut.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let dupes: Vec<_> = shuffled.iter().filter(|_| rng.chance(20)).cloned().collect();
        shuffled.extend(dupes);
        let (second, second_view) = doctor.analyse_with_view(&shuffled);
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap());
        prop_assert_eq!(first_view, second_view);
    }
}
