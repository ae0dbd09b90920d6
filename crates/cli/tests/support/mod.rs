//! Shared set-up for the binary's integration tests: the real `agentrace
//! serve` on ephemeral ports, killed when the test ends, pass or fail.

#![allow(dead_code)]

pub mod demo;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `agentrace serve`.
pub struct Server {
    pub child: Child,
    /// OTLP/HTTP base URL.
    pub http: String,
    /// OTLP/gRPC address, `host:port`.
    pub grpc: String,
    /// API base URL.
    pub api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `agentrace serve` with `args` added (the data dir, a config), on
/// ephemeral ports for the listeners `args` do not place, and reads the
/// addresses it prints.
pub fn start<I, S>(args: I) -> Server
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    for flag in ["--otlp-grpc-addr", "--otlp-http-addr", "--ui-addr"] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.into(), "127.0.0.1:0".into()]);
        }
    }
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_agentrace")).arg("serve").args(args).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut http, mut api, mut grpc) = (None, None, None);
    while http.is_none() || api.is_none() || grpc.is_none() {
        let line = lines.next().expect("server printed its addresses").unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["OTLP/HTTP", addr, ..] => http = Some(format!("http://{addr}")),
            ["OTLP/gRPC", addr, ..] => grpc = Some((*addr).to_owned()),
            ["UI", "+", "API", url] => api = Some(url.to_string()),
            _ => {}
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, http: http.unwrap(), api: api.unwrap(), grpc: grpc.unwrap() }
}
