//! Attribute values: OTLP's `AnyValue`, owned and easy to match on.

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

/// An ordered list of attributes. Lookups are linear: spans carry tens of
/// attributes, where a scan beats hashing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(pub Vec<(String, Value)>);

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
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
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

    /// Converts from OTLP key-values.
    pub fn from_otlp(kvs: &[KeyValue]) -> Attributes {
        Attributes(kvs.iter().map(|kv| (kv.key.clone(), Value::from_otlp(kv.value.as_ref()))).collect())
    }

    /// Converts to OTLP key-values.
    pub fn to_otlp(&self) -> Vec<KeyValue> {
        self.0.iter().map(|(k, v)| KeyValue { key: k.clone(), value: Some(v.to_otlp()), key_strindex: 0 }).collect()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Attributes(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}
