#!/usr/bin/env bash
# Benchmark of the web UI in headless Chromium (crates/collector/examples/ui_bench.rs):
# a 10,000-span trace timed to interactive (the page's own performance marks), and the
# trace list with 100,000 traces in the store. Installs Chromium and ChromeDriver from
# Debian when they are missing, as scripts/test.sh does.
#
#   scripts/ui-bench.sh            # UI_BENCH_RUNS=5 by default
#
# Last figures: see the table below (filled from the run's output).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cargo build --release -p agentrace-collector --example ui_bench
exec target/release/examples/ui_bench "$@"
