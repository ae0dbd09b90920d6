//! Traces a diagnosis was not given, though they ran beside its spans.
//!
//! A live pipeline diagnoses a closing trace with what ran around it, up to
//! a bound (`pipeline.max_context_spans`); past it, neighbours are left out.
//! The file doctor reads them all. What a left-out trace holds is unknown —
//! a rival caller of an orphan, another orphan of the same parent, a run of
//! the same entry point while its instance was idle — so a decision that
//! rests on nothing else fitting is not taken for its absence: a join by
//! time alone that a left-out trace could contest is only suggested, and a
//! root that a left-out trace of its service could show to be an entry
//! point is not reported as broken. Joins by a key both sides carry are
//! unaffected. The doctor's answer is then never surer than with every
//! trace given; it may be less sure, which is what "when unsure, suggest"
//! asks.
//!
//! On the data's road it is handed in by the caller
//! ([`crate::Doctor::analyse_with_totals_beside`]) and read by the repair
//! pass when it weighs a heuristic join or a finding that rests on an
//! absence.

use std::collections::HashSet;
use std::sync::Arc;

/// The traces left out of a diagnosis: when each ran, and in which
/// services.
#[derive(Debug, Clone, Default)]
pub struct LeftOut {
    /// (start, end) of each left-out trace, in the order added.
    intervals: Vec<(u64, u64)>,
    services: HashSet<Arc<str>>,
}

impl LeftOut {
    /// Nothing left out.
    pub fn new() -> LeftOut {
        LeftOut::default()
    }

    /// A trace of `services` that ran from `start` to `end` (Unix
    /// nanoseconds) was left out.
    pub fn add(&mut self, services: &[Arc<str>], start: u64, end: u64) {
        self.intervals.push((start, end.max(start)));
        for s in services {
            if !self.services.contains(s) {
                self.services.insert(Arc::clone(s));
            }
        }
    }

    /// Whether no trace was left out.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// How many traces were left out.
    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// The form the repair pass asks its questions of.
    pub(crate) fn view(&self) -> View<'_> {
        let mut intervals = self.intervals.clone();
        intervals.sort_unstable();
        let mut running = 0;
        let max_end = intervals
            .iter()
            .map(|&(_, e)| {
                running = running.max(e);
                running
            })
            .collect();
        View { intervals, max_end, services: &self.services }
    }
}

/// [`LeftOut`] sorted by start, with the running maximum of ends.
pub(crate) struct View<'a> {
    intervals: Vec<(u64, u64)>,
    max_end: Vec<u64>,
    services: &'a HashSet<Arc<str>>,
}

impl View<'_> {
    /// Whether a left-out trace ran at some time within `from..=to`.
    pub(crate) fn overlaps(&self, from: u64, to: u64) -> bool {
        let upto = self.intervals.partition_point(|&(s, _)| s <= to);
        upto > 0 && self.max_end[upto - 1] >= from
    }

    /// Whether a left-out trace has spans of `service`.
    pub(crate) fn has_service(&self, service: &str) -> bool {
        self.services.contains(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_asks_whether_any_left_out_trace_ran_in_the_window() {
        let mut l = LeftOut::new();
        l.add(&[Arc::from("a")], 100, 200);
        l.add(&[Arc::from("b")], 10, 20);
        let v = l.view();
        assert!(v.overlaps(150, 160));
        assert!(v.overlaps(0, 10));
        assert!(v.overlaps(200, 300));
        assert!(!v.overlaps(21, 99));
        assert!(!v.overlaps(201, 300));
        assert!(v.has_service("a") && v.has_service("b") && !v.has_service("c"));
        assert_eq!(l.len(), 2);
        assert!(LeftOut::new().is_empty());
    }
}
