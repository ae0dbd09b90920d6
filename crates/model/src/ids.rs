//! Trace and span identifiers, as W3C Trace Context and OTLP define them.
//!
//! Both are fixed-size byte arrays; their text form is lowercase hex, the
//! form OTLP JSON, Jaeger's API and the doctor's output all use. An all-zero
//! ID is invalid in both specifications, so the constructors refuse it.

use std::fmt;
use std::str::FromStr;

/// Why bytes or text could not become an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The input had the wrong number of bytes (or hex digits); the caller
    /// should reject the span that carried it.
    #[error("{what} must be {expected} bytes ({} hex digits), got {got} bytes", expected * 2)]
    WrongLength {
        /// `trace id` or `span id`.
        what: &'static str,
        /// Required length in bytes.
        expected: usize,
        /// Length that was given, in bytes (half the hex digits, rounded down).
        got: usize,
    },
    /// Every byte was zero, which W3C and OTLP reserve for "invalid".
    #[error("{what} is all zeros, which W3C Trace Context and OTLP define as invalid")]
    AllZero {
        /// `trace id` or `span id`.
        what: &'static str,
    },
    /// The text held a character that is not a hex digit.
    #[error("{what} is not hex: {text:?}")]
    NotHex {
        /// `trace id` or `span id`.
        what: &'static str,
        /// The offending text, cut to 64 characters.
        text: String,
    },
}

macro_rules! id_type {
    ($name:ident, $len:expr, $what:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes, refusing the all-zero (invalid) value.
            pub fn new(bytes: [u8; $len]) -> Result<Self, IdError> {
                if bytes == [0; $len] {
                    return Err(IdError::AllZero { what: $what });
                }
                Ok(Self(bytes))
            }

            /// Reads an ID from a byte slice as OTLP protobuf carries it.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    what: $what,
                    expected: $len,
                    got: bytes.len(),
                })?;
                Self::new(array)
            }

            /// Parses lowercase or uppercase hex of exactly the right length.
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                if text.len() != $len * 2 {
                    return Err(IdError::WrongLength { what: $what, expected: $len, got: text.len() / 2 });
                }
                let mut out = [0u8; $len];
                for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
                    let hi = hex_digit(pair[0]);
                    let lo = hex_digit(pair[1]);
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                        _ => return Err(IdError::NotHex { what: $what, text: text.chars().take(64).collect() }),
                    }
                }
                Self::new(out)
            }

            /// The raw bytes.
            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// The raw bytes, borrowed.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(TraceId, 16, "trace id", "A 16-byte W3C trace ID, never all zeros.");
id_type!(SpanId, 8, "span id", "An 8-byte W3C span ID, never all zeros.");

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of arbitrary bytes, as OTLP JSON writes IDs.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_in_lowercase() {
        let id = TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(id, id.to_string().parse().unwrap());
    }

    #[test]
    fn all_zero_and_wrong_length_are_refused_with_a_reason() {
        let zero = SpanId::from_hex("0000000000000000").unwrap_err();
        assert!(zero.to_string().contains("all zeros"), "{zero}");
        let short = TraceId::from_slice(&[1; 15]).unwrap_err();
        assert_eq!(short.to_string(), "trace id must be 16 bytes (32 hex digits), got 15 bytes");
        assert!(matches!(SpanId::from_hex("00f067aa0ba902bz"), Err(IdError::NotHex { .. })));
    }
}
