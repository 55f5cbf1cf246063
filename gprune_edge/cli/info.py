"""`gprune-edge info`: what a model is, from its files."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model, as_json):
    """Architecture, per-layer widths, parameter count and file size of MODEL."""
    from edgecore.model_info import describe_model, format_info

    described = describe_model(model)
    click.echo(json.dumps(described.to_dict(), indent=2) if as_json else format_info(described))
