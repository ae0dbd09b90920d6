//! Property tests for the W3C parsers, beside the cargo-fuzz targets: arbitrary text never
//! panics and never yields an out-of-limit result; generated valid values round-trip exactly.

use agentrace::w3c::{baggage, traceparent, tracestate};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_text_is_handled(s in "\\PC{0,300}", lines in proptest::collection::vec("[ -~\\t]{0,80}", 0..6)) {
        let _ = traceparent::parse(&s);
        if let Ok(m) = tracestate::parse(lines.iter().map(String::as_str)) {
            prop_assert!(m.len() <= tracestate::MAX_MEMBERS);
        }
        let b = baggage::parse(lines.iter().map(String::as_str));
        prop_assert!(b.len() <= baggage::MAX_MEMBERS);
    }

    #[test]
    fn traceparent_round_trips(trace in 1u128.., span in 1u64.., sampled in any::<bool>()) {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let sc = SpanContext::new(TraceId::from(trace), SpanId::from(span), flags, true, TraceState::NONE);
        let text = traceparent::format(&sc).unwrap();
        let back = traceparent::parse(&text).unwrap();
        prop_assert_eq!((back.trace_id, back.parent_id, back.flags), (sc.trace_id(), sc.span_id(), flags));
    }

    #[test]
    fn tracestate_round_trips(members in proptest::collection::btree_map("[a-z][a-z0-9_*/@-]{0,20}", "[!-+\\--<>-~][ !-+\\--<>-~]{0,19}", 1..32)) {
        // Values must not end in a space: trim any the generator produced.
        let members: Vec<(String, String)> = members.into_iter().map(|(k, v)| (k, v.trim_end().to_owned())).filter(|(_, v)| !v.is_empty()).collect();
        let header = tracestate::format(members.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let parsed = tracestate::parse([header.as_str()]).unwrap();
        let expected: Vec<(&str, &str)> = members.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn baggage_values_of_any_unicode_round_trip(entries in proptest::collection::btree_map("[A-Za-z0-9!#$&'*+.^_`|~-]{1,16}", "\\PC{0,40}", 0..20)) {
        let header = baggage::format(entries.iter().map(|(k, v)| (k.as_str(), v.as_str(), "")));
        let parsed = baggage::parse([header.as_str()]);
        prop_assert_eq!(parsed.len(), entries.len());
        for (m, (k, v)) in parsed.iter().zip(&entries) {
            prop_assert_eq!(m.key, k.as_str());
            prop_assert_eq!(m.value.as_ref(), v.as_str());
        }
    }
}
