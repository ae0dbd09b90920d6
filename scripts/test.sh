#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# It sets up the real parts the tests use, then runs formatting, lints and
# every test in the workspace:
#   - .venv: the official OpenTelemetry Python SDK and friends, from PyPI
#     (scripts/requirements-test.txt; uv installs every venv here: scripts/venv.sh), and
#     .venv-zipkin-proto for the Zipkin protobuf exporter,
#     which pins protobuf 3 (scripts/requirements-zipkin-proto.txt);
#   - brokers (NATS, Redis, RabbitMQ) and a PostgreSQL server from Debian, started on loopback
#     by scripts/services.sh and stopped again when this script exits; the API's and the live
#     pipeline's tests run once more with the store in PostgreSQL, and several collectors share one;
#   - Chromium and ChromeDriver from Debian, for the web UI's browser tests
#     (crates/collector/tests/ui_*.rs; screenshots in target/ui-screenshots/);
#   - the doctor's real-library corpus, recorded afresh (scripts/corpus.sh: one venv per suite
#     under .venv-corpus/, Celery on the Redis and pika on the RabbitMQ started above) and judged
#     by the doctor's tests, then sent through a running collector, whose live answer must equal
#     the file doctor's.
# Nothing is downloaded from anywhere but the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
# Each step's heading says how far into the run it starts.
step() { printf '\n== [%s s] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "format"
cargo fmt --all --check

step "lints, while building every target (in the background, beside the set-up below; log in target/build.log)"
# Clippy's lints with warnings denied, on every target of every workspace crate, as
# `cargo clippy --workspace --all-targets --all-features -- -D warnings` runs them; but with
# clippy-driver as the workspace's compiler, the same compilation also builds the test
# binaries. `cargo clippy` alone would compile every dependency a second time, in check mode:
# about 10 of the 27 minutes this command took on 2 cores. The build is the longest step; the
# set-up (venvs, Debian packages, servers), which mostly waits on the network and on dpkg, runs
# beside it.
export RUSTC_WORKSPACE_WRAPPER="${RUSTC_WORKSPACE_WRAPPER:-$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)}"
export CLIPPY_ARGS="-Dwarnings"
# librdkafka (rdkafka-sys, under the SDK's Kafka carrier) is the one C library whose build picks
# its own optimisation (-O2 -g): 95 CPU-seconds of the dependencies' build, 43 at -O0 without
# debug info. cc-rs builds the others as the test profile says (-O0, no debug info for
# dependencies), which this does not change; the tests only read and write message headers
# with it. Exported for every step: cc-rs's build scripts run again when CFLAGS changes.
export CFLAGS="${CFLAGS:--O0 -g0}"
mkdir -p target
# What `cargo test` builds (unit and integration tests, binaries, and the examples as the
# binaries some tests run), then the benches, which are linted and built but not run. Its own
# process group, so that the cleanup stops it when a step fails.
setsid bash -c 'cargo test --workspace --all-features --no-run &&
    cargo test --workspace --all-features --benches --no-run' >target/build.log 2>&1 &
build_pid=$!

corpus_pid=""
cleanup() {
    # A failing step must not leave the build or the corpus recording running.
    [ -n "$build_pid" ] && kill -- "-$build_pid" 2>/dev/null || true
    [ -n "$corpus_pid" ] && kill -- "-$corpus_pid" 2>/dev/null || true
    [ -x scripts/services.sh ] && scripts/services.sh stop || true
}
trap cleanup EXIT

step "Python test environment (.venv)"
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
python_venv .venv scripts/requirements-test.txt --compile
# The Zipkin protobuf exporter pins protobuf 3: a venv of its own.
python_venv .venv-zipkin-proto scripts/requirements-zipkin-proto.txt

if [ -x scripts/services.sh ]; then
    step "services (brokers and PostgreSQL on loopback, on free ports)"
    scripts/services.sh start
    # Their URLs, for the tests and the corpus recording below.
    eval "$(scripts/services.sh env)"
fi

step "doctor corpus: recording every real-library case afresh (in the background; log in target/corpus-fresh.log)"
# The doctor's claims are tried again on a new run of every case (other IDs, other timings, this
# machine's load): crates/doctor/tests/corpus/README.md. It runs beside the build.
rm -rf target/corpus-fresh
setsid scripts/corpus.sh target/corpus-fresh >target/corpus-fresh.log 2>&1 &
corpus_pid=$!

step "browser for the UI tests (Debian chromium, chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version 2>/dev/null | head -1
chromedriver --version | head -1

step "lints and build: waiting for them to end"
if wait "$build_pid"; then
    build_pid=""
    grep "Finished" target/build.log || true
else
    build_pid=""
    # Every line: clippy's findings and compiler errors are in it.
    cat target/build.log >&2
    echo "lints or build failed (above)" >&2
    exit 1
fi

status=0
# The tests that need PostgreSQL and only it (ignored without it): the PostgreSQL step runs them,
# the main pool leaves them out.
postgres_only='(kind(test) & test(/^collectors_share_one_postgres::/)) | (package(agentrace-collector) & kind(lib) & test(/^store::postgres::/))'
step "doctor corpus: the fresh recording (waiting for it to end, if it has not)"
fresh=()
if wait "$corpus_pid"; then
    corpus_pid=""
    # A case whose processes hung is recorded again once (crates/doctor/tests/corpus/README.md):
    # said here, never silent.
    grep -h "^corpus retry:" target/corpus-fresh.log >&2 || true
    # The same fresh cases through the file doctor and through a running collector, whose live
    # answer must be the file doctor's, request by request: the three tests that the fresh
    # recording's directory switches on, run beside every other test below.
    export AGENTRACE_FRESH_CORPUS="$PWD/target/corpus-fresh"
    fresh=(real_libraries_are_diagnosed_truthfully agent_frameworks_are_read_as_they_record
        live_answers_equal_the_file_doctors)
else
    corpus_pid=""
    echo "recording the corpus failed; its log:" >&2
    tail -120 target/corpus-fresh.log >&2
    status=1
fi

step "tests"
# Every test of every binary runs even when one fails, so one failure hides no other. With
# cargo-nextest (on this kind of machine; `cargo install cargo-nextest` elsewhere) they share
# one pool (.config/nextest.toml): tests that mostly wait on timeouts, brokers and browsers run
# beside each other instead of one binary after another, from the binaries built above. The
# ignored tests among them are the fresh corpus's (when it was recorded); the PostgreSQL ones
# run in the next step.
if cargo nextest --version >/dev/null 2>&1; then
    if [ ${#fresh[@]} -gt 0 ]; then
        cargo nextest run --workspace --all-features --run-ignored all \
            -E "not ($postgres_only)" \
            || status=$?
    else
        cargo nextest run --workspace --all-features || status=$?
    fi
    step "doc tests"
    cargo test --workspace --all-features --doc || status=$?
else
    echo "cargo-nextest is not installed: running the test binaries one after another"
    cargo test --workspace --all-features --no-fail-fast || status=$?
    if [ ${#fresh[@]} -gt 0 ]; then
        for t in "${fresh[@]}"; do
            cargo test --workspace --all-features --test integration -- --ignored "$t::" || status=$?
        done
    fi
fi

step "the store's readers, the live pipeline and several collectors over PostgreSQL (storage.backend: postgres)"
# The same API and live-pipeline tests again, each collector on a database of its own on the
# server of scripts/services.sh (AGENTRACE_TEST_STORE=postgres), then several `agentrace serve`
# processes sharing one. Not here: the SQLite-only store tests (its file, its size retention), and
# the restart tests, whose harness gives a restarted collector a new database.
pg_tests=(jaeger_query_api_answers_as_jaeger_does tempo_clients_read_agentrace
    ui_api_answers_connected_traces_and_filtered_lists python_sdk_spans_come_back_losslessly
    rust_sdk_spans_come_back_losslessly zipkin_senders_reach_agentrace live_answers_equal_the_file_doctors
    bad_input_gets_a_clear_error_and_loses_nothing exports_reach_backends_over_every_otlp_protocol
    backend_receives_one_connected_redacted_trace)
# The whole workspace with a filter, not `-p`: the binaries built above serve (a single package's
# features would build its dependencies again).
if cargo nextest --version >/dev/null 2>&1; then
    filter=$(printf 'test(/^%s::/) | ' "${pg_tests[@]}")
    # The store's own tests but those that open its SQLite file or fill it to its size limit (and
    # the pipeline's backlog, which a store shared by several collectors does not have):
    # acknowledged = durable, a retry not duplicated, retention by age.
    filter+="(test(/^store_keeps_what_it_acknowledges::/) & !test(past_the_pending_budget_senders_are_told_to_retry_later)"
    filter+=" & !test(past_the_concurrent_request_limit_senders_are_refused_before_their_body_is_read)"
    filter+=" & !test(a_pipeline_behind_keeps_taking_requests_and_diagnoses_them_from_the_store)"
    filter+=" & !test(requests_waiting_in_the_backlog_at_a_stop_are_diagnosed_after_the_restart)"
    filter+=" & !test(retention_deletes_the_oldest_spans_past_max_bytes))"
    # The corpus under load runs once, on SQLite: it tries the live pipeline, the same code
    # whichever store it writes to (and the corpus's plain live test takes every other case here).
    filter="kind(test) & ($filter) & !test(/_under_load$/)"
    AGENTRACE_TEST_STORE=postgres cargo nextest run --workspace --all-features -E "$filter" || status=$?
    cargo nextest run --workspace --all-features --run-ignored only \
        -E "$postgres_only" \
        || status=$?
else
    for t in "${pg_tests[@]}"; do
        AGENTRACE_TEST_STORE=postgres cargo test --workspace --all-features --test integration -- "$t::" --skip _under_load \
            || status=$?
    done
    AGENTRACE_TEST_STORE=postgres cargo test --workspace --all-features --test integration -- store_keeps_what_it_acknowledges:: \
        --skip past_the_pending_budget_senders_are_told_to_retry_later \
        --skip a_pipeline_behind_keeps_taking_requests_and_diagnoses_them_from_the_store \
        --skip requests_waiting_in_the_backlog_at_a_stop_are_diagnosed_after_the_restart \
        --skip past_the_concurrent_request_limit_senders_are_refused_before_their_body_is_read \
        --skip retention_deletes_the_oldest_spans_past_max_bytes || status=$?
    cargo test --workspace --all-features --test integration -- --ignored collectors_share_one_postgres:: || status=$?
    cargo test -p agentrace-collector --all-features --lib store::postgres -- --ignored || status=$?
fi

step "done: $([ "$status" = 0 ] && echo "every step passed" || echo "FAILED (exit $status): see the failures listed above")"
exit "$status"
