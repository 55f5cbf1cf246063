"""KL of pruned models' next-token distributions from the dense model's, on calibration
windows (the text pruning reads), beside perplexity on held-out text: does the price the
width search minimises separate methods the way held-out perplexity does?

    python bench/prune_kl.py --out bench/results/prune_kl.jsonl --sparsities 0.2

Window sets per source (wiki, news, code; calibration settings of prune_grid.py): "search",
windows 0-3 cut to 128 tokens (what GPrune's width search prices); "unread", windows 4-7 cut to
128 tokens (its held-out check); "long", windows 8-11 at full length (256 tokens)."""

from __future__ import annotations

import argparse
import json

import torch
from prune_grid import CALIB  # bench/ is on sys.path when run as a script

from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import calibration_windows
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe

SETS = {"search": (slice(0, 4), 128), "unread": (slice(4, 8), 128), "long": (slice(8, 12), None)}
METHODS = {"flap": ("flap", {}), "gprune": ("gprune", {"metric": "flap"})}


@torch.inference_mode()
def mean_kl(dense, pruned, ids: torch.Tensor, batch: int = 4) -> float:
    total = 0.0
    for b in ids.split(batch):
        p = dense(input_ids=b).logits.float().log_softmax(-1)
        q = pruned(input_ids=b).logits.float().log_softmax(-1)
        total += float((p.exp() * (p - q)).sum())
    return total / ids.numel()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sparsities", default="0.2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    with open(args.out, "a") as f:
        for sparsity in map(float, args.sparsities.split(",")):
            for label, (method, options) in METHODS.items():
                recipe = PruneRecipe(model="smollm2-135m", method=method_config(method, options), sparsity=sparsity,
                                     align=32, calib=CALIB, n_samples=16, seq_len=256, reconstruct=False)
                windows = calibration_windows(tokenizer, recipe.calib_config())
                pruned = prune_model(model, tokenizer, recipe)[0]
                kl = {name: mean_kl(model, pruned, torch.cat([w[rows, :tokens] for w in windows.values()]))
                      for name, (rows, tokens) in SETS.items()}
                row = {"label": label, "sparsity": sparsity, "kl": {k: round(v, 4) for k, v in kl.items()}}
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(row, flush=True)


if __name__ == "__main__":
    main()
