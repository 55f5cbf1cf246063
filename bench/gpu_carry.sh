#!/usr/bin/env bash
# Packs what bench/gpu_recovery.sh needs on a lent GPU machine, which reaches nothing and takes 64 MiB a
# call, into .gpu/ (ignored by git through .git/info/exclude), in two loads:
#   .gpu/a: wheels the device's Python 3.12 lacks or has at other versions (transformers, peft, gguf,
#           datasets and its two small needs), and the first half of the built-in GGUF;
#   .gpu/b: the GGUF's second half and the parsed built-in text (the user cache's text/).
# Then, with the machine warm between the two calls (it goes back after 30 s idle):
#   run carry [".gpu/a"]: bash bench/gpu_carry.sh unpack-a
#   run carry [".gpu/b"]: bash bench/gpu_carry.sh unpack-b && export PYTHONPATH=/tmp/site:$PWD \
#                         GPRUNE_CACHE=/tmp/gprune-cache && bash bench/gpu_recovery.sh speed $OUT/gpu && ...
# `code` text is keyed by the Python that parses it: the device builds its own from its standard library.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(transformers==5.23.0 peft==0.21.2 gguf==0.19.0 datasets==5.2.0 dill==0.4.0 multiprocess==0.70.18)
CACHE=${GPRUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gprune-edge}
DEVICE_CACHE=${DEVICE_CACHE:-/tmp/gprune-cache}

case ${1:-pack} in
pack)
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >>.git/info/exclude
    rm -rf .gpu && mkdir -p .gpu/a/whl .gpu/b
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/a/whl "${WHEELS[@]}"
    gguf=$(.venv/bin/python -c "from edgecore.loading import builtin_gguf; print(builtin_gguf())")
    (cd "$(dirname "$gguf")/.." && find . -name '.done-*' -o -name '*.gguf') | sed 's|^\./||' >.gpu/a/layout
    echo "$gguf" | sed "s|^$CACHE/||" >.gpu/a/gguf_path  # where the file lies under the cache
    split -n 2 -d "$gguf" .gpu/gguf.
    mv .gpu/gguf.00 .gpu/a/ && mv .gpu/gguf.01 .gpu/b/
    sha256sum "$gguf" | cut -d' ' -f1 >.gpu/b/gguf.sha256
    cp -r "$CACHE/text" .gpu/b/text
    du -sh .gpu/a .gpu/b
    ;;
unpack-a)  # on the device: install the wheels and keep the first half, both in /tmp
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/a/whl/*.whl
    cp .gpu/a/gguf.00 .gpu/a/gguf_path /tmp/
    mkdir -p "$DEVICE_CACHE" && cp .gpu/a/layout /tmp/
    ;;
unpack-b)  # on the device: the GGUF whole again, where the cache expects it, checked; the text beside it
    target=$DEVICE_CACHE/$(cat /tmp/gguf_path)
    mkdir -p "$(dirname "$target")"
    cat /tmp/gguf.00 .gpu/b/gguf.01 >"$target.tmp" && mv "$target.tmp" "$target"
    [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$(cat .gpu/b/gguf.sha256)" ] || { echo "GGUF damaged in transit" >&2; exit 1; }
    root=$(dirname "$(dirname "$target")")
    grep '\.done-' /tmp/layout | while read -r marker; do touch "$root/$marker"; done
    cp -r .gpu/b/text "$DEVICE_CACHE/"
    ;;
*) echo "usage: bench/gpu_carry.sh [pack|unpack-a|unpack-b]" >&2; exit 2 ;;
esac
