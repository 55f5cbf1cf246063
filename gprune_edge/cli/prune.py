"""`gprune-edge prune`: options -> PruneRecipe -> gprune.prune."""

from __future__ import annotations

import json

import click

from edgecore.errors import GPruneError
from edgecore.run_context import RunContext
from gprune.methods.configs import METHOD_CONFIGS, METHOD_NAMES
from gprune.recipe import PruneRecipe, ReconstructConfig
from gprune_edge.cli.config_options import config_options, given

RECIPE_OPTIONS = ("model", "sparsity", "align", "calib", "n_samples", "seq_len", "seed", "reconstruct")


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
    return "Method option KEY=VALUE (repeatable), e.g. --option uniform=true. " + " ".join(
        f"[{name}] {cls.options_help()}." for name, cls in METHOD_CONFIGS.items())


@click.command(epilog="Repeat a run from its folder: gprune-edge prune --recipe OUT/recipe.json --out OUT2")
@click.option("--method", default=None, type=click.Choice(METHOD_NAMES), help=_methods_help() + " [default: gprune]")
@config_options(PruneRecipe, only=RECIPE_OPTIONS, short={"model": "-m", "sparsity": "-s"}, required=("sparsity",))
@config_options(ReconstructConfig, only=("ridge",))
@click.option("--bias-compensation/--no-bias-compensation", default=None,
              help="FLAP bias compensation (option bias_comp) [default: on for gprune and flap, off for wanda-sp].")
@click.option("--reconstruct-bias/--no-reconstruct-bias", default=None,
              help=ReconstructConfig.__dataclass_fields__["bias"].metadata["help"] + " [default: on].")
@click.option("--option", "extra", multiple=True, help=_options_help())
@click.option("--recipe", "recipe_file", type=click.Path(), default=None,
              help="Start from a recipe.json (e.g. a previous run's); options given here override it.")
@config_options(RunContext)
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the pruned checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def prune(method, bias_compensation, reconstruct_bias, extra, recipe_file, out, overwrite, **options):
    """Prune a model structurally and save the physically smaller checkpoint.

    The output directory holds model.safetensors, config.json, the tokenizer,
    recipe.json (everything needed to repeat the run, on any machine),
    prune_summary.json (with the method's diagnostics) and prune_plot.png.
    --sparsity is required unless --recipe."""
    from edgecore import distributed
    from gprune.prune import prune as run_prune

    base = PruneRecipe.load(recipe_file).to_dict() if recipe_file else {}
    settings = given(PruneRecipe, options, RECIPE_OPTIONS)
    if "sparsity" not in settings and "sparsity" not in base:
        raise GPruneError("give --sparsity (or --recipe with a previous recipe.json)")
    method_options = dict(base.get("method", {"name": "gprune"}))
    if method is not None and method != method_options["name"]:
        method_options = {"name": method}  # another method: the recipe's options were the old method's
        base.pop("reconstruct", None)  # and its reconstruction default
    method_options.update(parse_options(extra))
    if bias_compensation is not None:
        method_options["bias_comp"] = bias_compensation
    reconstruction = given(ReconstructConfig, options, ("ridge",))
    if reconstruct_bias is not None:
        reconstruction["bias"] = reconstruct_bias
    if reconstruction:
        base["reconstruction"] = {**base.get("reconstruction", {}), **reconstruction}
    recipe = PruneRecipe.from_dict({**base, **settings, "method": method_options})
    result = run_prune(recipe, out, overwrite, context=RunContext(**given(RunContext, options)))
    if distributed.rank() == 0:  # under torchrun: one line, from the process that wrote
            click.echo(f"pruned {result.prunable_before:,} -> {result.prunable_after:,} prunable parameters "
                   f"(sparsity {result.sparsity:.3f}); saved to {result.out}")
