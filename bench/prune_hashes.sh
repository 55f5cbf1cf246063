#!/usr/bin/env bash
# sha256 of model.safetensors for prune --method gprune / flap at 20% and 35% on SmolLM2-135M and for
# a fixed-seed 2k-token recover of the gprune 20% model, run from the source tree SRC (a git worktree
# of the commit to check) with this checkout's .venv. Two trees giving the same hashes behave the same.
# usage: bash bench/prune_hashes.sh SRC OUT
set -euo pipefail
SRC=$(realpath "$1"); OUT=$(realpath -m "$2"); PY="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"  # not realpath: the venv is a symlink
mkdir -p "$OUT"; cd "$SRC"
for method in gprune flap; do for sparsity in 0.2 0.35; do
  "$PY" -m gprune_edge prune --model smollm2-135m --sparsity $sparsity --method $method \
    --calib-cache "$OUT/calib" --out "$OUT/$method-$sparsity" --overwrite 2>&1 | tail -1
done; done
"$PY" -m gprune_edge recover "$OUT/gprune-0.2" --tokens 2k --seed 0 --eval-windows 1 --out "$OUT/recover" \
  --overwrite 2>&1 | tail -1
(cd "$OUT" && sha256sum */model.safetensors) | tee "$OUT/sha256.txt"
