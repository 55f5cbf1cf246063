"""The pruned-model format: config and modeling for per-layer widths, registered
with the Auto classes on import."""

from transformers import AutoConfig, AutoModelForCausalLM

from edgecore.pruned_format.configuration_gprune import GPruneLlamaConfig
from edgecore.pruned_format.modeling_gprune import GPruneLlamaForCausalLM

AutoConfig.register(GPruneLlamaConfig.model_type, GPruneLlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(GPruneLlamaConfig, GPruneLlamaForCausalLM, exist_ok=True)

__all__ = ["GPruneLlamaConfig", "GPruneLlamaForCausalLM"]
