//! The pass-through's fast lane (`Redactor::clean`): never a panic, and whatever bytes it calls
//! clean, the ordinary road (prost's decoder, `otlp::validate`, `Redactor::redact` under every
//! content action) accepts whole, with as many spans, and leaves exactly as they are.
#![no_main]
use std::sync::LazyLock;

use agentrace_collector::config::{ContentAction, RedactionConfig};
use agentrace_collector::redact::{RedactionReport, Redactor};
use agentrace_model::otlp::{self, Limits};
use libfuzzer_sys::fuzz_target;
use prost::Message;

static REDACTOR: LazyLock<Redactor> = LazyLock::new(|| Redactor::new(&RedactionConfig::default()).unwrap());

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_attributes: 8, max_value_depth: 4, ..Limits::default() };
    let Some(clean) = REDACTOR.clean(bytes::Bytes::copy_from_slice(data), &limits, true) else { return };
    let decoded = otlp::decode_protobuf(data, &limits).expect("the decoder accepts what is clean");
    assert!(decoded.as_received && decoded.rejected_spans == 0, "validation changes nothing");
    assert_eq!(decoded.accepted_spans, clean.spans());
    let before = decoded.request.encode_to_vec();
    for action in [ContentAction::Drop, ContentAction::Hash, ContentAction::Keep] {
        let out = REDACTOR.redact(decoded.request.clone(), action);
        assert_eq!(out.report(), RedactionReport::default(), "{action:?}");
        assert_eq!(out.request().encode_to_vec(), before, "{action:?}");
    }
});
