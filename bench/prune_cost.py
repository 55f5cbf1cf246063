"""Cost of calibration and of a whole prune on SmolLM2-135M (CPU here; CUDA when present).

    python bench/prune_cost.py [--n-samples 8 --seq-len 256]

1. In a fresh process: a plain forward (decoder stack, no LM head, batches of 8) over the
   calibration tokens, then the layer-at-a-time calibration over the same tokens, then the
   plain forward again; calibration time / mean plain forward time is the ratio reported.
2. `gprune-edge prune --method gprune` in a fresh process with an empty calibration cache,
   then again at another sparsity (cache hit): wall time and peak RSS of each child."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time, torch
from gprune.calibration import CalibConfig, calibration_windows, collect
from edgecore.loading import builtin_hf_dir, load_model
from edgecore.run_context import RunContext
torch.set_num_threads(int(sys.argv[3]))
model, tok = load_model(str(builtin_hf_dir()))
cfg = CalibConfig(n_samples=int(sys.argv[1]), seq_len=int(sys.argv[2]))
windows = calibration_windows(tok, cfg)
def plain():
    t = time.perf_counter()
    with torch.inference_mode():
        for ids in windows.values():
            for b in ids.split(cfg.batch_size):
                model.model(input_ids=b, use_cache=False)
    return time.perf_counter() - t
f1 = plain()
t = time.perf_counter(); collect(model, windows, cfg, RunContext().torch_device()); calib_s = time.perf_counter() - t
f2 = plain()
print(json.dumps({"tokens": sum(w.numel() for w in windows.values()), "plain_forward_s": [round(f1, 2), round(f2, 2)],
                  "calibration_s": round(calib_s, 2), "ratio": round(calib_s / ((f1 + f2) / 2), 3),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def child_run(cmd: list[str], env: dict) -> dict:
    """Run a fresh process; its own wall time and peak RSS (os.wait4 gives that child's rusage)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        stdout.seek(0), stderr.seek(0)
        if status:
            raise SystemExit(stderr.read()[-2000:])
        return {"wall_s": round(time.perf_counter() - t, 1), "peak_rss_mb": usage.ru_maxrss // 1024,
                "stdout": stdout.read().strip().splitlines()[-1]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = {"calibration": json.loads(child_run([sys.executable, "-c", CHILD, str(args.n_samples), str(args.seq_len),
                                                str(args.threads)], env)["stdout"])}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        for sparsity in ("0.35", "0.5"):
            cmd = [sys.executable, "-m", "gprune_edge", "prune", "--method", "gprune", "-s", sparsity,
                   "--n-samples", str(args.n_samples), "--seq-len", str(args.seq_len),
                   "--calib-cache", cache, "--out", os.path.join(tmp, f"out{sparsity}")]
            out[f"prune_{sparsity}"] = {**child_run(cmd, env), "command": " ".join(cmd[1:]).replace(tmp, "$TMP")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
