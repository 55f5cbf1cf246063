"""`gprune-edge build`: options -> BuildConfig -> gprune_edge.build.build."""

from __future__ import annotations

import click

from edgecore.errors import GPruneError
from gprune.methods.configs import METHOD_NAMES
from gprune_edge.cli.prune import SPARSITY_HELP


@click.command()
@click.option("--target", "-t", default=None,
              help="Device target: a built-in profile (browser, laptop-cpu, phone, raspberry-pi) or a profile .json.")
@click.option("--model", "-m", default=None, help="Model to build for the target [default: smollm2-135m].")
@click.option("--method", default=None, type=click.Choice(METHOD_NAMES), help="Pruning method [default: gprune].")
@click.option("--sparsity", "-s", type=float, default=None, help=SPARSITY_HELP + " [default: the target's]")
@click.option("--distill-tokens", default=None,
              help="Distil the pruned model from the dense one on this many tokens (4k, 2M; 0 = no distillation) "
                   "[default: 8k on a CPU, 2M on CUDA].")
@click.option("--limit", type=int, default=None, help="Questions per zero-shot task in verification [100].")
@click.option("--pairs", type=int, default=None, help="Alternating pruned/dense speed pairs [7].")
@click.option("--threads", type=int, default=None, help="Threads for export and verification [the target's].")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Repeat a build: its build.json (or a build config JSON); options given here override it.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def build(target, model, method, sparsity, distill_tokens, limit, pairs, threads, config_file, out, overwrite):
    """Prune, export and verify for one device target, and gate on its budgets.

    OUT gets pruned/ (the checkpoint, reconstructed), recovered/ (distilled from
    the dense model, when there is a token budget), artifacts/ (one per format the target
    runs), dense-artifacts/ (the dense model in the same formats, the baseline),
    reports/ (report.md/.html/.json per artifact) and build.json (the config,
    to repeat the build with --config). Exits with status 3 when a pruned
    artifact misses one of the target's budgets."""
    from gprune.methods import method_config
    from gprune_edge.build import BuildConfig, build as run_build
    from gprune_edge.cli.recover import parse_tokens

    if config_file:
        config = BuildConfig.load(config_file)
    elif target is None:
        raise GPruneError("give --target (or --config with a previous build.json)")
    else:
        config = BuildConfig(target=target)
    recipe, settings = config.prune, config.verify
    if model is not None:
        recipe = recipe.replace(model=model)
    if method is not None and method != recipe.method.name:
        recipe = recipe.replace(method=method_config(method))
    if limit is not None:
        settings = settings.replace(limit=limit)
    if pairs is not None:
        settings = settings.replace(speed=settings.speed.replace(pairs=pairs) if settings.speed else None)
    if distill_tokens is not None:
        distill_tokens = parse_tokens(distill_tokens, "--distill-tokens")
    overrides = {k: v for k, v in dict(target=target, sparsity=sparsity, threads=threads,
                                       distill_tokens=distill_tokens).items() if v is not None}
    config = config.replace(prune=recipe, verify=settings, **overrides)
    result = run_build(config, out, overwrite)
    if result.recovery:
        r = result.recovery
        kl = (f": held-out KL to the dense model {r['heldout_kl_before']:.4f} -> {r['heldout_kl_after']:.4f}"
              if r["heldout_kl_after"] is not None else "")
        click.echo(f"distilled on {r['tokens']:,} tokens{kl}")
    for artifact in result.artifacts:
        state = "passed" if artifact.gate.passed else "FAILED: " + "; ".join(artifact.gate.failures)
        click.echo(f"{artifact.artifact}: {artifact.size_bytes / 2**20:.1f} MiB "
                   f"(dense {artifact.dense_size_bytes / 2**20:.1f} MiB), gate {state}")
    click.echo(f"build written to {result.out}")
    if not result.passed:
        raise SystemExit(3)
