#!/usr/bin/env bash
# Creates .venv with the pinned, known-good dependency set and installs gprune-edge into it.
# llama-cpp-python has no wheel for this platform: the first run compiles llama.cpp
# (15-20 min on 2 cores) into a wheelhouse in the user cache; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELHOUSE=${GPRUNE_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/gprune-edge/wheelhouse}
LLAMA_CPP=llama-cpp-python==0.3.36

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
$PIP install --quiet torch==2.13.0  # the CPU build; a bare `torch` would pull CUDA

mkdir -p "$WHEELHOUSE"
if ! ls "$WHEELHOUSE"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    echo "building $LLAMA_CPP (compiles llama.cpp once; 15-20 minutes on 2 cores)..."
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PIP wheel --quiet --no-deps -w "$WHEELHOUSE" "$LLAMA_CPP"
fi
$PIP install --quiet --find-links "$WHEELHOUSE" "$LLAMA_CPP"
$PIP install --quiet -e ".[test]"

# onnxruntime-web runs in Node (the browser target's checks): Node and npm from Debian when absent,
# then the pinned npm package installed once into the user cache (runtime_checks/web).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "warning: Node.js/npm not found; the onnxruntime-web tests will be skipped (apt install nodejs npm)"
    fi
fi
if command -v node >/dev/null; then
    .venv/bin/python -c "from runtime_checks import web; print('onnxruntime-web installed for', web.runner().parent)"
fi

# optimum's ORTModelForCausalLM needs transformers<4.58: its own venv, used by tests/test_optimum.py
if [ "${GPRUNE_SKIP_OPTIMUM:-0}" != 1 ]; then
    [ -x .venv-optimum/bin/python ] || "$PYTHON" -m venv .venv-optimum
    .venv-optimum/bin/python -m pip install --quiet --upgrade pip
    .venv-optimum/bin/python -m pip install --quiet -r scripts/optimum-requirements.txt
fi
echo "gprune-edge is installed in .venv ($(.venv/bin/gprune-edge --version))"
