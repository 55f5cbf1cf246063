"""KL of pruned models' next-token distributions from the dense model's, on calibration
windows (the text pruning reads), beside perplexity on held-out text: does the KL on the
text a method reads separate methods the way held-out perplexity does?

    python bench/prune_kl.py --out bench/results/prune_kl.jsonl --sparsities 0.2

Window sets per source (wiki, news, code; calibration settings of prune_grid.py): "search",
windows 0-3 cut to 128 tokens (what GPrune's former width search priced; the name stays so that
results compare); "unread", windows 4-7 cut to 128 tokens; "long", windows 8-11 at full length
(256 tokens). KL(dense || pruned) per token is recovery.loss.heldout_kl's."""

from __future__ import annotations

import argparse

import torch
from common import append_jsonl, recipe

from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import calibration_windows
from gprune.prune import prune_model
from recovery.loss import heldout_kl

SETS = {"search": (slice(0, 4), 128), "unread": (slice(4, 8), 128), "long": (slice(8, 12), None)}
METHODS = {"flap": ("flap", {}), "gprune": ("gprune", {"metric": "flap"})}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sparsities", default="0.2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    for sparsity in map(float, args.sparsities.split(",")):
        for label, (method, options) in METHODS.items():
            pruning = recipe(method, sparsity, options)
            windows = calibration_windows(tokenizer, pruning.calib_config())
            pruned = prune_model(model, tokenizer, pruning)[0]
            kl = {name: heldout_kl(pruned, model, torch.cat([w[rows, :tokens] for w in windows.values()]))
                  for name, (rows, tokens) in SETS.items()}
            row = {"label": label, "sparsity": sparsity, "kl": {k: round(v, 4) for k, v in kl.items()}}
            append_jsonl(args.out, row)
            print(row, flush=True)


if __name__ == "__main__":
    main()
