//! The tower layer at a public edge: the caller's trace is joined, but its baggage is dropped
//! (or filtered to an allow-list), so a caller cannot plant `user.id=admin` downstream.

use agentrace::carrier::http::{ExtractContextLayer, RemoteContext};
use agentrace::propagation::InboundBaggage;
use axum::Extension;
use axum::routing::get;
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;

async fn whoami(Extension(remote): Extension<RemoteContext>) -> String {
    let cx = Context::current();
    let mut keys: Vec<String> = cx.baggage().iter().map(|(k, (v, _))| format!("{k}={v}")).collect();
    keys.sort();
    // The layer makes the context current and also hands it over explicitly.
    assert_eq!(remote.0.span().span_context().trace_id(), cx.span().span_context().trace_id());
    format!("{:032x} {}", cx.span().span_context().trace_id(), keys.join(","))
}

async fn serve(layer: ExtractContextLayer) -> String {
    let app = axum::Router::new().route("/", get(whoami)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn call(url: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .header("baggage", "user.id=admin,session.id=s-1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn edge_keeps_the_trace_and_drops_or_filters_baggage() {
    let trusting = serve(ExtractContextLayer::new()).await;
    let edge = serve(ExtractContextLayer::new().with_inbound_baggage(InboundBaggage::Drop)).await;
    let gateway = serve(ExtractContextLayer::new().with_inbound_baggage(InboundBaggage::allow(["session.id"]))).await;

    assert_eq!(call(&trusting).await, "0af7651916cd43dd8448eb211c80319c session.id=s-1,user.id=admin");
    assert_eq!(call(&edge).await, "0af7651916cd43dd8448eb211c80319c ");
    assert_eq!(call(&gateway).await, "0af7651916cd43dd8448eb211c80319c session.id=s-1");
}
