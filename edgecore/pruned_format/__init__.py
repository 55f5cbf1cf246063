"""The pruned-model formats: config and modeling for per-layer widths, one per
decoder kind (Llama and its variants, Gemma 3), registered with the Auto classes on import."""

from transformers import AutoConfig, AutoModelForCausalLM

from edgecore.pruned_format.configuration_gprune import GPruneGemma3Config, GPruneLlamaConfig
from edgecore.pruned_format.modeling_gprune import GPruneGemma3ForCausalLM, GPruneLlamaForCausalLM

PRUNED_FORMATS = {GPruneLlamaConfig: GPruneLlamaForCausalLM, GPruneGemma3Config: GPruneGemma3ForCausalLM}
for _config, _model in PRUNED_FORMATS.items():
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForCausalLM.register(_config, _model, exist_ok=True)


def is_pruned_format(config) -> bool:
    """Whether `config` is one of the pruned formats (per-layer widths, remote code attached)."""
    return isinstance(config, tuple(PRUNED_FORMATS))


__all__ = ["GPruneGemma3Config", "GPruneGemma3ForCausalLM", "GPruneLlamaConfig", "GPruneLlamaForCausalLM",
           "PRUNED_FORMATS", "is_pruned_format"]
