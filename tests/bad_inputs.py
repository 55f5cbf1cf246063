"""Helpers for the tests/test_bad_inputs*.py catalogue: run the CLI, assert a clean refusal."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tiny import tiny_model, tiny_tokenizer

from gprune_edge.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *needles) -> str:
    """The command failed with status 1 and exactly one `Error:` line holding every needle."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def no_leftovers(out) -> None:
    """Nothing at `out` and no temporaries of it beside it."""
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def tiny_dir(path, **overrides):
    tiny_model("llama", **overrides).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def write_target(path, **fields):
    profile = {"name": "tiny", "description": "test target", "artifacts": ["gguf:f16"], "align": 8, "threads": 1,
               "context_length": 256, "version": 2}
    path.write_text(json.dumps({**profile, **fields}))
    return path
