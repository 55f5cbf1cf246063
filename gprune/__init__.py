"""Structured pruning of Llama-family models (GPrune-LLM and baselines): `gprune.prune.prune_model`
in memory, `gprune.prune.prune` file to file. Importing it registers the pruned-model format with
transformers' Auto classes (through edgecore)."""

from edgecore import GPruneError, GPruneLlamaConfig, GPruneLlamaForCausalLM, __version__

__all__ = ["GPruneError", "GPruneLlamaConfig", "GPruneLlamaForCausalLM", "__version__"]
