"""`gprune-edge build`: options -> BuildConfig -> gprune_edge.build.build."""

from __future__ import annotations

import click

from edgecore.errors import GPruneError
from edgecore.run_context import RunContext
from gprune.methods.configs import METHOD_NAMES
from gprune_edge.build_config import BuildConfig
from gprune_edge.cli.config_options import TokenCount, config_options, given


@click.command()
@config_options(BuildConfig, only=("target",), short={"target": "-t"})
@click.option("--model", "-m", default=None, help="Model to build for the target [default: smollm2-135m].")
@click.option("--method", default=None, type=click.Choice(METHOD_NAMES), help="Pruning method [default: gprune].")
@config_options(BuildConfig, only=("sparsity", "distill_tokens"), short={"sparsity": "-s"},
                types={"distill_tokens": TokenCount()})
@click.option("--max-size", type=float, default=None, metavar="MB",
              help="Storage budget: the artifact's size in MB (10^6 bytes) [default: the target's storage_mb].")
@click.option("--max-memory", type=float, default=None, metavar="MB",
              help="Memory budget: what loading the artifact and filling the target's context adds to the "
                   "runtime's process, KV cache included [default: the target's memory_mb].")
@click.option("--min-decode-tok-s", type=float, default=None, metavar="N",
              help="Decode floor: tokens/s on this machine on the target's threads, the low end of a confidence "
                   "interval [default: the target's].")
@click.option("--min-decode-speedup", type=float, default=None, metavar="X",
              help="Decode floor: X times the dense model's tokens/s at the target's reference type, the low end "
                   "of a confidence interval [default: the target's].")
@click.option("--max-perplexity-ratio", type=float, default=None, metavar="R",
              help="Quality floor: the worst distribution's perplexity at most R times the reference's "
                   "[default: the target's].")
@click.option("--thorough", is_flag=True,
              help="Verify what ships on every task (200 questions each) and 16 perplexity windows "
                   "instead of the quick default.")
@click.option("--limit", type=int, default=None, help="Questions per zero-shot task in verification [50].")
@click.option("--pairs", type=int, default=None, help="Least alternating pruned/dense speed pairs [7]; more are "
                                                      "added until the speed interval is narrow.")
@config_options(RunContext)
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Repeat a build: its build.json (or a build config JSON); options given here override it.")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Run folder. If it holds an interrupted or earlier build of the same model and target, "
                   "the build continues there and redoes only what the settings change.")
@click.option("--overwrite", is_flag=True, help="Start over: replace OUT (a gprune-edge output) entirely.")
def build(target, model, method, sparsity, distill_tokens, max_size, max_memory, min_decode_tok_s,
          min_decode_speedup, max_perplexity_ratio, thorough, limit, pairs, config_file, out, overwrite,
          **run_settings):
    """The most accurate artifact within a device target's budgets: prune, recover, export,
    verify and gate.

    The target (`gprune-edge targets`) gives the artifact types its runtime takes and
    its budgets: memory at its context length, storage, a decode floor and a quality
    floor; the budget options replace any of them. The build measures the dense model
    at every type and pruned models where they can win (predictions skip the rest, and
    the terminal says why), then ships the most accurate candidate that meets every
    budget and that no other such candidate dominates. When that is the dense model
    quantized, it says nothing needs pruning. --sparsity forces a pruning strength and
    names what the search would have shipped and what dominates the forced artifact.
    Budgets nothing can meet are refused with the closest figure.

    OUT (a run folder) gets models/, artifacts/, checks/ (the search), reports/
    (full verification of what ships), build.json (to repeat it with --config),
    report.md/.html and frontier.png. Each stage is kept as it completes: rerun
    the same command after an interrupt to continue.

    Exit status: 0 passed; 1 error or refused budget; 3 a threshold missed;
    4 undecided (a speed figure too noisy on this machine to pass or fail)."""
    from gprune.methods import method_config
    from gprune_edge.build import build as run_build
    from gprune_edge.build_config import thorough_verify_settings
    from gprune_edge.build_report import summary_table
    from runtime_checks.gate import EXIT_FAIL, EXIT_UNDECIDED

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
    if thorough:
        settings = thorough_verify_settings()
    if limit is not None:
        settings = settings.replace(limit=limit)
    if pairs is not None:
        settings = settings.replace(speed=settings.speed.replace(pairs=pairs) if settings.speed else None)
    overrides = {k: v for k, v in dict(target=target, sparsity=sparsity,
                                       distill_tokens=distill_tokens).items() if v is not None}
    budgets = dict(max_size_mb=max_size, max_memory_mb=max_memory, min_decode_tok_s=min_decode_tok_s,
                   min_decode_speedup=min_decode_speedup, max_perplexity_ratio=max_perplexity_ratio)
    budgets = {k: v for k, v in budgets.items() if v is not None}
    config = config.replace(prune=recipe, verify=settings, budgets=config.budgets.replace(**budgets), **overrides)
    _log_stages()
    result = run_build(config, out, overwrite, context=RunContext(**given(RunContext, run_settings)))
    click.echo(f"measured on {result.runtime}; budgets: {result.budgets.limits()}")
    click.echo(summary_table(result))
    for label, r in result.recovery.items():
        kl = (f": held-out KL to the dense model {r['heldout_kl_before']:.4f} -> {r['heldout_kl_after']:.4f}"
              if r["heldout_kl_after"] is not None else "")
        click.echo(f"{label} distilled on {r['tokens']:,} tokens{kl}")
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} of {len(result.candidates)} candidates without measuring them "
                   "(their verdicts say why: a prediction beyond a budget, or no way to be more accurate)")
    for artifact in result.artifacts:
        click.echo(f"shipped {artifact.artifact}: gate {artifact.gate.verdict}")
        for line in artifact.budgets:
            click.echo(f"  {line}")
    if result.note:
        click.echo(result.note[0].upper() + result.note[1:] + ".")
    click.echo(f"build written to {result.out} (report.html, build.json)")
    raise SystemExit({"pass": 0, "fail": EXIT_FAIL, "undecided": EXIT_UNDECIDED}[result.verdict])


def _log_stages() -> None:
    """Each stage says on stderr whether it runs, resumes or is reused."""
    import logging

    logger = logging.getLogger("gprune_edge.build")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[build] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
