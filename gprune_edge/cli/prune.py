"""`gprune-edge prune`: options -> PruneRecipe -> gprune.prune."""

from __future__ import annotations

import json

import click

from edgecore.errors import GPruneError
from gprune.methods.configs import METHOD_CONFIGS, METHOD_NAMES

SPARSITY_HELP = ("Share of prunable parameters to remove, in [0, 1). Prunable means the attention "
                 "(q, k, v, o) and FFN (gate, up, down) weights of the decoder layers; embeddings, "
                 "norms and the output layer are kept.")

# ablation flags -> the method option they set (an option the chosen method lacks is an error)
FLAG_OPTIONS = {"no_sensitivity": ("sensitivity", False), "no_reliability": ("reliability", False),
                "no_outlier_protection": ("outliers", False), "no_measured_allocation": ("measured", False),
                "pooled": ("per_dataset", False), "uniform": ("uniform", True)}
VALUE_OPTIONS = {"metric": "metric", "n_modules": "modules", "lam": "lam", "bias_compensation": "bias_comp"}


def parse_options(pairs) -> dict:
    """KEY=VALUE pairs; values parsed as JSON when they can be (numbers, true/false), else strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GPruneError(f"--option needs KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _methods_help() -> str:
    return " ".join(f"{name}: {cls.summary}." for name, cls in METHOD_CONFIGS.items())


def _options_help() -> str:
    return "Method option KEY=VALUE (repeatable). " + " ".join(
        f"[{name}] {cls.options_help()}." for name, cls in METHOD_CONFIGS.items())


@click.command(epilog="Repeat a run from its folder: gprune-edge prune --recipe OUT/recipe.json --out OUT2")
@click.option("--model", "-m", default=None, help="Model to prune [default: smollm2-135m].")
@click.option("--method", default=None, type=click.Choice(METHOD_NAMES), help=_methods_help() + " [default: gprune]")
@click.option("--metric", default=None, type=click.Choice(["flap", "wanda-sp"]),
              help="GPrune's base importance metric (gprune option metric) [flap].")
@click.option("--sparsity", "-s", type=float, default=None, help=SPARSITY_HELP + " Required unless --recipe.")
@click.option("--align", type=int, default=None,
              help="Round every FFN width to a multiple of this (32 for q8_0/q4_0, 256 for k-quants) [32].")
@click.option("--calib", default=None,
              help="Calibration text sources, comma-separated: wiki, news, science, code, dialogue, boolq, "
                   "hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or .txt/.jsonl files [wiki,news,code].")
@click.option("--n-samples", type=int, default=None, help="Calibration windows per source [32].")
@click.option("--seq-len", type=int, default=None, help="Tokens per calibration window [256].")
@click.option("--seed", type=int, default=None, help="Seed for calibration windows and the random method [0].")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N [auto].")
@click.option("--bias-compensation/--no-bias-compensation", default=None,
              help="FLAP bias compensation (option bias_comp) [default: on for gprune and flap, off for wanda-sp].")
@click.option("--reconstruct/--no-reconstruct", default=None,
              help="After pruning, refit the kept o_proj/down_proj weights and biases by ridge least squares "
                   "so the pruned model reproduces the dense one on the calibration text (training-free, about two "
                   "minutes for SmolLM2-135M on 2 cores) [default: on for gprune, off for the others].")
@click.option("--ridge", type=float, default=None,
              help="Reconstruction ridge, relative to the mean input energy; larger stays closer to the "
                   "pruned weights [1.0].")
@click.option("--no-sensitivity", is_flag=True, help="gprune ablation: ignore distribution sensitivity.")
@click.option("--modules", "n_modules", type=int, default=None,
              help="gprune: modules per layer (1 = no modules) [4].")
@click.option("--no-reliability", is_flag=True, help="gprune ablation: no switch to magnitude for unreliable modules.")
@click.option("--no-outlier-protection", is_flag=True,
              help="gprune ablation: massive-activation neurons may be pruned.")
@click.option("--no-measured-allocation", is_flag=True,
              help="gprune ablation: allocate by robust standardized scores instead of measured cost.")
@click.option("--pooled", is_flag=True, help="gprune ablation: treat the calibration sources as one distribution.")
@click.option("--uniform", is_flag=True,
              help="gprune: the same widths in every layer, for runtimes that need the stock architecture "
                   "(optimum, transformers.js, llama.cpp forks without `deci`). A stock checkpoint also needs "
                   "--no-bias-compensation --no-reconstruct (compensation biases need the per-layer format).")
@click.option("--lam", type=float, default=None, help="gprune: weight of the worst dataset in the cost [1.0].")
@click.option("--option", "extra", multiple=True, help=_options_help())
@click.option("--recipe", "recipe_file", type=click.Path(), default=None,
              help="Start from a recipe.json (e.g. a previous run's); options given here override it.")
@click.option("--calib-cache", type=click.Path(), default=None,
              help="Folder for cached calibration statistics [~/.cache/gprune-edge/calib].")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with MODEL to run.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the pruned checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def prune(model, method, sparsity, align, calib, n_samples, seq_len, seed, device, reconstruct, ridge, extra,
          recipe_file, calib_cache, trust_remote_code, out, overwrite, **flags):
    """Prune a model structurally and save the physically smaller checkpoint.

    The output directory holds model.safetensors, config.json, the tokenizer,
    recipe.json (everything needed to repeat the run), prune_summary.json
    (with the method's diagnostics) and prune_plot.png."""
    from gprune.prune import prune as run_prune
    from gprune.recipe import PruneRecipe

    base = PruneRecipe.load(recipe_file).to_dict() if recipe_file else {}
    if sparsity is None and "sparsity" not in base:
        raise GPruneError("give --sparsity (or --recipe with a previous recipe.json)")
    method_options = dict(base.get("method", {"name": "gprune"}))
    if method is not None and method != method_options["name"]:
        method_options = {"name": method}  # another method: the recipe's options were the old method's
        base.pop("reconstruct", None)  # and its reconstruction default
    method_options.update(parse_options(extra))
    for flag, (key, value) in FLAG_OPTIONS.items():
        if flags[flag]:
            method_options[key] = value
    for flag, key in VALUE_OPTIONS.items():
        if flags[flag] is not None:
            method_options[key] = flags[flag]
    given = dict(model=model, sparsity=sparsity, align=align, calib=calib.split(",") if calib else None,
                 n_samples=n_samples, seq_len=seq_len, seed=seed, device=device,
                 trust_remote_code=trust_remote_code or None, reconstruct=reconstruct)
    if ridge is not None:
        base["reconstruction"] = {**base.get("reconstruction", {}), "ridge": ridge}
    recipe = PruneRecipe.from_dict({**base, **{k: v for k, v in given.items() if v is not None},
                                    "method": method_options})
    result = run_prune(recipe, out, overwrite, calib_cache=calib_cache)
    click.echo(f"pruned {result.prunable_before:,} -> {result.prunable_after:,} prunable parameters "
               f"(sparsity {result.sparsity:.3f}); saved to {result.out}")
