//! Shared helpers of the doctor's integration tests: the fixture corpus and
//! golden files with readable diffs.
//!
//! Golden files live in `tests/golden/`. When an intended change alters the
//! output, rewrite them with `UPDATE_GOLDEN=1 cargo test -p agentrace-doctor`
//! and review the diff in git before committing.

#![allow(dead_code)]

pub mod corpus;
pub mod synth;

use std::path::{Path, PathBuf};

use agentrace_doctor::{Config, Diagnosis, Doctor};
use agentrace_model::Span;
use agentrace_model::otlp::Limits;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Fixture names (file stems), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let ext = path.extension()?.to_str()?;
            (ext == "json" || ext == "jsonl").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// The spans of a fixture, by file stem.
pub fn load(name: &str) -> Vec<Span> {
    let dir = fixtures_dir();
    let path = ["json", "jsonl"].iter().map(|ext| dir.join(format!("{name}.{ext}"))).find(|p| p.exists());
    let path = path.unwrap_or_else(|| panic!("no fixture named {name}"));
    let bytes = std::fs::read(&path).expect("readable fixture");
    let read = agentrace_doctor::input::spans_from_bytes(&bytes, &Limits::default()).expect("valid OTLP JSON");
    assert_eq!(read.rejected, 0, "{name}: every fixture span is valid");
    assert!(!read.spans.is_empty(), "{name}: has spans");
    read.spans
}

pub fn analyse(name: &str) -> Diagnosis {
    Doctor::new(Config::default()).analyse(&load(name))
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
pub fn check_golden(file: &str, actual: &str) -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path)
        .map_err(|e| format!("{file}: cannot read golden file ({e}); create it with UPDATE_GOLDEN=1"))?;
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "{file} differs from the golden file (- golden, + actual; UPDATE_GOLDEN=1 rewrites it):\n{}",
        diff(&expected, actual)
    ))
}

/// A line diff (longest common subsequence) with two lines of context.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<bool> = ops.iter().map(|(c, _)| *c != ' ').collect();
    let near = |k: usize| (k.saturating_sub(2)..=(k + 2).min(ops.len() - 1)).any(|x| changed[x]);
    let mut out = String::new();
    let mut skipped = false;
    let mut shown = 0;
    for (k, (c, line)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push_str("  …\n");
                skipped = false;
            }
            out.push_str(&format!("{c} {line}\n"));
            shown += 1;
            if shown > 120 {
                out.push_str("  … (diff cut)\n");
                break;
            }
        } else {
            skipped = true;
        }
    }
    if skipped {
        out.push_str("  …\n");
    }
    out
}
