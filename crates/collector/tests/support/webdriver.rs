//! A tiny W3C WebDriver client that drives Debian's headless Chromium
//! through `chromedriver`, for the UI's browser tests and benchmark.
//!
//! Just the commands the tests need: new session, navigate, find, click,
//! execute script, screenshot. Chromium and ChromeDriver come from Debian
//! (`apt-get install chromium chromium-driver`, done by `scripts/test.sh`);
//! missing them is a failure, not a skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The WebDriver element key, fixed by the W3C spec.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium, driven over WebDriver; quits on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: the UI tests need Debian's Chromium and ChromeDriver. Run scripts/test.sh, \
         or `apt-get install -y chromium chromium-driver` (or set {env})",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium
    /// with a fresh profile and a 1600×1000 window.
    pub fn start() -> Browser {
        let chromium = binary("AGENTRACE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("AGENTRACE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags this machine needs: no sandbox as root, and nothing that
        // phones home (the network is closed, and refused connections slow
        // Chromium down).
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1600,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let mut browser = Browser { driver, base, session: String::new(), http, _profile: profile };
        let created = browser.call("POST", "/session", capabilities);
        browser.session = created["sessionId"].as_str().expect("a WebDriver session").to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request.send().unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let value: Value = response.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {method} {path} answered {status}: {value}");
        value["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Navigates and waits for the document to load.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.session_call("POST", "/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Runs `script` until it returns something truthy, and returns that;
    /// panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script, json!([]));
            let truthy = !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.execute("return document.body ? document.body.innerText : ''", json!([]));
                panic!("timed out waiting for {what}; the page says:\n{}", page.as_str().unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element matching a CSS selector, as a WebDriver reference.
    pub fn find(&self, css: &str) -> String {
        let found = self.session_call("POST", "/element", json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    /// Clicks an element the way a user would (WebDriver scrolls it into
    /// view and sends real pointer events).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Drags the mouse across an element, from `from` to `to` (fractions
    /// of its width, at mid-height), with real pointer events.
    pub fn drag_across(&self, css: &str, from: f64, to: f64) {
        let id = self.find(css);
        let rect = self.session_call("GET", &format!("/element/{id}/rect"), Value::Null);
        let width = rect["width"].as_f64().unwrap();
        // Offsets are from the element's centre.
        let x = |fraction: f64| ((fraction - 0.5) * width).round() as i64;
        let origin = json!({ ELEMENT: id });
        let actions = json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [
            {"type": "pointerMove", "origin": origin, "x": x(from), "y": 0, "duration": 0},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "origin": origin, "x": x(to), "y": 0, "duration": 100},
            {"type": "pointerUp", "button": 0}
        ]}]});
        self.session_call("POST", "/actions", actions);
    }

    /// Types `text` into an input, key by key.
    pub fn type_text(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/value"), json!({ "text": text }));
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> u64 {
        self.execute("return document.querySelectorAll(arguments[0]).length", json!([css])).as_u64().unwrap()
    }

    /// The text of the first element matching `css` (empty when none).
    pub fn text(&self, css: &str) -> String {
        self.execute("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", json!([css]))
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Presses keys with real key events on whatever has the focus; each
    /// key is a character or a WebDriver key code (`"\u{E004}"` is Tab).
    pub fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.session_call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// Makes the page's `prefers-color-scheme` dark or light, as a system
    /// setting would (Chromium's media emulation, through chromedriver).
    pub fn prefer_dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [{"name": "prefers-color-scheme", "value": value}]}}),
        );
    }

    /// Sets the window's outer size.
    pub fn resize(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", json!({"width": width, "height": height}));
    }

    /// Runs axe-core (the accessibility checker, from npm) on the page as it
    /// is, and returns its violations of WCAG 2.x A and AA rules whose
    /// impact is serious or critical, each as "rule: nodes".
    pub fn serious_accessibility_violations(&self, axe_source: &str) -> Vec<String> {
        self.execute(axe_source, json!([]));
        let found = self.execute(
            "return axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
               .then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.help + ': ' + v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(', ')))",
            json!([]),
        );
        found.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    }

    /// Saves a PNG screenshot of the window under `target/ui-screenshots/`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.session_call("GET", "/screenshot", Value::Null);
        let png = base64_decode(encoded.as_str().expect("screenshot is base64"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/ui-screenshots`, under `CARGO_TARGET_DIR` when it is set.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-screenshots")
}

/// Standard base64 (RFC 4648, with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for quad in bytes.chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|c| *c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let produced = data.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    out
}
