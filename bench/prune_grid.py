"""GPrune vs baselines on SmolLM2-135M: perplexity ratio to dense per text distribution,
calibrated on some distributions and evaluated on held-out eval halves of all of them.

    python bench/prune_grid.py --out bench/results/prune_grid.jsonl [--runs main,ablation,metric,flap-old,reconstruct]

Runs prune without reconstruction (as the methods were compared before it existed) except the
"reconstruct" kind, which repeats gprune and flap with it. Each run appends one JSON line
(method, options, sparsity, ppl per distribution, timings), so a partial grid is still usable;
bench/prune_table.py turns the lines into markdown tables."""

from __future__ import annotations

import argparse
import time

import torch
from common import ABLATIONS, BASELINES, SPARSITIES, achieved, append_jsonl, eval_sets, perplexity, recipe

from edgecore.loading import builtin_hf_dir, load_model
from gprune.prune import prune_model

KINDS = ("main", "ablation", "metric", "flap-old", "reconstruct")


def runs(kinds: list[str], sparsities: list[float]):
    """(method, sparsity, gprune metric, method options, label, reconstruct) of every run of `kinds`."""
    if "main" in kinds:
        for s in sparsities:
            yield "gprune", s, "flap", {}, "gprune", False
            for b in BASELINES:
                yield b, s, "flap", {}, b, False
    if "ablation" in kinds:
        for name, opts in ABLATIONS.items():
            yield "gprune", 0.35, "flap", opts, f"gprune {name}", False
    if "metric" in kinds:
        for s in sparsities:
            yield "gprune", s, "wanda-sp", {}, "gprune(wanda-sp)", False
    if "flap-old" in kinds:  # FLAP as gprune-edge 0.1 scored attention (issue 14)
        for s in sparsities:
            yield "flap", s, "flap", {"attention": "group-sum"}, "flap(group-sum)", False
    if "reconstruct" in kinds:  # training-free reconstruction after pruning (issue 11)
        for s in sparsities:
            yield "gprune", s, "flap", {}, "gprune +recon", True
            yield "flap", s, "flap", {}, "flap +recon", True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="main,ablation,metric", help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=4)
    ap.add_argument("--eval-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated labels to run (default all)")
    args = ap.parse_args()
    kinds = args.runs.split(",")
    if set(kinds) - set(KINDS):
        ap.error(f"unknown run kind(s) {', '.join(sorted(set(kinds) - set(KINDS)))}; choose from {', '.join(KINDS)}")
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    evals = eval_sets(tokenizer, args.eval_windows, args.eval_len)
    t = time.perf_counter()
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    eval_s = round(time.perf_counter() - t, 1)
    append_jsonl(args.out, {"label": "dense", "sparsity": 0.0, "ppl": dense, "eval_s": eval_s})
    sparsities = [float(s) for s in args.sparsities.split(",")]
    only = set(filter(None, args.only.split(",")))
    for method, sparsity, metric, opts, label, reconstruct in runs(kinds, sparsities):
        if only and label not in only:
            continue
        options = {**opts, "metric": metric} if method == "gprune" else dict(opts)
        t = time.perf_counter()
        pruned, plan = prune_model(model, tokenizer, recipe(method, sparsity, options, reconstruct,
                                                            n_samples=args.n_samples, seq_len=args.seq_len))
        prune_s = time.perf_counter() - t
        t = time.perf_counter()
        ppl = {d: perplexity(pruned, w) for d, w in evals.items()}
        layers = plan.diagnostics.get("layers", [])
        row = {"label": label, "method": method, "metric": metric, "options": opts, "sparsity": sparsity,
               "achieved": achieved(pruned, model), "ppl": ppl, "ratio": {d: ppl[d] / dense[d] for d in ppl},
               "prune_s": round(prune_s, 1), "eval_s": round(time.perf_counter() - t, 1),
               "switched": len(plan.diagnostics.get("switched_modules", [])),
               "protected": sum(plan.diagnostics.get("protected_neurons", [])),
               "layers_ffn": [d["ffn_kept"] for d in layers], "layers_kv": [d["kv_kept"] for d in layers],
               "reconstruct": reconstruct}
        append_jsonl(args.out, row)
        print(label, sparsity, {d: round(r, 2) for d, r in row["ratio"].items()}, flush=True)

if __name__ == "__main__":
    main()
