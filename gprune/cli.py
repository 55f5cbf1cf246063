"""The `gprune-edge` command line. Each command parses options and calls one
library function."""

from __future__ import annotations

import json

import click

from .errors import GPruneError

SPARSITY_HELP = ("Share of prunable parameters to remove, in [0, 1). Prunable means the attention "
                 "(q, k, v, o) and FFN (gate, up, down) weights of the decoder layers; embeddings, "
                 "norms and the output layer are kept.")


# Commands that live in the other packages, imported only when used (the CLI composes the pipeline).
PIPELINE_COMMANDS = {"export": "exporters.cli", "verify": "runtime_checks.cli"}


class _Cli(click.Group):
    """Adds the pipeline commands lazily; turns GPruneError into a one-line `Error: ...` and exit status 1."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *(n for n in PIPELINE_COMMANDS if self._pipeline(n))})

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._pipeline(name)

    @staticmethod
    def _pipeline(name):
        import importlib

        try:
            return getattr(importlib.import_module(PIPELINE_COMMANDS[name]), name)
        except (KeyError, ModuleNotFoundError):
            return None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GPruneError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gprune-edge")
def cli():
    """Prune Llama-family LLMs structurally, export them for edge runtimes
    (llama.cpp, onnxruntime) and verify them against the dense model.

    MODEL arguments take a built-in name (smollm2-135m, the default), a local
    Hugging Face directory, a .gguf file, or a hub id."""


@cli.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model, as_json):
    """Architecture, per-layer widths, parameter count and file size of MODEL."""
    from .info import describe, format_info

    described = describe(model)
    click.echo(json.dumps(described.to_dict(), indent=2) if as_json else format_info(described))


@cli.command()
@click.option("--model", "-m", default=None, help="Model to prune [default: smollm2-135m].")
@click.option("--method", default="magnitude", show_default=True,
              help="Unit scoring and allocation method.")
@click.option("--sparsity", "-s", type=float, required=True, help=SPARSITY_HELP)
@click.option("--align", type=int, default=32, show_default=True,
              help="Round every FFN width to a multiple of this (32 for q8_0/q4_0, 256 for k-quants).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with MODEL to run.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the pruned checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def prune(model, method, sparsity, align, seed, device, trust_remote_code, out, overwrite):
    """Prune a model structurally and save the physically smaller checkpoint.

    The output directory holds model.safetensors, config.json, the tokenizer,
    recipe.json (everything needed to repeat the run) and prune_summary.json."""
    from .loading import DEFAULT_MODEL
    from .prune import prune as run_prune
    from .recipe import PruneRecipe

    recipe = PruneRecipe(model=model or DEFAULT_MODEL, method=method, sparsity=sparsity, align=align, seed=seed,
                         device=device, trust_remote_code=trust_remote_code)
    result = run_prune(recipe, out, overwrite)
    click.echo(f"pruned {result.prunable_before:,} -> {result.prunable_after:,} prunable parameters "
               f"(sparsity {result.sparsity:.3f}); saved to {result.out}")


def main():
    cli()


if __name__ == "__main__":
    main()
