//! The web UI: the list of connected requests (paged, sortable, filtered
//! by pickers filled from the data, badges that name each kind of
//! finding), a request's waterfall (findings marked on their rows, search,
//! an overview, keyboard navigation) with the diagnosis and the selected
//! span (its conversation, long values cut) in a side pane, the agent
//! graph, and sessions with their totals, turn by turn. Light and dark.
//!
//! Hand-written HTML, CSS and JavaScript, embedded in the binary with
//! `include_str!`: building needs neither Node nor the network, and what
//! the test suite drives in Chromium is exactly what ships. The page reads
//! the JSON API of [`crate::api::connected`] and nothing else.
//!
//! Everything a span carries is untrusted. The script builds the page with
//! DOM calls and `textContent` only, never `innerHTML` with data, and every
//! answer here carries a Content-Security-Policy that allows scripts from
//! this origin only: even a mistake in the script could not run an inline
//! handler smuggled in through a span name.
//!
//! The static files carry no span data, so the bearer-token check lets them
//! through ([`is_static_asset`]); the page asks for the token when the API
//! answers 401 and sends it on every call.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Scripts, styles and API calls from this origin only; no inline script,
/// no plugins, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Whether `path` is one of the UI's static files, which hold no data.
pub fn is_static_asset(path: &str) -> bool {
    matches!(path, "/" | "/ui/app.js" | "/ui/app.css")
}

/// The UI's routes: `/` and its assets under `/ui/`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/ui/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/ui/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script must never hand data to the HTML parser. A literal
    /// search is crude, but it fails the build of the first `innerHTML`.
    #[test]
    fn the_script_never_parses_html() {
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
        assert!(!INDEX_HTML.contains("<script>"), "no inline script: the CSP forbids it");
    }
}
