"""`gprune-edge targets`: the built-in device targets and their settings, or the check of a
profile file of your own."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--check", "profile", type=click.Path(), default=None,
              help="Validate this target profile .json (the fields of any built-in, see --json) and show it; "
                   "a profile of the first layout is shown converted.")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON (a starting point for your own).")
def targets(profile, as_json):
    """List the built-in device targets: the artifact types each runtime takes (the first is
    the reference), width alignment, threads, context, and the budgets a build must meet, with
    where each figure comes from. A profile .json of your own is passed to
    `build --target FILE`; --check validates it first."""
    from gprune_edge.targets import BUDGET_FIELDS, load_target, target_names

    profiles = [load_target(profile)] if profile else [load_target(name) for name in target_names()]
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    for p in profiles:
        budgets = ", ".join(f"{name} {getattr(p, name):g}" for name in BUDGET_FIELDS
                            if getattr(p, name) is not None) or "none"
        click.echo(f"{p.name}: {p.description}\n"
                   f"  artifacts {', '.join(p.artifacts)} on {p.runtime_name}; align {p.align}; threads {p.threads}; "
                   f"context {p.context_length}\n"
                   f"  budgets: {budgets}")
        for figure, source in p.sources.items():
            click.echo(f"    {figure}: {source}")
    if profile:
        click.echo(f"{profile}: valid target profile")
