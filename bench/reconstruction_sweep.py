"""Reconstruction settings on SmolLM2-135M: GPrune pruned once without reconstruction, then
reconstructed with each setting; perplexity ratio to dense per distribution (16 eval windows).

    python bench/reconstruction_sweep.py --method gprune --sparsity 0.2 --settings residual:1:16,sublayer:1:16

A setting is TARGET:RIDGE:WINDOWS (windows per calibration source). One JSON line per setting."""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import OOD, append_jsonl, eval_sets, gmean, perplexity, recipe

from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import calibration_windows
from gprune.prune import prune_model
from gprune.reconstruction import reconstruct


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="gprune")
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--settings", default="residual:1:16")
    ap.add_argument("--out", default="bench/results/reconstruction_sweep.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_model(str(builtin_hf_dir()))
    evals = eval_sets(tok, 16)
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    pruning = recipe(args.method, args.sparsity)
    pruned, _ = prune_model(model, tok, pruning)
    windows = calibration_windows(tok, pruning.calib_config())
    for setting in ["none"] + args.settings.split(","):
        m, seconds = pruned, 0.0
        if setting != "none":
            target, ridge, n = setting.split(":")
            m, t = copy.deepcopy(pruned), time.perf_counter()
            reconstruct(model, m, {s: w[:int(n)] for s, w in windows.items()}, float(ridge), target)
            seconds = round(time.perf_counter() - t, 1)
        ratio = {d: perplexity(m, w) / dense[d] for d, w in evals.items()}
        ood = gmean(ratio[d] for d in OOD)
        row = {"method": args.method, "sparsity": args.sparsity, "setting": setting, "ood": round(ood, 4),
               "ratio": ratio, "seconds": seconds}
        append_jsonl(args.out, row)
        print(setting, round(ood, 3), f"{seconds}s", flush=True)


if __name__ == "__main__":
    main()
