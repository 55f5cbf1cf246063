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
              help="Budget: the artifact's size in MB (10^6 bytes). Any budget makes the build search "
                   "sparsities x the target's artifact types, the dense model quantized included.")
@click.option("--min-decode-speedup", type=float, default=None, metavar="X",
              help="Budget: decode tok/s at least X times the dense model's at the target's default type, "
                   "on the target's runtime (the bound of a confidence interval, not a lucky median).")
@click.option("--max-memory", type=float, default=None, metavar="MB",
              help="Budget: peak RSS of the runtime process that loads and runs the artifact.")
@click.option("--max-perplexity-ratio", type=float, default=None, metavar="R",
              help="Budget: the worst distribution's perplexity at most R times the reference's.")
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
def build(target, model, method, sparsity, distill_tokens, max_size, min_decode_speedup, max_memory,
          max_perplexity_ratio, thorough, limit, pairs, config_file, out, overwrite, **run_settings):
    """Prune, recover, export and verify for one device target, and gate on its budgets.

    Without budgets the build prunes at the target's sparsity (or --sparsity) and
    checks each artifact the target runs against the dense model of the same type,
    gated on the target's thresholds. With budgets (--max-size, --min-decode-speedup,
    --max-memory, --max-perplexity-ratio) it searches for the most accurate artifact
    within all of them and says so when the dense model quantized wins; a budget
    nothing can meet is refused with the closest figure.

    OUT (a run folder) gets models/, artifacts/, checks/ (the search), reports/
    (full verification of what ships), build.json (to repeat it with --config),
    report.md/.html and frontier.png. Each stage is kept as it completes: rerun
    the same command after an interrupt to continue.

    Exit status: 0 passed; 1 error or refused budget; 3 a threshold missed;
    4 undecided (a speed figure too noisy on this machine to pass or fail)."""
    from gprune.methods import method_config
    from gprune_edge.build import build as run_build
    from gprune_edge.build_config import thorough_verify_settings
    from gprune_edge.build_report import runtimes, summary_table
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
    budgets = {k: v for k, v in dict(max_size_mb=max_size, min_decode_speedup=min_decode_speedup,
                                     max_memory_mb=max_memory, max_perplexity_ratio=max_perplexity_ratio).items()
               if v is not None}
    config = config.replace(prune=recipe, verify=settings, budgets=config.budgets.replace(**budgets), **overrides)
    _log_stages()
    result = run_build(config, out, overwrite, context=RunContext(**given(RunContext, run_settings)))
    click.echo(f"measured on {runtimes(result)}")
    click.echo(summary_table(result))
    for label, r in result.recovery.items():
        kl = (f": held-out KL to the dense model {r['heldout_kl_before']:.4f} -> {r['heldout_kl_after']:.4f}"
              if r["heldout_kl_after"] is not None else "")
        click.echo(f"{label} distilled on {r['tokens']:,} tokens{kl}")
    for artifact in result.artifacts:
        misses = "; ".join(artifact.gate.failures + artifact.gate.undecided)
        click.echo(f"{artifact.artifact}: gate {artifact.gate.verdict}" + (f": {misses}" if misses else ""))
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
