"""Parameter accounting. Sparsity is the share of prunable parameters removed:
the attention (q, k, v, o) and FFN (gate, up, down) weights of the decoder
layers; embeddings, norms and the output layer are not prunable."""

from __future__ import annotations

from transformers import PretrainedConfig

from edgecore.families import LayerShape, family_of, layer_shapes


def neuron_params(hidden: int) -> int:
    """One FFN neuron: a row of gate and up, a column of down."""
    return 3 * hidden


def kv_group_params(shape: LayerShape, hidden: int, qkv_bias: bool) -> int:
    """One KV group: its KV head's k/v rows, its query heads' q rows and o columns."""
    heads = 2 * shape.q_per_kv + 2
    bias = (shape.q_per_kv + 2) * shape.head_dim if qkv_bias else 0
    return hidden * shape.head_dim * heads + bias


def layer_params(shape: LayerShape, hidden: int, qkv_bias: bool) -> int:
    return shape.ffn * neuron_params(hidden) + shape.kv_heads * kv_group_params(shape, hidden, qkv_bias)


def prunable_params(config: PretrainedConfig) -> int:
    qkv_bias = family_of(config).qkv_bias
    return sum(layer_params(s, config.hidden_size, qkv_bias) for s in layer_shapes(config))
