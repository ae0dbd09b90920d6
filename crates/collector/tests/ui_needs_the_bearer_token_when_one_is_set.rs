//! Claim: with `auth.bearer_token` set, the UI's data is guarded like every
//! other API route: the page's static shell loads (it holds no span data),
//! every `/api/agentrace/*` call without the token gets 401, and in a real
//! Chromium the page asks for the token, keeps asking while it is wrong,
//! and shows the traces once it is right.

use crate::support;

use std::time::Duration;

use prost::Message;
use serde_json::json;
use support::webdriver::Browser;

const TOKEN: &str = "ui-s3cret";
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn the_ui_shows_data_only_with_the_token() {
    let collector = support::start(|c| c.auth.bearer_token = Some(TOKEN.into()));
    let request = support::doctor_fixture("healthy_request.json");
    let trace = agentrace_model::ids::to_hex(&request.resource_spans[0].scope_spans[0].spans[0].trace_id);
    let client = reqwest::blocking::Client::new();
    let sent = client
        .post(format!("{}/v1/traces", collector.http()))
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);

    let api = collector.api();
    assert_eq!(client.get(format!("{api}/")).send().unwrap().status(), 200, "the shell loads");
    for path in [
        "/api/agentrace/traces",
        &format!("/api/agentrace/traces/{trace}"),
        "/api/agentrace/sessions",
        "/api/agentrace/requests",
        &format!("/api/agentrace/traces/{trace}/context"),
    ] {
        let without = client.get(format!("{api}{path}")).send().unwrap();
        assert_eq!(without.status(), 401, "{path} without the token");
        let with = client.get(format!("{api}{path}")).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(with.status(), 200, "{path} with the token");
    }

    let browser = Browser::start();
    browser.goto(&format!("{api}/#/"));
    browser.wait_for("the token form", "return !!document.querySelector('.token-form')", WAIT);
    let rows = "return document.querySelectorAll('tr[data-trace]').length";
    assert_eq!(browser.execute(rows, json!([])), json!(0), "no data before the token");

    browser.type_text(".token-form input", "wrong");
    browser.click(".token-form button");
    browser.wait_for(
        "a fresh form",
        "const i = document.querySelector('.token-form input'); return !!i && i.value === ''",
        WAIT,
    );
    assert_eq!(browser.execute(rows, json!([])), json!(0), "no data with a wrong token");

    browser.type_text(".token-form input", TOKEN);
    browser.click(".token-form button");
    browser.wait_for("the trace list", "return document.body.dataset.ready === 'list'", WAIT);
    // The request is listed once its trace closed (the trace timeout after its last span).
    let row = format!("return document.querySelectorAll(\"tr[data-trace='{trace}']\").length === 1");
    browser.wait_for("the request's row", &row, WAIT);
}
