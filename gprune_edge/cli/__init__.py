"""The `gprune-edge` command line. Each command lives in its own module, parses its
options and calls one library function; heavy imports happen inside the command."""

from __future__ import annotations

import click

from edgecore.allocator import return_freed_memory
from edgecore.errors import GPruneError, first_line
from gprune_edge.cli.build import build
from gprune_edge.cli.export import export
from gprune_edge.cli.info import info
from gprune_edge.cli.prune import prune
from gprune_edge.cli.recover import recover
from gprune_edge.cli.targets import targets
from gprune_edge.cli.verify import verify


class _Cli(click.Group):
    """Turns GPruneError, and I/O errors the checks before the work could not foresee (a disk
    that fills up), into a one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GPruneError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or first_line(e)}") from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gprune-edge")
def cli():
    """Prune Llama-family LLMs structurally, export them for edge runtimes
    (llama.cpp, onnxruntime) and verify them against the dense model.

    MODEL arguments take a built-in name (smollm2-135m, the default), a local
    Hugging Face directory, a .gguf file, or a hub id."""
    return_freed_memory()  # a layer or a chunk at a time should look so to the OS (edgecore/allocator.py)


for command in (build, export, info, prune, recover, targets, verify):
    cli.add_command(command)


def main():
    cli()


if __name__ == "__main__":
    main()
