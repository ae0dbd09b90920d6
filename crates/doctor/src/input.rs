//! What the doctor reads: the bytes of a trace file, in any OTLP form.
//!
//! The road's on-ramp for files. The caller does the I/O (reading a file,
//! stdin, an HTTP body); this module only decides what the bytes are — gzip,
//! one OTLP JSON `ExportTraceServiceRequest`, one per line (the OpenTelemetry
//! Collector file exporter's format), Jaeger api_v3's `{"result": …}`
//! envelope, or OTLP protobuf — and decodes them with the model crate's
//! bounded decoders.

use agentrace_model::Span;
use agentrace_model::otlp::{self, DecodeError, Limits};

/// Why bytes could not be read as spans.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The bytes look like JSON but are not OTLP JSON; the message names the
    /// line for line-per-request files. Fix or re-export the file.
    #[error("line {line}: {source}")]
    JsonLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        source: DecodeError,
    },
    /// The bytes are not JSON and not a valid OTLP protobuf request either.
    #[error("neither OTLP JSON nor OTLP protobuf: {0}")]
    Undecodable(DecodeError),
    /// A gzip stream was corrupt or too large.
    #[error("{0}")]
    Gzip(DecodeError),
}

/// Spans read from bytes, with the count of spans the decoder rejected
/// (invalid IDs and the like), so the caller can warn.
#[derive(Debug, Default)]
pub struct Read {
    /// The spans.
    pub spans: Vec<Span>,
    /// Spans rejected by validation.
    pub rejected: u64,
}

/// Decodes the bytes of one file or body into spans.
pub fn spans_from_bytes(bytes: &[u8], limits: &Limits) -> Result<Read, InputError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let inflated = otlp::gunzip(bytes, limits.max_decompressed_bytes).map_err(InputError::Gzip)?;
        return spans_from_bytes(&inflated, limits);
    }
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        if first.is_none() {
            return Ok(Read::default());
        }
        let decoded = otlp::decode_protobuf(bytes, limits).map_err(InputError::Undecodable)?;
        return Ok(Read { spans: Span::from_request(&decoded.request), rejected: decoded.rejected_spans });
    }
    let mut read = Read::default();
    if let Ok((spans, rejected)) = decode_one(bytes, limits) {
        read.spans = spans;
        read.rejected = rejected;
        return Ok(read);
    }
    for (k, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (spans, rejected) =
            decode_one(line, limits).map_err(|source| InputError::JsonLine { line: k + 1, source })?;
        read.spans.extend(spans);
        read.rejected += rejected;
    }
    Ok(read)
}

/// One JSON document: a request, or Jaeger api_v3's `{"result": request}`.
fn decode_one(bytes: &[u8], limits: &Limits) -> Result<(Vec<Span>, u64), DecodeError> {
    match otlp::decode_json(bytes, limits) {
        Ok(d) if !d.request.resource_spans.is_empty() || !looks_enveloped(bytes) => {
            Ok((Span::from_request(&d.request), d.rejected_spans))
        }
        first => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(mut map)) if map.contains_key("result") => {
                let inner = serde_json::to_vec(&map.remove("result").unwrap_or_default())?;
                let d = otlp::decode_json(&inner, limits)?;
                Ok((Span::from_request(&d.request), d.rejected_spans))
            }
            _ => first.map(|d| (Span::from_request(&d.request), d.rejected_spans)),
        },
    }
}

fn looks_enveloped(bytes: &[u8]) -> bool {
    bytes.windows(8).take(4096).any(|w| w == b"\"result\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"a"}]}]}]}"#;

    #[test]
    fn whole_file_lines_envelope_and_protobuf_are_all_read() {
        let limits = Limits::default();
        assert_eq!(spans_from_bytes(ONE.as_bytes(), &limits).unwrap().spans.len(), 1);
        let lines = format!("{ONE}\n\n{}\n", ONE.replace("00f067aa0ba902b7", "00f067aa0ba902b8"));
        assert_eq!(spans_from_bytes(lines.as_bytes(), &limits).unwrap().spans.len(), 2);
        let envelope = format!(r#"{{"result": {ONE}}}"#);
        assert_eq!(spans_from_bytes(envelope.as_bytes(), &limits).unwrap().spans.len(), 1);
        let request = otlp::decode_json(ONE.as_bytes(), &limits).unwrap().request;
        let proto = prost::Message::encode_to_vec(&request);
        assert_eq!(spans_from_bytes(&proto, &limits).unwrap().spans.len(), 1);
        assert!(spans_from_bytes(b"  \n", &limits).unwrap().spans.is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = format!("{ONE}\n{{\"resourceSpans\": 7}}\n");
        let err = spans_from_bytes(text.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("line 2: malformed OTLP JSON"), "{err}");
        assert!(matches!(spans_from_bytes(b"\x08\x96", &Limits::default()), Err(InputError::Undecodable(_))));
    }
}
