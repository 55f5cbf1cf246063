"""A/A benchmark of the speed gate: the dense SmolLM2-135M q8_0 GGUF verified against itself
on llama.cpp, speed only. The true ratio is 1.0, so a gate `min_decode_speedup: 1.05` must
never pass; the old gate (median of a fixed 7 pairs) passed it on a loaded machine. Each run
times the adaptive interval (SpeedSettings' defaults) and, for contrast, the old fixed 7 pairs,
printing the median decode ratio, its interval, pairs, seconds, whether the interval holds 1.0,
the gate's verdict and what the old median-only gate said; one JSON line per run and mode.

    python bench/speed_aa.py --runs 3 --threads 1

The GGUF is exported once to --work (or pass --gguf)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from common import append_jsonl

from edgecore.loading import builtin_hf_dir
from gprune_edge.export import export
from runtime_checks import gate
from runtime_checks.settings import SpeedSettings, VerifySettings
from runtime_checks.verify import run_verification

RESULTS = Path(__file__).parent / "results" / "speed_aa.jsonl"


def dense_gguf(args) -> Path:
    if args.gguf:
        return Path(args.gguf)
    path = Path(args.work) / "dense-q8_0.gguf"
    if not path.exists():
        export(builtin_hf_dir(), "gguf", "q8_0", path, threads=args.threads)
    return path


def measure(gguf: Path, speed: SpeedSettings, threads: int, threshold: float) -> dict:
    settings = VerifySettings(tasks=(), distributions=(), memory=False, threads=threads, speed=speed)
    report = run_verification(gguf, gguf, backends=["llama.cpp"], baseline_backend="llama.cpp", settings=settings,
                              tokenizer_from=builtin_hf_dir())
    run = report.candidates[0].speed
    decode = run.ratio["decode_tok_s"]
    verdict = gate.check(report, {"min_decode_speedup": threshold}).verdict
    return {"median": decode.median, "low": decode.low, "high": decode.high, "pairs": len(decode.pairs),
            "seconds": round(run.seconds, 1), "stopped_by": run.stopped_by,
            "holds_1": decode.low is not None and decode.low <= 1.0 <= decode.high,
            "verdict": verdict, "old_gate": "pass" if decode.median >= threshold else "fail",
            "decode_pairs": decode.pairs, "baseline_decode_tok_s": report.candidates[0].speed.baseline.decode_tok_s,
            "date": report.environment.date, "cpu": report.environment.cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=1.05, help="min_decode_speedup the A/A run must not pass")
    parser.add_argument("--max-seconds", type=float, default=None, help="[default: SpeedSettings' default]")
    parser.add_argument("--no-fixed", action="store_true", help="Skip the old fixed-7-pairs contrast.")
    parser.add_argument("--gguf", default=None, help="The dense q8_0 GGUF [default: exported to --work].")
    parser.add_argument("--work", default="runs/speed_aa")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    gguf = dense_gguf(args)
    command = "python " + " ".join(shlex.quote(a) for a in ["bench/speed_aa.py", *sys.argv[1:]])
    adaptive = SpeedSettings(threads=args.threads)
    if args.max_seconds is not None:
        adaptive = adaptive.replace(max_seconds=args.max_seconds)
    modes = {"adaptive": adaptive}
    if not args.no_fixed:
        modes["fixed7"] = SpeedSettings(pairs=7, max_pairs=7, threads=args.threads)
    print(f"{'run':>3} {'mode':8} {'median':>7} {'interval':>17} {'pairs':>5} {'secs':>6} {'stop':>11} "
          f"{'holds 1':>7} {'verdict':>9} {'old gate':>8}  load", flush=True)
    for i in range(args.runs):
        for mode, speed in modes.items():
            load = os.getloadavg()[0]
            started = time.perf_counter()
            row = measure(gguf, speed, args.threads, args.threshold)
            row.update(run=i, mode=mode, threads=args.threads, threshold=args.threshold, load_1min=load,
                       wall_s=round(time.perf_counter() - started, 1), settings=speed.to_dict(), command=command)
            interval = "-" if row["low"] is None else f"[{row['low']:.3f}, {row['high']:.3f}]"
            print(f"{i:>3} {mode:8} {row['median']:7.3f} {interval:>17} {row['pairs']:5d} {row['seconds']:6.0f} "
                  f"{row['stopped_by']:>11} {str(row['holds_1']):>7} {row['verdict']:>9} {row['old_gate']:>8}  "
                  f"{load:.1f}", flush=True)
            append_jsonl(args.out, row)


if __name__ == "__main__":
    main()
