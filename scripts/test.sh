#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# It sets up the real parts the tests use, then runs formatting, lints and
# every test in the workspace:
#   - .venv: the official OpenTelemetry Python SDK and friends, from PyPI
#     (scripts/requirements-test.txt);
#   - brokers (NATS, Redis, RabbitMQ) from Debian, started on loopback by
#     scripts/services.sh and stopped again when this script exits;
#   - Chromium and ChromeDriver from Debian, for the web UI's browser tests
#     (crates/collector/tests/ui_*.rs; screenshots in target/ui-screenshots/).
# Nothing is downloaded from anywhere but the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Python test environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

if [ -x scripts/services.sh ]; then
    step "services (brokers on loopback)"
    scripts/services.sh start
    trap 'scripts/services.sh stop' EXIT
fi

step "browser for the UI tests (Debian chromium, chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version 2>/dev/null | head -1
chromedriver --version | head -1

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
cargo test --workspace --all-features
