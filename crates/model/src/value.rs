//! Attribute values: OTLP's `AnyValue`, owned and easy to match on; and
//! attribute keys, shared between the spans that repeat them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One attribute value, with every type OTLP can carry.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A UTF-8 string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Double(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A homogeneous or heterogeneous array.
    Array(Vec<Value>),
    /// A nested map (OTLP `kvlistValue`), in the order it arrived.
    Map(Vec<(String, Value)>),
    /// An `AnyValue` with no value set (OTLP allows it).
    Empty,
}

impl Value {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer: integers as they are, doubles when whole,
    /// strings that parse (some instrumentations send counts as text).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Double(d) if d.fract() == 0.0 && d.is_finite() => Some(*d as i64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a float, accepting integers and numeric strings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a boolean: `true`/`false`, or the strings `"true"`/`"false"`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A short human rendering: strings as they are, other scalars in
    /// their usual text form, arrays and maps as JSON-like text.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bytes(b) => crate::ids::to_hex(b),
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(Value::to_text).collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Map(items) => {
                let parts: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {}", v.to_text())).collect();
                format!("{{{}}}", parts.join(", "))
            }
            Value::Empty => String::new(),
        }
    }

    /// Converts from OTLP's `AnyValue`.
    pub fn from_otlp(value: Option<&AnyValue>) -> Value {
        let Some(inner) = value.and_then(|v| v.value.as_ref()) else {
            return Value::Empty;
        };
        match inner {
            any_value::Value::StringValue(s) => Value::Str(s.clone()),
            any_value::Value::BoolValue(b) => Value::Bool(*b),
            any_value::Value::IntValue(i) => Value::Int(*i),
            any_value::Value::DoubleValue(d) => Value::Double(*d),
            any_value::Value::BytesValue(b) => Value::Bytes(b.clone()),
            any_value::Value::ArrayValue(a) => {
                Value::Array(a.values.iter().map(|v| Value::from_otlp(Some(v))).collect())
            }
            any_value::Value::KvlistValue(kv) => {
                Value::Map(kv.values.iter().map(|kv| (kv.key.clone(), Value::from_otlp(kv.value.as_ref()))).collect())
            }
            // String-table indices belong to the profiles signal; a trace
            // span carrying one has no table to resolve it against.
            any_value::Value::StringValueStrindex(_) => Value::Empty,
        }
    }

    /// Converts to OTLP's `AnyValue`.
    pub fn to_otlp(&self) -> AnyValue {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        let value = match self {
            Value::Str(s) => Some(any_value::Value::StringValue(s.clone())),
            Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
            Value::Int(i) => Some(any_value::Value::IntValue(*i)),
            Value::Double(d) => Some(any_value::Value::DoubleValue(*d)),
            Value::Bytes(b) => Some(any_value::Value::BytesValue(b.clone())),
            Value::Array(items) => {
                Some(any_value::Value::ArrayValue(ArrayValue { values: items.iter().map(Value::to_otlp).collect() }))
            }
            Value::Map(items) => Some(any_value::Value::KvlistValue(KeyValueList {
                values: items
                    .iter()
                    .map(|(k, v)| KeyValue { key: k.clone(), value: Some(v.to_otlp()), key_strindex: 0 })
                    .collect(),
            })),
            Value::Empty => None,
        };
        AnyValue { value }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

/// An attribute key.
///
/// Spans repeat the same few dozen keys, so a decoded key is shared with the
/// spans decoded before it on the same thread ([`Key::interned`]) instead of
/// being allocated again for each: decoding allocates less, a decoded span
/// takes less memory (the live pipeline keeps more of them between
/// diagnoses), and a reader of many spans finds their keys in one place.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

/// Most keys one thread shares (the first seen); a sender that varies its
/// keys gets a new allocation per key, as before, and no memory beyond this.
const SHARED_KEYS_MAX: usize = 4096;
/// Longest key shared (a longer one is allocated each time).
const SHARED_KEY_MAX_LEN: usize = 128;

thread_local! {
    static SHARED_KEYS: RefCell<HashSet<Arc<str>, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::with_hasher(foldhash::fast::RandomState::default()));
}

impl Key {
    /// The key `text`, shared with the earlier keys of the same text decoded
    /// on this thread.
    pub fn interned(text: &str) -> Key {
        if text.len() > SHARED_KEY_MAX_LEN {
            return Key(Arc::from(text));
        }
        SHARED_KEYS.with_borrow_mut(|keys| {
            if let Some(k) = keys.get(text) {
                return Key(Arc::clone(k));
            }
            let k: Arc<str> = Arc::from(text);
            if keys.len() < SHARED_KEYS_MAX {
                keys.insert(Arc::clone(&k));
            }
            Key(k)
        })
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether other keys share this one's text (an interned key, or a
    /// copied span's): its memory is not this key's alone.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Key {
        Key(Arc::from(text))
    }
}

impl From<String> for Key {
    fn from(text: String) -> Key {
        Key(Arc::from(text))
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

/// An ordered list of attributes. Lookups are linear: spans carry tens of
/// attributes, where a scan beats hashing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(pub Vec<(Key, Value)>);

impl Attributes {
    /// The value of `key`, if present (the first one, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of `key`, if present and a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The first of `keys` that is present, as a string; non-string scalars
    /// are rendered as text so that IDs sent as integers still match.
    pub fn first_text(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match self.get(k)? {
            Value::Empty | Value::Array(_) | Value::Map(_) => None,
            v => Some(v.to_text()),
        })
    }

    /// The first of `keys` that is present and numeric, as an integer.
    pub fn first_i64(&self, keys: &[&str]) -> Option<i64> {
        keys.iter().find_map(|k| self.get(k)?.as_i64())
    }

    /// Sets `key`, replacing an existing value.
    pub fn set(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the attributes in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Converts from OTLP key-values (their keys shared, see [`Key`]).
    pub fn from_otlp(kvs: &[KeyValue]) -> Attributes {
        Attributes(kvs.iter().map(|kv| (Key::interned(&kv.key), Value::from_otlp(kv.value.as_ref()))).collect())
    }

    /// Converts to OTLP key-values.
    pub fn to_otlp(&self) -> Vec<KeyValue> {
        self.0
            .iter()
            .map(|(k, v)| KeyValue { key: k.as_str().to_owned(), value: Some(v.to_otlp()), key_strindex: 0 })
            .collect()
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Attributes(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
            key_strindex: 0,
        }
    }

    #[test]
    fn decoded_keys_are_shared_between_spans_and_read_as_text() {
        let a = Attributes::from_otlp(&[kv("gen_ai.operation.name", "chat"), kv("session.id", "s-1")]);
        let b = Attributes::from_otlp(&[kv("session.id", "s-2")]);
        // One allocation for the key of both spans.
        assert!(Arc::ptr_eq(&a.0[1].0.0, &b.0[0].0.0));
        assert!(b.0[0].0.is_shared());
        assert_eq!(a.str("session.id"), Some("s-1"));
        assert_eq!(b.get("session.id"), Some(&Value::Str("s-2".into())));
        assert_eq!(a.0[0].0, "gen_ai.operation.name");
        assert_eq!(a.to_otlp(), vec![kv("gen_ai.operation.name", "chat"), kv("session.id", "s-1")]);
    }

    #[test]
    fn keys_past_the_bounds_are_their_own() {
        // A key longer than the bound is never kept for sharing.
        let long = "k".repeat(SHARED_KEY_MAX_LEN + 1);
        let (x, y) = (Key::interned(&long), Key::interned(&long));
        assert!(!Arc::ptr_eq(&x.0, &y.0));
        assert!(!x.is_shared());
        assert_eq!(x, y);
        // A sender that varies its keys fills the table once, then gets
        // keys of its own: the table does not grow past its bound.
        std::thread::spawn(|| {
            for i in 0..SHARED_KEYS_MAX + 100 {
                Key::interned(&format!("k{i}"));
            }
            assert_eq!(SHARED_KEYS.with_borrow(|k| k.len()), SHARED_KEYS_MAX);
            let late = format!("k{}", SHARED_KEYS_MAX + 50);
            assert!(!Key::interned(&late).is_shared());
            assert!(Key::interned("k0").is_shared());
        })
        .join()
        .unwrap();
    }
}
