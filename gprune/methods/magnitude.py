"""Magnitude: the activation-free baseline. A unit's score is the L2 norm of all
the weights it owns. FFN neurons compete across layers (so widths differ per
layer; options.allocation="uniform" gives every layer the same share instead); KV groups are
removed in the same number from every layer."""

from __future__ import annotations

import torch

from ..allocation import global_ffn_counts, keep_top, uniform_counts
from ..families import family_of, layer_shapes
from . import PrunePlan


@torch.no_grad()
def neuron_norms(family, layer) -> torch.Tensor:
    gate, up, down = family.ffn(layer)
    return (gate.weight.pow(2).sum(1) + up.weight.pow(2).sum(1) + down.weight.pow(2).sum(0)).sqrt()


@torch.no_grad()
def kv_group_norms(family, layer, shape) -> torch.Tensor:
    q, k, v, o = family.attention(layer)
    per_group = lambda w: w.reshape(shape.kv_heads, -1).pow(2).sum(1)  # noqa: E731  rows are grouped in order
    o_cols = o.weight.t().reshape(shape.kv_heads, -1).pow(2).sum(1)
    return (per_group(q.weight) + per_group(k.weight) + per_group(v.weight) + o_cols).sqrt()


def plan(model, tokenizer, recipe) -> PrunePlan:
    from .common import check_budget

    check_budget(model, recipe)
    family, shapes = family_of(model.config), layer_shapes(model.config)
    layers = family.decoder_layers(model)
    ffn_scores = [neuron_norms(family, layer) for layer in layers]
    kv_scores = [kv_group_norms(family, layer, s) for layer, s in zip(layers, shapes)]
    hidden, qkv_bias = model.config.hidden_size, family.qkv_bias
    # options.allocation: "global" (FFN neurons compete across layers by norm) or "uniform" per layer
    if recipe.options.get("allocation", "global") == "uniform":
        counts = uniform_counts(shapes, hidden, qkv_bias, recipe.sparsity, recipe.align)
    else:
        counts = global_ffn_counts(ffn_scores, shapes, hidden, qkv_bias, recipe.sparsity, recipe.align)
    return PrunePlan(keep_top(ffn_scores, kv_scores, counts))
