"""gprune-edge: structured pruning of Llama-family models for edge runtimes.
Importing the package registers the pruned-model format with transformers' Auto classes."""

__version__ = "0.1.0"

from edgecore.errors import GPruneError  # noqa: E402
from edgecore.pruned_format import GPruneLlamaConfig, GPruneLlamaForCausalLM  # noqa: E402

__all__ = ["GPruneError", "GPruneLlamaConfig", "GPruneLlamaForCausalLM", "__version__"]
