"""Surgery: cut FFN neurons and KV groups out of a model, giving a physically
smaller dense model in the pruned format. Which units to keep is decided
elsewhere; this module only slices weights and rounds widths."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from torch import nn

from edgecore.errors import GPruneError
from edgecore.families import LayerShape, family_of, layer_shapes, pruned_config


@dataclass
class LayerKeep:
    """Indices (into the layer's current units) of what survives, plus optional compensation biases."""
    ffn: torch.Tensor  # neuron indices
    kv_groups: torch.Tensor  # KV group indices
    down_bias: torch.Tensor | None = None  # [hidden] added to down_proj's output
    o_bias: torch.Tensor | None = None  # [hidden] added to o_proj's output


def check_alignment(shapes: list[LayerShape], align: int) -> None:
    if align < 1:
        raise GPruneError(f"alignment must be a positive integer, got {align}")
    narrowest = min(s.ffn for s in shapes)
    if align > narrowest:
        raise GPruneError(f"alignment {align} is wider than the narrowest FFN layer ({narrowest} neurons)")


def aligned_width(target: float, align: int, full: int) -> int:
    """`target` neurons rounded to a multiple of `align`, never 0 and never above `full`.
    The full width is always allowed, even when it is not a multiple of `align`."""
    if target >= full:
        return full
    width = int(round(target / align)) * align
    return min(max(width, align), full)


def _sliced_layer_state(family, i: int, layer: nn.Module, shape: LayerShape,
                        keep: LayerKeep) -> dict[str, torch.Tensor]:
    """Layer i's tensors, under their state-dict names, holding only the kept units."""
    groups, neurons = keep.kv_groups.sort().values, keep.ffn.sort().values
    q_rows, kv_rows = family.query_rows(shape, groups), family.kv_rows(shape, groups)
    # role -> (rows kept of its weight, columns kept, extra output bias from compensation)
    cuts = {"q_proj": (q_rows, None, None), "k_proj": (kv_rows, None, None), "v_proj": (kv_rows, None, None),
            "o_proj": (None, q_rows, keep.o_bias), "gate_proj": (neurons, None, None),
            "up_proj": (neurons, None, None), "down_proj": (None, neurons, keep.down_bias)}
    out = {}
    for role, (rows, cols, extra) in cuts.items():
        proj = family.module(layer, role)
        w = proj.weight if rows is None else proj.weight.index_select(0, rows)
        out[family.tensor_name(i, role)] = w if cols is None else w.index_select(1, cols)
        bias = proj.bias
        if bias is not None and rows is not None:
            bias = bias.index_select(0, rows)
        if extra is not None:
            bias = extra.to(proj.weight) if bias is None else bias + extra.to(bias)
        if bias is not None:
            out[family.tensor_name(i, role, "bias")] = bias
    for role in family.norm_roles:
        out[family.tensor_name(i, role)] = family.module(layer, role).weight
    return {k: t.detach().clone().contiguous() for k, t in out.items()}


@torch.no_grad()
def resize(model: nn.Module, keep: list[LayerKeep]) -> nn.Module:
    """A new model in the family's pruned format holding only the kept units of every layer (the
    source is left untouched)."""
    family, shapes = family_of(model.config), layer_shapes(model.config)
    if len(keep) != len(shapes):
        raise GPruneError(f"got keep-sets for {len(keep)} layers, the model has {len(shapes)}")
    new_shapes = []
    for i, (shape, k) in enumerate(zip(shapes, keep)):
        if len(k.ffn) == 0 or len(k.kv_groups) == 0:
            raise GPruneError(f"layer {i} would keep no FFN neurons or no KV groups; "
                              "every layer keeps at least one of each")
        if int(k.ffn.max()) >= shape.ffn or int(k.kv_groups.max()) >= shape.kv_heads or k.ffn.unique().numel() != len(k.ffn):
            raise GPruneError(f"layer {i}: keep-set indices out of range or repeated")
        new_shapes.append(LayerShape(len(k.ffn), len(k.kv_groups) * shape.q_per_kv, len(k.kv_groups), shape.head_dim))

    config = pruned_config(model.config, new_shapes, o_proj_bias=any(k.o_bias is not None for k in keep),
                           down_proj_bias=any(k.down_bias is not None for k in keep))
    state = {}
    for i, (layer, shape, k) in enumerate(zip(family.decoder_layers(model), shapes, keep)):
        state.update(_sliced_layer_state(family, i, layer, shape, k))
    for name, t in model.state_dict().items():
        if family.layer_of(name) is None:
            state[name] = t.detach().clone()

    with init_empty_weights(include_buffers=False):
        new = family.pruned_causal_lm(config)
    # biases that the config asks for but the source never had (e.g. o_proj in a layer without compensation)
    for name, p in new.state_dict().items():
        if name not in state and name.endswith(".bias"):
            state[name] = torch.zeros(p.shape, dtype=model.dtype)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = new.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"surgery state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        new.tie_weights()
    new.generation_config = model.generation_config
    return new.eval()


def with_biases(keep: list[LayerKeep], hidden: int) -> list[LayerKeep]:
    """The keep-sets with zero o_proj/down_proj compensation biases where they had none, so the
    pruned model has those biases to refit."""
    zero = torch.zeros(hidden)
    return [dataclasses.replace(k, down_bias=zero if k.down_bias is None else k.down_bias,
                                o_bias=zero if k.o_bias is None else k.o_bias) for k in keep]


def keep_all(config) -> list[LayerKeep]:
    return [LayerKeep(torch.arange(s.ffn), torch.arange(s.kv_heads)) for s in layer_shapes(config)]
