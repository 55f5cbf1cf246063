"""`gprune-edge recover`: options -> DistillConfig -> recovery.distill.recover."""

from __future__ import annotations

import click

from edgecore.errors import GPruneError
from edgecore.run_context import RunContext
from gprune_edge.cli.config_options import TokenCount, config_options, given
from recovery.config import DistillConfig


@click.command(epilog="Repeat a run: gprune-edge recover PRUNED_DIR --config OUT/recovery.json --out OUT2")
@click.argument("pruned_dir", type=click.Path())
@click.option("--teacher", "-t", default=None,
              help="Dense model to learn from: built-in name, HF directory, .gguf file or hub id "
                   "[default: the model PRUNED_DIR/recipe.json was pruned from].")
@config_options(DistillConfig, types={"tokens": TokenCount()}, short={"tokens": "-n"}, required=("tokens",))
@config_options(RunContext, only=("device", "threads", "trust_remote_code"))
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Start from a recovery.json (e.g. a previous run's; its teacher too) or a bare config file; "
                   "options given here override it.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from the last checkpoint in OUT.partial/ (same settings needed; "
                   "a fixed-seed resumed run ends with the same weights as an uninterrupted one).")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the recovered checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def recover(pruned_dir, teacher, config_file, resume, out, overwrite, **options):
    """Recover a pruned model's quality by distilling it from the dense teacher.

    Trains PRUNED_DIR (the student; widths unchanged) to match the teacher's
    next-token distributions and writes OUT in the same pruned format, with
    recipe.json copied, recovery.json (settings, teacher, tokens seen, loss
    history, held-out KL before and after) and loss_curve.png. Runs
    data-parallel under `accelerate launch` or `torchrun`. --tokens is required
    unless --config."""
    from recovery.distill import load_config_file
    from recovery.distill import recover as run_recover

    base, base_teacher = (load_config_file(config_file) if config_file else (None, None))
    base = base.to_dict() if base else {}
    settings = given(DistillConfig, options)
    if "tokens" not in settings and "tokens" not in base:
        raise GPruneError("give --tokens (the token budget, e.g. 20k) or --config with a previous recovery.json")
    cfg = DistillConfig.from_dict({**base, **settings})
    context = RunContext(**given(RunContext, options))
    result = run_recover(pruned_dir, cfg, out, teacher=teacher or base_teacher, overwrite=overwrite, resume=resume,
                         context=context)
    if not result.written:
        return  # another process of a data-parallel run wrote OUT and says so
    history = result.history
    kl = (f"; held-out KL to the teacher {result.kl_before:.4f} -> {result.kl_after:.4f}"
          if result.kl_before is not None else "")
    click.echo(f"distilled {history.tokens_seen:,} tokens ({history.steps} steps) from {result.teacher}{kl}; "
               f"saved to {result.out}")
