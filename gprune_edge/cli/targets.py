"""`gprune-edge targets`: the built-in device targets and their settings, or the check of a
profile file of your own."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--check", "profile", type=click.Path(), default=None,
              help="Validate this target profile .json (the fields of any built-in, see --json) and show it.")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON (a starting point for your own).")
def targets(profile, as_json):
    """List the built-in device targets: what each runs (FORMAT:DTYPE), its width alignment,
    threads, context, default sparsity, gate, and what a budget build searches. A profile
    .json of your own is passed to `build --target FILE`; --check validates it first."""
    from gprune_edge.targets import load_target, target_names

    profiles = [load_target(profile)] if profile else [load_target(name) for name in target_names()]
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    for p in profiles:
        gate = ", ".join(f"{k} {v:g}" for k, v in p.gate.items()) or "none"
        click.echo(f"{p.name}: {p.description}\n"
                   f"  artifacts {', '.join(p.artifacts)}; align {p.align}; threads {p.threads}; "
                   f"context {p.context_length}; default sparsity {p.sparsity:g}\n"
                   f"  gate: {gate}\n"
                   f"  budget search: {', '.join(p.search_types)} at sparsity "
                   f"{', '.join(f'{s:g}' for s in p.search_sparsities)}")
    if profile:
        click.echo(f"{profile}: valid target profile")
