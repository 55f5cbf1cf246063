"""Reconstruction settings on SmolLM2-135M: GPrune pruned once without reconstruction, then
reconstructed with each setting; perplexity ratio to dense per distribution (16 eval windows).

    python bench/reconstruction_sweep.py --method gprune --sparsity 0.2 --settings residual:1:16,sublayer:1:16

A setting is TARGET:RIDGE:WINDOWS (windows per calibration source). One JSON line per setting."""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch
from prune_grid import CALIB, EVAL, perplexity  # bench/ is on sys.path when run as a script

from edgecore import textdata
from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import calibration_windows
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe
from gprune.reconstruction import reconstruct

OOD = [d for d in EVAL if d not in CALIB]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="gprune")
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--settings", default="residual:1:16")
    ap.add_argument("--out", default="bench/results/reconstruction_sweep.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_model(str(builtin_hf_dir()))
    evals = {d: textdata.eval_windows(tok, textdata.load_documents(d, "eval"), 256, 16, source=d) for d in EVAL}
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    recipe = PruneRecipe(model="smollm2-135m", method=method_config(args.method), sparsity=args.sparsity, align=32,
                         calib=CALIB, n_samples=16, seq_len=256, reconstruct=False)
    pruned, _ = prune_model(model, tok, recipe)
    windows = calibration_windows(tok, recipe.calib_config())
    with open(args.out, "a") as f:
        for setting in ["none"] + args.settings.split(","):
            m, seconds = pruned, 0.0
            if setting != "none":
                target, ridge, n = setting.split(":")
                m, t = copy.deepcopy(pruned), time.perf_counter()
                reconstruct(model, m, {s: w[:int(n)] for s, w in windows.items()}, float(ridge), target)
                seconds = round(time.perf_counter() - t, 1)
            ratio = {d: perplexity(m, w) / dense[d] for d, w in evals.items()}
            ood = math.exp(sum(math.log(ratio[d]) for d in OOD) / len(OOD))
            row = {"method": args.method, "sparsity": args.sparsity, "setting": setting, "ood": round(ood, 4),
                   "ratio": ratio, "seconds": seconds}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(setting, round(ood, 3), f"{seconds}s", flush=True)


if __name__ == "__main__":
    main()
