"""The `gprune-edge` command line. Each command parses options and calls one
library function."""

from __future__ import annotations

import json

import click

from .errors import GPruneError

SPARSITY_HELP = ("Share of prunable parameters to remove, in [0, 1). Prunable means the attention "
                 "(q, k, v, o) and FFN (gate, up, down) weights of the decoder layers; embeddings, "
                 "norms and the output layer are kept.")

METHODS = ["gprune", "flap", "wanda-sp", "magnitude", "random"]

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


def _parse_options(pairs) -> dict:
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


@cli.command()
@click.option("--model", "-m", default=None, help="Model to prune [default: smollm2-135m].")
@click.option("--method", default="gprune", show_default=True,
              type=click.Choice(METHODS),
              help="gprune: generalization-aware (multi-distribution calibration, measured-cost allocation); "
                   "flap, wanda-sp, magnitude, random: baselines.")
@click.option("--metric", default="flap", show_default=True, type=click.Choice(["wanda-sp", "flap"]),
              help="GPrune's base importance metric.")
@click.option("--sparsity", "-s", type=float, required=True, help=SPARSITY_HELP)
@click.option("--align", type=int, default=32, show_default=True,
              help="Round every FFN width to a multiple of this (32 for q8_0/q4_0, 256 for k-quants).")
@click.option("--calib", default="wiki,news,code", show_default=True,
              help="Calibration text sources, comma-separated: wiki, news, science, code, dialogue, boolq, "
                   "hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or .txt/.jsonl files.")
@click.option("--n-samples", type=int, default=32, show_default=True, help="Calibration windows per source.")
@click.option("--seq-len", type=int, default=256, show_default=True, help="Tokens per calibration window.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--bias-compensation/--no-bias-compensation", default=None,
              help="FLAP bias compensation [default: on for gprune and flap, off otherwise].")
@click.option("--no-sensitivity", is_flag=True, help="Ablation: ignore distribution sensitivity.")
@click.option("--modules", "n_modules", type=int, default=None, help="Modules per layer (1 = no modules) [4].")
@click.option("--no-reliability", is_flag=True, help="Ablation: no switch to magnitude for unreliable modules.")
@click.option("--no-outlier-protection", is_flag=True, help="Ablation: massive-activation neurons may be pruned.")
@click.option("--no-measured-allocation", is_flag=True,
              help="Ablation: allocate by robust standardized scores instead of measured cost.")
@click.option("--pooled", is_flag=True, help="Ablation: treat the calibration sources as one distribution.")
@click.option("--lam", type=float, default=None, help="Weight of the worst dataset in GPrune's cost [1.0].")
@click.option("--option", "extra", multiple=True, help="Method option KEY=VALUE (repeatable).")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with MODEL to run.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the pruned checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def prune(model, method, metric, sparsity, align, calib, n_samples, seq_len, seed, device, bias_compensation,
          no_sensitivity, n_modules, no_reliability, no_outlier_protection, no_measured_allocation, pooled, lam,
          extra, trust_remote_code, out, overwrite):
    """Prune a model structurally and save the physically smaller checkpoint.

    The output directory holds model.safetensors, config.json, the tokenizer,
    recipe.json (everything needed to repeat the run), prune_summary.json
    (with the method's diagnostics) and prune_plot.png."""
    from .calibration import parse_sources
    from .loading import DEFAULT_MODEL
    from .prune import prune as run_prune
    from .recipe import PruneRecipe

    options = _parse_options(extra)
    switches = {"sensitivity": not no_sensitivity or None, "reliability": not no_reliability or None,
                "outliers": not no_outlier_protection or None, "measured": not no_measured_allocation or None,
                "per_dataset": not pooled or None}
    options.update({k: False for k, v in switches.items() if v is None})
    for key, value in (("modules", n_modules), ("lam", lam), ("bias_comp", bias_compensation)):
        if value is not None:
            options[key] = value
    recipe = PruneRecipe(model=model or DEFAULT_MODEL, method=method, sparsity=sparsity, align=align, seed=seed,
                         device=device, trust_remote_code=trust_remote_code, calib=list(parse_sources(calib)),
                         n_samples=n_samples, seq_len=seq_len, metric=metric, options=options)
    result = run_prune(recipe, out, overwrite)
    click.echo(f"pruned {result.prunable_before:,} -> {result.prunable_after:,} prunable parameters "
               f"(sparsity {result.sparsity:.3f}); saved to {result.out}")


@cli.command()
@click.option("--target", "-t", default=None,
              help="Device target: a built-in profile (browser, laptop-cpu, phone, raspberry-pi) or a profile .json.")
@click.option("--model", "-m", default=None, help="Model to build for the target [default: smollm2-135m].")
@click.option("--method", default=None, type=click.Choice(METHODS), help="Pruning method [default: gprune].")
@click.option("--sparsity", "-s", type=float, default=None, help=SPARSITY_HELP + " [default: the target's]")
@click.option("--limit", type=int, default=None, help="Questions per zero-shot task in verification [100].")
@click.option("--pairs", type=int, default=None, help="Alternating pruned/dense speed pairs [7].")
@click.option("--threads", type=int, default=None, help="Threads for export and verification [the target's].")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Repeat a build: its build.json (or a build config JSON); options given here override it.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def build(target, model, method, sparsity, limit, pairs, threads, config_file, out, overwrite):
    """Prune, export and verify for one device target, and gate on its budgets.

    OUT gets pruned/ (the checkpoint), artifacts/ (one per format the target
    runs), dense-artifacts/ (the dense model in the same formats, the baseline),
    reports/ (report.md/.html/.json per artifact) and build.json (the config,
    to repeat the build with --config). Exits with status 3 when a pruned
    artifact misses one of the target's budgets."""
    from .build import BuildConfig, build as run_build

    overrides = {k: v for k, v in dict(target=target, model=model, method=method, sparsity=sparsity, limit=limit,
                                       pairs=pairs, threads=threads).items() if v is not None}
    if config_file:
        config = BuildConfig.from_dict({**BuildConfig.load(config_file).to_dict(), **overrides})
    elif target is None:
        raise GPruneError("give --target (or --config with a previous build.json)")
    else:
        config = BuildConfig.from_dict(overrides)
    result = run_build(config, out, overwrite)
    for artifact in result.summary["artifacts"]:
        gate = artifact["gate"]
        state = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
        click.echo(f"{artifact['artifact']}: {artifact['size_bytes'] / 2**20:.1f} MiB "
                   f"(dense {artifact['dense_size_bytes'] / 2**20:.1f} MiB), gate {state}")
    click.echo(f"build written to {result.out}")
    if not result.passed:
        raise SystemExit(3)


def main():
    cli()


if __name__ == "__main__":
    main()
