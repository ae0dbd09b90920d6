//! Parsing Jaeger api_v3 `FindTraces` query parameters.
//!
//! Jaeger names them `query.serviceName`, `query.operationName`,
//! `query.startTimeMin`/`Max` (RFC 3339), `query.durationMin`/`Max`
//! (`1.5s`, `250ms`), `query.searchDepth` (or the snake_case aliases
//! `query.service_name`, … that jaeger-query also takes), and attributes either as
//! `query.attributes[key]=value` or `query.attributes={"key":"value"}`.
//! An attribute on an indexed session or join key is searched in the
//! store's index (under every name the key goes by); any other attribute is
//! matched on the spans themselves, as Jaeger's own storage matches them
//! (see `jaeger::search_with_tags`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ApiError;
use crate::store::{KeyKind, SearchQuery};

/// An api_v3 search: what the store's index narrows (the indexed keys
/// among the attributes included), and the attributes it has no index for,
/// matched on the spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct Search {
    pub store: SearchQuery,
    pub attributes: Vec<(String, String)>,
}

/// Parses a raw query string into a search.
pub(crate) fn parse(raw: &str, default_depth: usize) -> Result<Search, ApiError> {
    let mut query = SearchQuery { limit: default_depth, ..SearchQuery::default() };
    let mut attributes: Vec<(String, String)> = Vec::new();
    for (key, value) in form_pairs(raw) {
        if value.is_empty() {
            continue;
        }
        // Jaeger UI 2.x writes the camelCase names; the snake_case ones are
        // the older aliases jaeger-query still takes.
        match key.as_str() {
            "query.service_name" | "query.serviceName" => query.service = Some(value),
            "query.operation_name" | "query.operationName" => query.operation = Some(value),
            "query.start_time_min" | "query.startTimeMin" => query.start_min_ns = Some(rfc3339_nanos(&key, &value)?),
            "query.start_time_max" | "query.startTimeMax" => query.start_max_ns = Some(rfc3339_nanos(&key, &value)?),
            "query.duration_min" | "query.durationMin" => query.duration_min_ns = Some(duration_nanos(&key, &value)?),
            "query.duration_max" | "query.durationMax" => query.duration_max_ns = Some(duration_nanos(&key, &value)?),
            "query.search_depth" | "query.searchDepth" | "query.num_traces" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("{key} must be a positive integer, got {value:?}")))?;
                query.limit = n.clamp(1, 10_000);
            }
            "query.attributes" => {
                let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&value).map_err(|e| {
                    ApiError::bad_request(format!("query.attributes must be a JSON object of strings: {e}"))
                })?;
                for (k, v) in map {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    attributes.push((k, text));
                }
            }
            k if k.starts_with("query.attributes[") && k.ends_with(']') => {
                attributes.push((k["query.attributes[".len()..k.len() - 1].to_owned(), value));
            }
            _ => {}
        }
    }
    // Each filter is matched on every candidate's spans, and an indexed one
    // is a join in the store's query (SQLite joins at most 64 tables); a
    // search needs a handful.
    if attributes.len() > MAX_ATTRIBUTE_FILTERS {
        return Err(ApiError::bad_request(format!(
            "{} attribute filters: at most {MAX_ATTRIBUTE_FILTERS} per search",
            attributes.len()
        )));
    }
    // A key of the one vocabulary is searched in the store's index, under
    // every name it goes by (`session.id` finds `langfuse.session.id` too);
    // only the others are matched on the spans.
    let mut on_spans = Vec::new();
    for (k, v) in attributes {
        match KeyKind::searched_by(&k) {
            Some(kind) => query.attributes.push((kind, v)),
            None => on_spans.push((k, v)),
        }
    }
    Ok(Search { store: query, attributes: on_spans })
}

/// Attribute filters one search may combine.
pub(crate) const MAX_ATTRIBUTE_FILTERS: usize = 16;

pub(crate) fn rfc3339_nanos(key: &str, value: &str) -> Result<i64, ApiError> {
    let t: SystemTime = humantime::parse_rfc3339_weak(value)
        .map_err(|e| ApiError::bad_request(format!("{key} must be an RFC 3339 time like 2026-11-24T10:00:00Z: {e}")))?;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

pub(crate) fn duration_nanos(key: &str, value: &str) -> Result<i64, ApiError> {
    let d = humantime::parse_duration(value)
        .map_err(|e| ApiError::bad_request(format!("{key} must be a duration like 250ms or 1.5s: {e}")))?;
    Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The `key=value` pairs of a query string, decoded: every route that
/// reads its raw query (Jaeger's, Tempo's, api_v3's) reads it here.
pub(crate) fn form_pairs(raw: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// A query-string component: `+` is a space, `%XX` a byte.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaeger_parameters_parse() {
        let q = parse(
            "query.service_name=planner&query.start_time_min=2026-11-24T10%3A00%3A00Z&query.duration_min=1.5s\
             &query.search_depth=5&query.attributes%5Bsession.id%5D=s-1",
            20,
        )
        .unwrap();
        assert!(q.attributes.is_empty(), "an indexed key is the index's to match: {:?}", q.attributes);
        let q = q.store;
        assert_eq!(q.service.as_deref(), Some("planner"));
        assert_eq!(q.start_min_ns, Some(1_795_514_400_000_000_000));
        assert_eq!(q.duration_min_ns, Some(1_500_000_000));
        assert_eq!(q.limit, 5);
        assert_eq!(q.attributes, vec![(KeyKind::Session, "s-1".to_owned())]);
        // As Jaeger UI 2.x writes them.
        let q = parse(
            "query.serviceName=planner&query.operationName=chat&query.startTimeMin=2026-11-24T10%3A00%3A00.000Z\
             &query.startTimeMax=2026-11-24T11%3A00%3A00.000Z&query.durationMax=2s&query.searchDepth=7",
            20,
        )
        .unwrap()
        .store;
        assert_eq!((q.service.as_deref(), q.operation.as_deref()), (Some("planner"), Some("chat")));
        assert_eq!(
            (q.start_min_ns, q.start_max_ns),
            (Some(1_795_514_400_000_000_000), Some(1_795_518_000_000_000_000))
        );
        assert_eq!((q.duration_max_ns, q.limit), (Some(2_000_000_000), 7));
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let e = parse("query.start_time_min=yesterday", 20).unwrap_err();
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
        let many: Vec<String> =
            (0..=MAX_ATTRIBUTE_FILTERS).map(|i| format!("query.attributes[session.id]=s-{i}")).collect();
        let e = parse(&many.join("&"), 20).unwrap_err();
        assert!(format!("{e:?}").contains("at most 16 per search"), "{e:?}");
        assert!(parse(&many[..MAX_ATTRIBUTE_FILTERS].join("&"), 20).is_ok());
        // Any attribute may be asked for, as Jaeger UI's Tags field sends it; only indexed keys
        // narrow the store's search, the rest are matched on the spans.
        let q = parse("query.attributes%5Bhttp.method%5D=GET", 20).unwrap();
        assert_eq!(q.attributes, [("http.method".to_owned(), "GET".to_owned())]);
        assert!(q.store.attributes.is_empty());
        assert!(percent_decode("a%2").ends_with("%2"));
    }
}
