"""The foundation every other package stands on: model loading and family adapters,
the pruned-model format, parameter accounting, text data, pinned downloads, caches,
atomic outputs and the one error type. It imports nothing else of this project
(docs/ARCHITECTURE.md). Importing it registers the pruned-model format with
transformers' Auto classes."""

from importlib.metadata import PackageNotFoundError, version

from edgecore.errors import GPruneError
from edgecore.pruned_format import GPruneLlamaConfig, GPruneLlamaForCausalLM

try:
    __version__ = version("gprune-edge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["GPruneError", "GPruneLlamaConfig", "GPruneLlamaForCausalLM", "__version__"]
