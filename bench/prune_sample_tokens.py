"""Does GPrune's measured cost overfit its token sample? GPrune at 10% and 20% with the cost
measured on N sampled tokens per calibration dataset (calibration keeps 256 by default).

    python bench/prune_sample_tokens.py --sample-tokens 1024"""

from __future__ import annotations

import argparse
import json

import torch
from common import CALIB, OOD, eval_sets, gmean, perplexity, recipe

from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import CalibConfig, calibrate
from gprune.prune import prune_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample-tokens", type=int, default=1024)
    ap.add_argument("--sparsities", default="0.1,0.2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    evals = eval_sets(tokenizer, 4)
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    cfg = CalibConfig(sources=tuple(CALIB), n_samples=16, seq_len=256, seed=0, sample_tokens=args.sample_tokens)
    calib = calibrate(model, tokenizer, cfg)
    for sparsity in map(float, args.sparsities.split(",")):
        pruning = recipe("gprune", sparsity, reconstruct=None)  # None: gprune's default (it reconstructs)
        pruned, plan = prune_model(model, tokenizer, pruning, calib)
        ratio = {d: perplexity(pruned, w) / dense[d] for d, w in evals.items()}
        ood = gmean(ratio[d] for d in OOD)
        print(json.dumps({"sample_tokens": args.sample_tokens, "sparsity": sparsity, "ood_geomean": round(ood, 3),
                          "ratio": ratio, "ffn_kept": [d["ffn_kept"] for d in plan.diagnostics["layers"]],
                          "kv_kept": [d["kv_kept"] for d in plan.diagnostics["layers"]]}), flush=True)


if __name__ == "__main__":
    main()
