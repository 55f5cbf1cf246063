"""Family adapters: the one place that knows how a Llama-family model names its
modules and tensors, lays out its heads, and which llama.cpp architecture it maps
to. Everything else works on `LayerShape`s and the accessors below and never asks
which family it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import (Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, PretrainedConfig, Qwen2ForCausalLM,
                          Qwen3ForCausalLM)

from edgecore.errors import GPruneError
from edgecore.pruned_format import (GPruneGemma3Config, GPruneGemma3ForCausalLM, GPruneLlamaConfig,
                                    GPruneLlamaForCausalLM, PRUNED_FORMATS)


@dataclass(frozen=True)
class LayerShape:
    ffn: int  # FFN width (neurons)
    q_heads: int
    kv_heads: int  # = KV groups; a group is one KV head plus the query heads that read it
    head_dim: int

    @property
    def q_per_kv(self) -> int:
        return self.q_heads // self.kv_heads


# Module paths inside a decoder layer, by role. Roles ending in "norm" are the layer's norms:
# "input_norm" before attention, "ffn_norm" before the FFN (its input is the residual stream after
# attention), and in Gemma 3 "attn_out_norm" / "ffn_out_norm" on each sublayer's output before
# the residual add.
LLAMA_LAYOUT = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj", "input_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
QK_NORM_LAYOUT = {**LLAMA_LAYOUT, "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm"}
GEMMA3_LAYOUT = {**QK_NORM_LAYOUT, "ffn_norm": "pre_feedforward_layernorm",
                 "attn_out_norm": "post_attention_layernorm", "ffn_out_norm": "post_feedforward_layernorm"}


@dataclass(frozen=True)
class Family:
    model_type: str
    causal_lm: type  # stock class a uniform-width checkpoint is saved as
    qkv_bias: bool
    gguf_arch: str  # llama.cpp architecture for uniform widths
    qk_norm: bool = False  # an RMS norm over head_dim on every query and key head, one weight shared by the heads
    gguf_per_layer: bool = True  # whether llama.cpp's per-layer architecture (`deci`) holds this family
    layers_path: str = "model.layers"  # where the decoder layers sit in the causal LM
    final_norm_path: str = "model.norm"  # the norm between the last decoder layer and the output layer
    layout: dict = field(default_factory=lambda: dict(LLAMA_LAYOUT))  # role -> module path inside a layer
    norm_offset: float = 0.0  # an RMS norm scales by weight + norm_offset (Gemma: 1 + weight; llama.cpp: weight)
    gguf_unread: tuple = ()  # config fields the llama.cpp architecture ignores: a model that sets one is refused
    pruned_config: type = GPruneLlamaConfig  # the pruned format's config and model for per-layer widths
    pruned_causal_lm: type = GPruneLlamaForCausalLM

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.layers_path)

    @property
    def body_path(self) -> str:
        """Where the decoder stack sits (embeddings, layers, final norm): "model" in the causal LM."""
        return self.layers_path.rsplit(".", 1)[0]

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.final_norm_path)

    @property
    def norm_roles(self) -> tuple[str, ...]:
        """The norms of a decoder layer: pruning heads or neurons leaves them whole."""
        return tuple(role for role in self.layout if role.endswith("norm"))

    @property
    def normalizes_sublayer_outputs(self) -> bool:
        """Whether attention and FFN outputs pass through a norm before the residual add (Gemma 3)."""
        return "attn_out_norm" in self.layout

    def module(self, layer: nn.Module, role: str) -> nn.Module:
        return layer.get_submodule(self.layout[role])

    def attention(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        return tuple(self.module(layer, r) for r in ("q_proj", "k_proj", "v_proj", "o_proj"))

    def ffn(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        return tuple(self.module(layer, r) for r in ("gate_proj", "up_proj", "down_proj"))

    def o_proj(self, layer: nn.Module) -> nn.Linear:
        """Attention output projection: its input channels are the query heads' outputs."""
        return self.module(layer, "o_proj")

    def down_proj(self, layer: nn.Module) -> nn.Linear:
        """FFN output projection: one input channel per neuron."""
        return self.module(layer, "down_proj")

    def ffn_norm(self, layer: nn.Module) -> nn.Module:
        """The norm before the FFN: its input is the residual stream after attention."""
        return self.module(layer, "ffn_norm")

    # Tensor names in a checkpoint's state dict.
    def tensor_name(self, layer: int, role: str, kind: str = "weight") -> str:
        return f"{self.layers_path}.{layer}.{self.layout[role]}.{kind}"

    def layer_of(self, tensor_name: str) -> int | None:
        """The decoder layer a state-dict tensor belongs to, None for embeddings, final norm, output."""
        prefix = self.layers_path + "."
        if not tensor_name.startswith(prefix):
            return None
        return int(tensor_name[len(prefix):].split(".", 1)[0])

    def role_of(self, tensor_name: str) -> str | None:
        """The role ("q_proj", "down_proj", ...) of a decoder-layer tensor, None elsewhere."""
        if self.layer_of(tensor_name) is None:
            return None
        path = tensor_name[len(self.layers_path) + 1:].split(".", 1)[1].rsplit(".", 1)[0]
        return next((role for role, p in self.layout.items() if p == path), None)

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
    # deci has no q/k norms, and llama.cpp's qwen3 does not load per-layer head and FFN counts (tried
    # with llama-cpp-python 0.3.36: this writer's per-layer arrays under arch qwen3 fail to load):
    # a Qwen3 GGUF needs uniform widths without compensation biases
    "qwen3": Family("qwen3", Qwen3ForCausalLM, qkv_bias=False, gguf_arch="qwen3", qk_norm=True,
                    gguf_per_layer=False, layout=dict(QK_NORM_LAYOUT)),
    # Gemma 3 text models (270M, 1B; the larger ones are multimodal): q/k norms, a norm on each
    # sublayer's output, (1 + weight) norms, a scaled embedding, sliding-window layers
    "gemma3_text": Family("gemma3_text", Gemma3ForCausalLM, qkv_bias=False, gguf_arch="gemma3", qk_norm=True,
                          gguf_per_layer=False, layout=dict(GEMMA3_LAYOUT), norm_offset=1.0,
                          gguf_unread=("attn_logit_softcapping", "final_logit_softcapping"),
                          pruned_config=GPruneGemma3Config, pruned_causal_lm=GPruneGemma3ForCausalLM),
}
SUPPORTED_MODEL_TYPES = (*FAMILIES, *(f.model_type for f in PRUNED_FORMATS))


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


def has_compensation_bias(config: PretrainedConfig) -> bool:
    return bool(getattr(config, "o_proj_bias", False) or getattr(config, "down_proj_bias", False))


def has_stock_shape(config: PretrainedConfig) -> bool:
    """Whether the family's stock config can describe this model's sizes: every layer the same
    size, with a head count that divides the hidden size (transformers' stock configs refuse any
    other, even with an explicit head_dim)."""
    shapes = layer_shapes(config)
    return is_uniform(shapes) and config.hidden_size % shapes[0].q_heads == 0


def fits_stock_layout(config: PretrainedConfig) -> bool:
    """Whether the family's stock architecture can hold this model: a stock shape and no
    compensation biases. Otherwise it needs the pruned format (gprune_llama, gprune_gemma3; GGUF `deci`)."""
    return has_stock_shape(config) and not has_compensation_bias(config)


# llama.cpp architectures whose rotary embedding rotates halves of each head as transformers does
# (NEOX style); the others (llama, deci) rotate adjacent pairs, so Q/K rows are permuted on export.
GGUF_NEOX_ROPE = {"qwen2", "qwen3", "gemma3"}


def gguf_arch(config: PretrainedConfig) -> str:
    """The llama.cpp architecture a model is written as: the family's own when the stock layout
    holds it, else `deci`, which is per layer for FFN width and head counts (docs/DESIGN.md, GGUF facts)."""
    family = family_of(config)
    unread = [k for k in family.gguf_unread if getattr(config, k, None)]
    if unread:
        raise GPruneError(f"llama.cpp's {family.gguf_arch} ignores {', '.join(unread)}, which this model sets: its "
                          "GGUF would compute something else; export ONNX")
    if fits_stock_layout(config):
        return family.gguf_arch
    if not family.gguf_per_layer:
        raise GPruneError(f"llama.cpp has no architecture for a {family.model_type} model with per-layer widths or "
                          f"compensation biases (deci has no q/k norms, {family.gguf_arch} no per-layer sizes): prune "
                          "with --option uniform=true --no-bias-compensation --no-reconstruct-bias for a GGUF, or "
                          "export ONNX")
    return "deci"


def pruned_config(source: PretrainedConfig, shapes: list[LayerShape], o_proj_bias: bool,
                  down_proj_bias: bool) -> PretrainedConfig:
    """The pruned-format config for `source` resized to `shapes`."""
    family = family_of(source)
    fields = family.pruned_config.__dataclass_fields__
    keep = {k: v for k, v in source.to_dict().items() if k in fields}
    for k in ("model_type", "architectures", "auto_map", "transformers_version", "attention_bias", "mlp_bias"):
        keep.pop(k, None)
    keep.update(
        intermediate_sizes=[s.ffn for s in shapes],
        num_attention_heads_per_layer=[s.q_heads for s in shapes],
        num_key_value_heads_per_layer=[s.kv_heads for s in shapes],
        intermediate_size=max(s.ffn for s in shapes),
        num_attention_heads=max(s.q_heads for s in shapes),
        num_key_value_heads=max(s.kv_heads for s in shapes),
        head_dim=shapes[0].head_dim,
        o_proj_bias=o_proj_bias or bool(getattr(source, "o_proj_bias", False)),
        down_proj_bias=down_proj_bias or bool(getattr(source, "down_proj_bias", False)),
        base_model_type=family.model_type,
    )
    if "qkv_bias" in fields:  # the Llama format holds the variants of its families
        keep.update(qkv_bias=family.qkv_bias, qk_norm=family.qk_norm)
    config = family.pruned_config(**keep)
    config.architectures = [family.pruned_causal_lm.__name__]
    return config


PER_LAYER_FIELDS = ("intermediate_sizes", "num_attention_heads_per_layer", "num_key_value_heads_per_layer",
                    "qkv_bias", "qk_norm", "o_proj_bias", "down_proj_bias", "base_model_type")


def stock_config(config: PretrainedConfig) -> PretrainedConfig:
    """The stock-family config equivalent to a uniform pruned config without compensation biases."""
    family = family_of(config)
    shape = layer_shapes(config)[0]
    d = config.to_dict()
    for k in ("model_type", "architectures", "auto_map", "transformers_version", *PER_LAYER_FIELDS):
        d.pop(k, None)
    d.update(intermediate_size=shape.ffn, num_attention_heads=shape.q_heads, num_key_value_heads=shape.kv_heads,
             head_dim=shape.head_dim)
    config_class = family.causal_lm.config_class
    out = config_class(**{k: v for k, v in d.items() if k in config_class.__dataclass_fields__})
    out.head_dim = shape.head_dim  # not a declared field of every family's config, but read by all of them
    out.architectures = [family.causal_lm.__name__]
    return out
