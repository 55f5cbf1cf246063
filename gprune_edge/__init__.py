"""The pipeline and the command line, on top of everything else: `build` (prune, export,
verify and gate for a device target), `export` (write an artifact, then check it on its
runtime), and the `gprune-edge` commands, each a thin wrapper over one of these calls."""
