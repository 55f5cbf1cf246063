"""Family adapters: the one place that knows how a Llama-family model names its
modules and lays out its heads. The core works on `LayerShape`s and the
projection accessors below and never asks which family it holds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaForCausalLM, MistralForCausalLM, PretrainedConfig, Qwen2ForCausalLM

from .errors import GPruneError
from .pruned_format import GPruneLlamaConfig, GPruneLlamaForCausalLM


@dataclass(frozen=True)
class LayerShape:
    ffn: int  # FFN width (neurons)
    q_heads: int
    kv_heads: int  # = KV groups; a group is one KV head plus the query heads that read it
    head_dim: int

    @property
    def q_per_kv(self) -> int:
        return self.q_heads // self.kv_heads


@dataclass(frozen=True)
class Family:
    model_type: str
    causal_lm: type  # stock class a uniform-width checkpoint is saved as
    qkv_bias: bool
    gguf_arch: str  # llama.cpp architecture for uniform widths

    # All supported families share these module names; a family that differs overrides them.
    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def attention(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        a = layer.self_attn
        return a.q_proj, a.k_proj, a.v_proj, a.o_proj

    def ffn(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        m = layer.mlp
        return m.gate_proj, m.up_proj, m.down_proj

    # Head layout: KV group g is KV head g and query heads g*r .. g*r+r-1 (transformers' repeat_kv).
    def query_rows(self, shape: LayerShape, groups: torch.Tensor) -> torch.Tensor:
        """Rows of q_proj (= columns of o_proj) owned by the given KV groups."""
        heads = (groups[:, None] * shape.q_per_kv + torch.arange(shape.q_per_kv)).flatten()
        return (heads[:, None] * shape.head_dim + torch.arange(shape.head_dim)).flatten()

    def kv_rows(self, shape: LayerShape, groups: torch.Tensor) -> torch.Tensor:
        """Rows of k_proj and v_proj owned by the given KV groups."""
        return (groups[:, None] * shape.head_dim + torch.arange(shape.head_dim)).flatten()


FAMILIES = {
    "llama": Family("llama", LlamaForCausalLM, qkv_bias=False, gguf_arch="llama"),
    "mistral": Family("mistral", MistralForCausalLM, qkv_bias=False, gguf_arch="llama"),
    "qwen2": Family("qwen2", Qwen2ForCausalLM, qkv_bias=True, gguf_arch="qwen2"),
}
SUPPORTED_MODEL_TYPES = (*FAMILIES, GPruneLlamaConfig.model_type)


def family_of(config: PretrainedConfig) -> Family:
    """The family a config (stock or pruned) descends from."""
    model_type = getattr(config, "base_model_type", None) or config.model_type
    if model_type not in FAMILIES:
        archs = ",".join(getattr(config, "architectures", None) or []) or config.model_type
        raise GPruneError(f"unsupported architecture {archs!r} (model_type {config.model_type!r}); "
                          f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return FAMILIES[model_type]


def layer_shapes(config: PretrainedConfig) -> list[LayerShape]:
    """Per-layer sizes of a stock or pruned config."""
    family_of(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    n = config.num_hidden_layers
    ffn = getattr(config, "intermediate_sizes", None) or [config.intermediate_size] * n
    q = getattr(config, "num_attention_heads_per_layer", None) or [config.num_attention_heads] * n
    kv = getattr(config, "num_key_value_heads_per_layer", None) or [
        config.num_key_value_heads or config.num_attention_heads] * n
    return [LayerShape(f, h, k, head_dim) for f, h, k in zip(ffn, q, kv)]


def is_uniform(shapes: list[LayerShape]) -> bool:
    return len(set(shapes)) == 1


def pruned_config(source: PretrainedConfig, shapes: list[LayerShape], o_proj_bias: bool,
                  down_proj_bias: bool) -> GPruneLlamaConfig:
    """The pruned-format config for `source` resized to `shapes`."""
    family = family_of(source)
    keep = {k: v for k, v in source.to_dict().items() if k in GPruneLlamaConfig.__dataclass_fields__}
    for k in ("model_type", "architectures", "auto_map", "transformers_version", "attention_bias", "mlp_bias",
              "sliding_window", "use_sliding_window", "max_window_layers", "layer_types"):
        keep.pop(k, None)
    keep.update(
        intermediate_sizes=[s.ffn for s in shapes],
        num_attention_heads_per_layer=[s.q_heads for s in shapes],
        num_key_value_heads_per_layer=[s.kv_heads for s in shapes],
        intermediate_size=max(s.ffn for s in shapes),
        num_attention_heads=max(s.q_heads for s in shapes),
        num_key_value_heads=max(s.kv_heads for s in shapes),
        head_dim=shapes[0].head_dim,
        qkv_bias=family.qkv_bias,
        o_proj_bias=o_proj_bias or bool(getattr(source, "o_proj_bias", False)),
        down_proj_bias=down_proj_bias or bool(getattr(source, "down_proj_bias", False)),
        base_model_type=family.model_type,
    )
    config = GPruneLlamaConfig(**keep)
    config.architectures = [GPruneLlamaForCausalLM.__name__]
    return config


def stock_config(config: GPruneLlamaConfig) -> PretrainedConfig:
    """The stock-family config equivalent to a uniform pruned config without compensation biases."""
    family = family_of(config)
    shape = layer_shapes(config)[0]
    d = config.to_dict()
    for k in ("model_type", "architectures", "auto_map", "intermediate_sizes", "num_attention_heads_per_layer",
              "num_key_value_heads_per_layer", "qkv_bias", "o_proj_bias", "down_proj_bias", "base_model_type",
              "transformers_version"):
        d.pop(k, None)
    d.update(intermediate_size=shape.ffn, num_attention_heads=shape.q_heads, num_key_value_heads=shape.kv_heads,
             head_dim=shape.head_dim)
    config_class = family.causal_lm.config_class
    out = config_class(**{k: v for k, v in d.items() if k in config_class.__dataclass_fields__})
    out.head_dim = shape.head_dim  # not a declared field of every family's config, but read by all of them
    out.architectures = [family.causal_lm.__name__]
    return out
