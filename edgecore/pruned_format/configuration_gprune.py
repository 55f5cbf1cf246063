"""Configs of structurally pruned models: per-layer FFN width, query heads and KV
heads, a uniform head dimension, and flags for what bias compensation adds. The
Llama format also holds what Mistral and Qwen 2/3 add to the Llama layer (q/k/v
biases, q/k norms); Gemma 3 has its own. Self-contained (imports only
transformers) because it is copied into every checkpoint for trust_remote_code."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import Gemma3TextConfig, LlamaConfig, Qwen3Config


def _fill_per_layer(config) -> None:
    """Per-layer lists default to the uniform sizes; check them against the layer count."""
    n = config.num_hidden_layers
    if config.head_dim is None:
        config.head_dim = config.hidden_size // config.num_attention_heads
    config.intermediate_sizes = list(config.intermediate_sizes or [config.intermediate_size] * n)
    config.num_attention_heads_per_layer = list(config.num_attention_heads_per_layer or [config.num_attention_heads] * n)
    config.num_key_value_heads_per_layer = list(
        config.num_key_value_heads_per_layer or [config.num_key_value_heads or config.num_attention_heads] * n)
    for name in ("intermediate_sizes", "num_attention_heads_per_layer", "num_key_value_heads_per_layer"):
        if len(getattr(config, name)) != n:
            raise ValueError(f"{name} has {len(getattr(config, name))} entries for {n} layers")
    for q, kv in zip(config.num_attention_heads_per_layer, config.num_key_value_heads_per_layer):
        if kv < 1 or q % kv:
            raise ValueError(f"query heads ({q}) must be a positive multiple of KV heads ({kv}) in every layer")


@strict
class GPruneLlamaConfig(LlamaConfig):
    model_type = "gprune_llama"

    intermediate_sizes: list[int] | None = None
    num_attention_heads_per_layer: list[int] | None = None
    num_key_value_heads_per_layer: list[int] | None = None
    qkv_bias: bool = False  # Qwen2-style q/k/v biases
    qk_norm: bool = False  # Qwen3-style RMS norm of every query and key head (one weight over head_dim, shared)
    o_proj_bias: bool = False  # added by bias compensation
    down_proj_bias: bool = False  # added by bias compensation
    base_model_type: str = "llama"  # the family the model was pruned from

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _fill_per_layer(self)

    def validate_architecture(self):
        """LlamaConfig's check that the head count divides the hidden size holds only when head_dim
        is derived from them; here head_dim is explicit and a pruned layer keeps any number of heads
        (Llama-3.2-1B: 24 of 32 heads of 64 on hidden 2048). The per-layer counts are checked above."""

    def layer_config(self, layer_idx: int) -> LlamaConfig | Qwen3Config:
        """A plain LlamaConfig with this layer's sizes, to build the stock decoder layer from. The
        head counts are set after construction: LlamaConfig refuses counts that do not divide the
        hidden size even with an explicit head_dim, which is all its attention layer reads."""
        config = (Qwen3Config if self.qk_norm else LlamaConfig)(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_sizes[layer_idx],
            num_attention_heads=1,
            num_key_value_heads=1,
            head_dim=self.head_dim,
            hidden_act=self.hidden_act,
            rms_norm_eps=self.rms_norm_eps,
            attention_bias=False,
            mlp_bias=False,
            attention_dropout=self.attention_dropout,
            num_hidden_layers=self.num_hidden_layers,
            vocab_size=self.vocab_size,
        )
        config.num_attention_heads = self.num_attention_heads_per_layer[layer_idx]
        config.num_key_value_heads = self.num_key_value_heads_per_layer[layer_idx]
        return config


@strict
class GPruneGemma3Config(Gemma3TextConfig):
    model_type = "gprune_gemma3"

    intermediate_sizes: list[int] | None = None
    num_attention_heads_per_layer: list[int] | None = None
    num_key_value_heads_per_layer: list[int] | None = None
    o_proj_bias: bool = False  # added by bias compensation
    down_proj_bias: bool = False  # added by bias compensation
    base_model_type: str = "gemma3_text"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _fill_per_layer(self)

    def validate_architecture(self):
        """As GPruneLlamaConfig's: head_dim is explicit, any head count goes."""

    def layer_config(self, layer_idx: int) -> Gemma3TextConfig:
        """This config with one layer's sizes, to build the stock Gemma 3 decoder layer from (it
        also reads the layer's kind, sliding or full attention, from here)."""
        config = copy.copy(self)
        config.intermediate_size = self.intermediate_sizes[layer_idx]
        config.num_attention_heads = self.num_attention_heads_per_layer[layer_idx]
        config.num_key_value_heads = self.num_key_value_heads_per_layer[layer_idx]
        return config
