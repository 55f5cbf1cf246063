"""`python -m gprune_edge ...` is the `gprune-edge` command."""

from gprune_edge.cli import main

main()
