#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/corpus.sh: Python venvs with pinned requirements from PyPI.
#
#   python_venv DIR REQUIREMENTS [--compile]
#
# makes DIR (`python3 -m venv`) unless it exists and installs REQUIREMENTS into it, byte-compiled only
# with --compile. With uv (scripts/requirements-tools.txt, in .venv-tools: pip itself, from PyPI,
# installs it the first time), which installs from its cache by hard links and resolves as pip
# does (the same versions): a suite's venv took 21 CPU-s with pip, 2 with uv. Without uv (its
# install failed), pip does the same, slower. uv installs into the venv's own python3 and never
# downloads an interpreter (UV_PYTHON_DOWNLOADS=never): packages come from PyPI and nowhere else.

export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

uv_bin() {
    if [ ! -x .venv-tools/bin/uv ]; then
        { [ -x .venv-tools/bin/pip ] || python3 -m venv .venv-tools; } &&
            .venv-tools/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-tools.txt ||
            return 1
    fi
    echo "$PWD/.venv-tools/bin/uv"
}

python_venv() {
    local dir=$1 requirements=$2 compile=${3:-} uv
    # Made by the venv module, as by hand: `uv venv --seed` would add packages pip's venv lacks.
    [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
    if uv=$(uv_bin 2>/dev/null); then
        "$uv" pip install --quiet --python "$dir/bin/python" ${compile:+--compile-bytecode} -r "$requirements"
    else
        "$dir/bin/pip" install --quiet --disable-pip-version-check ${compile:---no-compile} -r "$requirements"
    fi
}
