//! Redaction: what is removed before anything reaches the store or a
//! backend. Second stop on the data's road, right after the receivers.
//!
//! One policy ([`RedactionConfig`]) for every agent in every language:
//!
//! - a span event whose attribute `sensitive` is true (the boolean, or the
//!   string `"true"`) is dropped whole: that is where agents record prompts
//!   and completions;
//! - a content attribute (`gen_ai.input.messages` and the other keys and
//!   patterns of the policy), on a span, an event, a link, a resource or a
//!   scope, is dropped, hashed or kept, as each sink's [`ContentAction`]
//!   says (keys are matched where attributes are listed, not inside map
//!   values);
//! - a secret (API keys, bearer tokens, e-mail addresses, or the policy's
//!   own patterns) is masked as `<redacted:NAME>` in every string value:
//!   span and event names, status messages, attributes at any depth, and
//!   resource and scope attributes.
//!
//! What was removed is counted on the span (`agentrace.redaction.*`) and in
//! `/metrics`. The only way to a [`Redacted`] request is [`Redactor::redact`],
//! and the store and the exporters take nothing else, but for a pass-through's
//! [`CleanBody`], which only [`Redactor::clean`] makes (a body it has searched
//! at the byte level and found nothing to remove from, `clean.rs`):
//! unredacted data cannot reach a disk or a socket by mistake.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use regex::{NoExpand, Regex, RegexSet};
use sha2::{Digest, Sha256};

use crate::config::{ContentAction, RedactionConfig};

mod clean;
pub use clean::CleanBody;

/// Attribute a span gets when sensitive events were dropped from it.
pub const EVENTS_DROPPED: &str = "agentrace.redaction.events_dropped";
/// Attribute a span gets when content attributes were dropped from it.
pub const ATTRIBUTES_DROPPED: &str = "agentrace.redaction.attributes_dropped";
/// Attribute a span gets when content attributes were replaced by a hash.
pub const ATTRIBUTES_HASHED: &str = "agentrace.redaction.attributes_hashed";
/// Attribute a span gets when secrets were masked in its strings.
pub const VALUES_MASKED: &str = "agentrace.redaction.values_masked";

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A content attribute pattern is not a valid regular expression; fix
    /// `redaction.content_attribute_patterns`.
    #[error("redaction.content_attribute_patterns: {0}")]
    ContentPattern(regex::Error),
    /// A secret pattern is not a valid regular expression; fix
    /// `redaction.secret_patterns`.
    #[error("redaction.secret_patterns {name:?}: {source}")]
    SecretPattern {
        /// The pattern's name.
        name: String,
        /// The parse error.
        source: regex::Error,
    },
}

/// What one redaction removed, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedactionReport {
    /// Sensitive span events dropped.
    pub events_dropped: u64,
    /// Content attributes dropped.
    pub attributes_dropped: u64,
    /// Content attributes replaced by their hash.
    pub attributes_hashed: u64,
    /// String values in which a secret was masked.
    pub values_masked: u64,
}

/// An export request after redaction: the only form the store and the
/// exporters accept.
#[derive(Debug, Clone)]
pub struct Redacted {
    request: ExportTraceServiceRequest,
    report: RedactionReport,
    action: ContentAction,
}

impl Redacted {
    /// The redacted request.
    pub fn request(&self) -> &ExportTraceServiceRequest {
        &self.request
    }

    /// What was removed.
    pub fn report(&self) -> RedactionReport {
        self.report
    }

    /// What happened to content attributes.
    pub fn content_action(&self) -> ContentAction {
        self.action
    }

    /// The redacted request, for a sink that consumes it.
    pub fn into_request(self) -> ExportTraceServiceRequest {
        self.request
    }
}

/// A compiled redaction policy; cheap to share between tasks.
#[derive(Debug)]
pub struct Redactor {
    /// A handful of keys: comparing them (lengths first) beats hashing
    /// every attribute key of every span.
    content_keys: Vec<String>,
    content_patterns: Option<RegexSet>,
    /// Every secret pattern at once: almost every string matches none, and
    /// one scan tells.
    any_secret: Option<Regex>,
    secrets: Vec<(String, Regex)>,
    salt: Vec<u8>,
    /// Names this policy in each thread's [`CLEAN_KEYS`].
    id: u64,
}

/// Attribute keys one redactor found no secret in, on this thread.
///
/// Every span repeats the same few dozen keys, and searching them was half
/// of the secret search (keys are searched since a key can be a header
/// line): a key seen clean is looked up instead. Only keys are kept, never
/// values (IDs would fill it with strings seen once), and at most
/// [`CLEAN_KEYS_MAX`] of them, the first seen: a sender that varies its keys
/// costs a lookup per key and no memory beyond that.
struct CleanKeys {
    redactor: u64,
    /// As bytes, so that the pass-through's fast lane looks a key up before
    /// it has checked it is UTF-8 (a key found here is).
    keys: HashSet<Box<[u8]>, foldhash::fast::RandomState>,
}

/// Most keys one thread remembers as clean.
const CLEAN_KEYS_MAX: usize = 4096;
/// Longest key remembered (a longer one is searched every time).
const CLEAN_KEY_MAX_LEN: usize = 128;

thread_local! {
    static CLEAN_KEYS: RefCell<CleanKeys> =
        RefCell::new(CleanKeys { redactor: 0, keys: HashSet::with_hasher(foldhash::fast::RandomState::default()) });
}

/// Redactor IDs, from 1 (0 is no redactor).
static NEXT_REDACTOR: AtomicU64 = AtomicU64::new(1);

impl Redactor {
    /// Compiles a policy.
    pub fn new(config: &RedactionConfig) -> Result<Redactor, PolicyError> {
        let content_patterns = if config.content_attribute_patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&config.content_attribute_patterns).map_err(PolicyError::ContentPattern)?)
        };
        let mut secrets = Vec::with_capacity(config.secret_patterns.len());
        for p in &config.secret_patterns {
            let re =
                Regex::new(&p.pattern).map_err(|source| PolicyError::SecretPattern { name: p.name.clone(), source })?;
            secrets.push((p.name.clone(), re));
        }
        let any_secret = if secrets.is_empty() {
            None
        } else {
            let joined: Vec<String> = secrets.iter().map(|(_, re)| format!("(?:{})", re.as_str())).collect();
            Some(
                Regex::new(&joined.join("|"))
                    .map_err(|source| PolicyError::SecretPattern { name: "(all patterns together)".into(), source })?,
            )
        };
        Ok(Redactor {
            content_keys: config.content_attributes.clone(),
            content_patterns,
            any_secret,
            secrets,
            salt: config.hash_salt.clone().unwrap_or_default().into_bytes(),
            id: NEXT_REDACTOR.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Redacts a request for a sink whose content action is `action`.
    pub fn redact(&self, mut request: ExportTraceServiceRequest, action: ContentAction) -> Redacted {
        let mut total = RedactionReport::default();
        for rs in &mut request.resource_spans {
            // Resource and scope attributes follow the same policy; what
            // they lose counts in the totals (they belong to no one span).
            // Every other field that can carry text is masked too: names,
            // versions, schema URLs, trace states.
            total.values_masked += u64::from(self.mask(&mut rs.schema_url));
            if let Some(resource) = &mut rs.resource {
                self.content(&mut resource.attributes, action, &mut total);
            }
            for ss in &mut rs.scope_spans {
                total.values_masked += u64::from(self.mask(&mut ss.schema_url));
                if let Some(scope) = &mut ss.scope {
                    total.values_masked += u64::from(self.mask(&mut scope.name));
                    total.values_masked += u64::from(self.mask(&mut scope.version));
                    self.content(&mut scope.attributes, action, &mut total);
                }
                for span in &mut ss.spans {
                    let mut counts = RedactionReport::default();
                    let before = span.events.len();
                    span.events.retain(|e| !is_sensitive(&e.attributes));
                    counts.events_dropped = (before - span.events.len()) as u64;
                    counts.values_masked += u64::from(self.mask(&mut span.name));
                    counts.values_masked += u64::from(self.mask(&mut span.trace_state));
                    if let Some(status) = &mut span.status {
                        counts.values_masked += u64::from(self.mask(&mut status.message));
                    }
                    self.content(&mut span.attributes, action, &mut counts);
                    for event in &mut span.events {
                        counts.values_masked += u64::from(self.mask(&mut event.name));
                        self.content(&mut event.attributes, action, &mut counts);
                    }
                    for link in &mut span.links {
                        counts.values_masked += u64::from(self.mask(&mut link.trace_state));
                        self.content(&mut link.attributes, action, &mut counts);
                    }
                    for (key, n) in [
                        (EVENTS_DROPPED, counts.events_dropped),
                        (ATTRIBUTES_DROPPED, counts.attributes_dropped),
                        (ATTRIBUTES_HASHED, counts.attributes_hashed),
                        (VALUES_MASKED, counts.values_masked),
                    ] {
                        if n > 0 {
                            span.attributes.retain(|kv| kv.key != key);
                            span.attributes.push(int_attribute(key, n));
                        }
                    }
                    total.events_dropped += counts.events_dropped;
                    total.attributes_dropped += counts.attributes_dropped;
                    total.attributes_hashed += counts.attributes_hashed;
                    total.values_masked += counts.values_masked;
                }
            }
        }
        Redacted { request, report: total, action }
    }

    /// Whether `key` names a content attribute.
    pub fn is_content(&self, key: &str) -> bool {
        self.content_keys.iter().any(|k| k.len() == key.len() && k == key)
            || self.content_patterns.as_ref().is_some_and(|p| p.is_match(key))
    }

    /// [`Self::is_content`] for a key's bytes (not content when they are
    /// not UTF-8: the decoder refuses such a key before redaction).
    fn is_content_bytes(&self, key: &[u8]) -> bool {
        self.content_keys.iter().any(|k| k.as_bytes() == key)
            || self.content_patterns.as_ref().is_some_and(|p| std::str::from_utf8(key).is_ok_and(|k| p.is_match(k)))
    }

    /// Applies the content action to a list of attributes and masks secrets
    /// in what is left.
    fn content(&self, attributes: &mut Vec<KeyValue>, action: ContentAction, counts: &mut RedactionReport) {
        match action {
            ContentAction::Drop => {
                let before = attributes.len();
                attributes.retain(|kv| !self.is_content(&kv.key));
                counts.attributes_dropped += (before - attributes.len()) as u64;
            }
            ContentAction::Hash => {
                for kv in attributes.iter_mut() {
                    if self.is_content(&kv.key) {
                        kv.value = Some(string_value(self.hash(kv.value.as_ref())));
                        counts.attributes_hashed += 1;
                    }
                }
            }
            ContentAction::Keep => {}
        }
        counts.values_masked += self.mask_attributes(attributes);
    }

    fn hash(&self, value: Option<&AnyValue>) -> String {
        let mut hasher = Sha256::new();
        hasher.update(&self.salt);
        match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => hasher.update(s.as_bytes()),
            Some(_) => hasher.update(value.map(|v| v.encode_to_vec()).unwrap_or_default()),
            None => {}
        }
        let digest = hasher.finalize();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for b in digest {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        out
    }

    fn mask_attributes(&self, attributes: &mut [KeyValue]) -> u64 {
        if self.any_secret.is_none() {
            return 0;
        }
        attributes.iter_mut().map(|kv| self.mask_key_value(kv, 0)).sum()
    }

    /// A key can carry a secret as well as its value (`Authorization: Bearer …` as a key).
    fn mask_key_value(&self, kv: &mut KeyValue, depth: usize) -> u64 {
        u64::from(self.mask_key(&mut kv.key)) + kv.value.as_mut().map_or(0, |v| self.mask_value(v, depth))
    }

    /// [`Self::mask`] for an attribute key, remembering clean ones.
    fn mask_key(&self, key: &mut String) -> bool {
        self.key_has_secret(key) && self.mask(key)
    }

    /// Whether an attribute key holds a secret, looked up first among the
    /// keys this thread found clean ([`CLEAN_KEYS`]).
    fn key_has_secret(&self, key: &str) -> bool {
        if self.key_known_clean(key.as_bytes()) {
            return false;
        }
        let secret = self.has_secret(key);
        if !secret && key.len() <= CLEAN_KEY_MAX_LEN {
            CLEAN_KEYS.with_borrow_mut(|memo| {
                if memo.redactor == self.id && memo.keys.len() < CLEAN_KEYS_MAX {
                    memo.keys.insert(key.as_bytes().into());
                }
            });
        }
        secret
    }

    /// Whether this thread found `key` (an attribute key's bytes) clean
    /// before, under this policy.
    fn key_known_clean(&self, key: &[u8]) -> bool {
        if key.len() > CLEAN_KEY_MAX_LEN {
            return false;
        }
        CLEAN_KEYS.with_borrow_mut(|memo| {
            if memo.redactor != self.id {
                memo.redactor = self.id;
                memo.keys.clear();
            }
            memo.keys.contains(key)
        })
    }

    /// Whether `text` holds a secret [`Self::mask`] would mask.
    fn has_secret(&self, text: &str) -> bool {
        self.any_secret.as_ref().is_some_and(|any| any.is_match(text))
    }

    fn mask_value(&self, value: &mut AnyValue, depth: usize) -> u64 {
        // Decoders bound nesting already; this guard keeps the walk bounded
        // even for a request built in process.
        if depth > 64 {
            return 0;
        }
        match value.value.as_mut() {
            Some(any_value::Value::StringValue(s)) => u64::from(self.mask(s)),
            // Bytes that are text are searched as text; a masked one stays bytes.
            Some(any_value::Value::BytesValue(b)) => match std::str::from_utf8(b) {
                Ok(text) => {
                    let mut text = text.to_owned();
                    let masked = self.mask(&mut text);
                    if masked {
                        *b = text.into_bytes();
                    }
                    u64::from(masked)
                }
                Err(_) => 0,
            },
            Some(any_value::Value::ArrayValue(a)) => a.values.iter_mut().map(|v| self.mask_value(v, depth + 1)).sum(),
            Some(any_value::Value::KvlistValue(l)) => {
                l.values.iter_mut().map(|kv| self.mask_key_value(kv, depth + 1)).sum()
            }
            _ => 0,
        }
    }

    /// Masks every secret in `text`; says whether there was one.
    fn mask(&self, text: &mut String) -> bool {
        if !self.has_secret(text) {
            return false;
        }
        for (name, re) in &self.secrets {
            if re.is_match(text) {
                let masked = re.replace_all(text, NoExpand(&format!("<redacted:{name}>"))).into_owned();
                *text = masked;
            }
        }
        true
    }
}

/// Whether an event is tagged sensitive: `sensitive = true`, or `"true"`.
fn is_sensitive(attributes: &[KeyValue]) -> bool {
    attributes.iter().any(|kv| {
        kv.key == "sensitive"
            && match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::BoolValue(b)) => *b,
                Some(any_value::Value::StringValue(s)) => s.trim().eq_ignore_ascii_case("true"),
                _ => false,
            }
    })
}

fn string_value(s: String) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s)) }
}

fn int_attribute(key: &str, n: u64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(i64::try_from(n).unwrap_or(i64::MAX))) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "clean_tests.rs"]
mod clean_tests;
