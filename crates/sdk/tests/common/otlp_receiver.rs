//! A minimal OTLP/HTTP JSON receiver, so a test can see the spans a child process exported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct RemoteSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: HashMap<String, String>,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
}

pub struct OtlpJsonReceiver {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<RemoteSpan>>>,
}

fn value_to_string(v: &Value) -> String {
    for k in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        if let Some(x) = v.get(k) {
            return x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string());
        }
    }
    v.to_string()
}

fn parse(body: &Value, out: &mut Vec<RemoteSpan>) {
    let empty = Vec::new();
    for rs in body["resourceSpans"].as_array().unwrap_or(&empty) {
        for ss in rs["scopeSpans"].as_array().unwrap_or(&empty) {
            for s in ss["spans"].as_array().unwrap_or(&empty) {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                let attributes = s["attributes"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), value_to_string(&kv["value"])))
                    .collect();
                let links = s["links"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(|l| {
                        (
                            l["traceId"].as_str().unwrap_or_default().to_lowercase(),
                            l["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        )
                    })
                    .collect();
                out.push(RemoteSpan {
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                    attributes,
                    links,
                });
            }
        }
    }
}

impl OtlpJsonReceiver {
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<RemoteSpan>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(|State(spans): State<Arc<Mutex<Vec<RemoteSpan>>>>, body: axum::body::Bytes| async move {
                    if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                        parse(&json, &mut spans.lock().unwrap());
                    }
                    "{}"
                }),
            )
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        OtlpJsonReceiver { endpoint, spans }
    }

    /// Waits until a span with this name arrived.
    pub async fn wait_for(&self, name: &str, timeout: Duration) -> RemoteSpan {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans.lock().unwrap().iter().find(|s| s.name == name) {
                return s.clone();
            }
            if Instant::now() > deadline {
                let names: Vec<String> = self.spans.lock().unwrap().iter().map(|s| s.name.clone()).collect();
                panic!("span {name:?} not exported within {timeout:?}; got {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Spans a Python peer wrote as JSON lines (see tests/python/otel_jsonl.py).
pub async fn wait_for_jsonl_span(path: &std::path::Path, name: &str, timeout: Duration) -> RemoteSpan {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["name"] == name {
                return RemoteSpan {
                    name: name.to_owned(),
                    trace_id: v["trace_id"].as_str().unwrap_or_default().to_owned(),
                    span_id: v["span_id"].as_str().unwrap_or_default().to_owned(),
                    parent_span_id: v["parent_span_id"].as_str().unwrap_or_default().to_owned(),
                    attributes: v["attributes"]
                        .as_object()
                        .map(|m| {
                            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
                        })
                        .unwrap_or_default(),
                    links: Vec::new(),
                };
            }
        }
        if Instant::now() > deadline {
            panic!("span {name:?} not in {} within {timeout:?}; file has:\n{text}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
