"""GPrune vs baselines on SmolLM2-135M: perplexity ratio to dense per text distribution,
calibrated on some distributions and evaluated on held-out eval halves of all of them.

    python bench/prune_grid.py --out bench/results/prune_grid.jsonl [--runs main,ablation,metric,flap-old,measured,search,cap,propagation,reconstruct]

Runs prune without reconstruction (as the methods were compared before it existed) except the
"reconstruct" kind, which repeats gprune and flap with it. Each run appends one JSON line
(method, options, sparsity, ppl per distribution, timings), so a
partial grid is still usable; bench/prune_table.py turns the lines into markdown tables."""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from edgecore import textdata
from edgecore.loading import builtin_hf_dir, load_model
from edgecore.params import prunable_params
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe

CALIB = ["wiki", "news", "code"]
EVAL = ["wiki", "news", "code", "science", "dialogue", "boolq"]  # last three: out of calibration
SPARSITIES = [0.10, 0.20, 0.35, 0.50]
BASELINES = ["magnitude", "wanda-sp", "flap"]
LAYER_CAPS = (1.5, 2.0, 3.0)
SEARCH = 24  # generations of GPrune's width search (most of the gain comes by then; ~20 s each here)
ABLATIONS = {  # name -> gprune options (each switches one step off)
    "no-sensitivity": {"sensitivity": False}, "no-modules": {"modules": 1}, "no-reliability": {"reliability": False},
    "no-outliers": {"outliers": False}, "no-measured": {"measured": False}, "lam=0": {"lam": 0.0},
    "pooled": {"per_dataset": False}, "no-bias-comp": {"bias_comp": False},
}


@torch.inference_mode()
def perplexity(model, windows: torch.Tensor, batch: int = 4) -> float:
    nll, count = 0.0, 0
    for ids in windows.split(batch):
        logits = model(input_ids=ids).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                 reduction="sum")
        nll += float(loss)
        count += ids[:, 1:].numel()
    return math.exp(nll / count)


def runs(kinds: list[str], sparsities: list[float]):
    """(method, sparsity, gprune metric, method options, label, reconstruct) of every run of `kinds`."""
    for run in _runs(kinds, sparsities):
        yield *run, False
    if "reconstruct" in kinds:  # training-free reconstruction after pruning (issue 11)
        for s in sparsities:
            yield "gprune", s, "flap", {}, "gprune +recon", True
            yield "flap", s, "flap", {}, "flap +recon", True
    if "measured-reconstruct" in kinds:  # the same with GPrune's measured gains (issue 14)
        for s in sparsities:
            yield "gprune", s, "flap", {"gains": "measured"}, "gprune measured +recon", True
    if "search-reconstruct" in kinds:  # ... and with the width search (issue 14)
        for s in sparsities:
            yield "gprune", s, "flap", {"search": SEARCH}, "gprune search +recon", True


def _runs(kinds: list[str], sparsities: list[float]):
    if "main" in kinds:
        for s in sparsities:
            yield "gprune", s, "flap", {}, "gprune"
            for b in BASELINES:
                yield b, s, "flap", {}, b
    if "ablation" in kinds:
        for name, opts in ABLATIONS.items():
            yield "gprune", 0.35, "flap", opts, f"gprune {name}"
    if "metric" in kinds:
        for s in sparsities:
            yield "gprune", s, "wanda-sp", {}, "gprune(wanda-sp)"
    if "flap-old" in kinds:  # FLAP as gprune-edge 0.1 scored attention (issue 14)
        for s in sparsities:
            yield "flap", s, "flap", {"attention": "group-sum"}, "flap(group-sum)"
    if "measured" in kinds:  # GPrune's cost with measured gains (issue 14)
        for s in sparsities:
            yield "gprune", s, "flap", {"gains": "measured"}, "gprune measured"
    if "search" in kinds:  # GPrune's widths searched at the model's output (issue 14)
        for s in sparsities:
            yield "gprune", s, "flap", {"search": SEARCH}, "gprune search"
    if "propagation" in kinds:  # GPrune with gains estimated from gradients (issue 14)
        for s in sparsities:
            yield "gprune", s, "flap", {"gains": "fisher"}, "gprune propagation"
            yield "gprune", s, "flap", {"gains": "fisher", "layer_cap": 2.0}, "gprune propagation cap=2"
    if "cap" in kinds:  # GPrune with a per-layer cap on the layer-local cost (issue 14)
        for s in sparsities:
            for cap in LAYER_CAPS:
                yield "gprune", s, "flap", {"layer_cap": cap}, f"gprune cap={cap:g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="main,ablation,metric")
    ap.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=4)
    ap.add_argument("--eval-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated labels to run (default all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    evals = {d: textdata.eval_windows(tokenizer, textdata.load_documents(d, "eval"), args.eval_len,
                                      args.eval_windows, source=d) for d in EVAL}
    with open(args.out, "a") as f:
        t = time.perf_counter()
        dense = {d: perplexity(model, w) for d, w in evals.items()}
        f.write(json.dumps({"label": "dense", "sparsity": 0.0, "ppl": dense,
                            "eval_s": round(time.perf_counter() - t, 1)}) + "\n")
        f.flush()
        sparsities = [float(s) for s in args.sparsities.split(",")]
        only = set(filter(None, args.only.split(",")))
        for method, sparsity, metric, opts, label, reconstruct in runs(args.runs.split(","), sparsities):
            if only and label not in only:
                continue
            options = {**opts, "metric": metric} if method == "gprune" else dict(opts)
            recipe = PruneRecipe(model="smollm2-135m", method=method_config(method, options), sparsity=sparsity,
                                 align=32, calib=CALIB, n_samples=args.n_samples, seq_len=args.seq_len,
                                 reconstruct=reconstruct)
            t = time.perf_counter()
            pruned, plan = prune_model(model, tokenizer, recipe)
            prune_s = time.perf_counter() - t
            t = time.perf_counter()
            ppl = {d: perplexity(pruned, w) for d, w in evals.items()}
            row = {"label": label, "method": method, "metric": metric, "options": opts, "sparsity": sparsity,
                   "achieved": round(1 - prunable_params(pruned.config) / prunable_params(model.config), 4),
                   "ppl": ppl, "ratio": {d: ppl[d] / dense[d] for d in ppl}, "prune_s": round(prune_s, 1),
                   "eval_s": round(time.perf_counter() - t, 1),
                   "switched": len(plan.diagnostics.get("switched_modules", [])),
                   "protected": sum(plan.diagnostics.get("protected_neurons", [])),
                   "layers_ffn": [d["ffn_kept"] for d in plan.diagnostics.get("layers", [])],
                   "layers_kv": [d["kv_kept"] for d in plan.diagnostics.get("layers", [])],
                   "reconstruct": reconstruct, "search": plan.diagnostics.get("search")}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(label, sparsity, {d: round(r, 2) for d, r in row["ratio"].items()}, flush=True)


if __name__ == "__main__":
    main()
