#!/usr/bin/env bash
# Records the doctor's real-library corpus afresh: every suite under crates/doctor/tests/corpus
# (one venv per suite, pinned versions from PyPI), every case, into DIR (default
# target/corpus-fresh). Suites that need a broker read REDIS_URL (Celery) or AGENTRACE_AMQP_URL
# (RabbitMQ); scripts/services.sh starts both.
#
#   scripts/corpus.sh [DIR] [SUITE...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
OUT="$(realpath -m "${1:-target/corpus-fresh}")"
shift || true
ROOT=crates/doctor/tests/corpus
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
    for d in "$ROOT"/*/; do
        d="${d%/}"; name="${d##*/}"
        [ -f "$d/make.py" ] && suites+=("$name")
    done
fi
mkdir -p "$OUT"
for suite in "${suites[@]}"; do
    venv=".venv-corpus/$suite"
    # Not byte-compiled at install: a case imports a fraction of the modules.
    python_venv "$venv" "$ROOT/$suite/requirements.txt"
    echo "corpus: recording $suite"
    rm -rf "${OUT:?}/$suite"
    PYTHONPATH="$PWD/$ROOT/harness" "$venv/bin/python" "$ROOT/$suite/make.py" --out "$OUT/$suite/cases"
done
