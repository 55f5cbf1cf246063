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


def pruned_shapes(shapes: list[LayerShape], keep: list[LayerKeep]) -> list[LayerShape]:
    """The layers' shapes once only `keep` survives (refused in one line when a keep-set is impossible)."""
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
    return new_shapes


def empty_pruned_model(config, keep: list[LayerKeep]) -> nn.Module:
    """The pruned model for `config` cut to `keep`, its weights on "meta" (filled layer by layer)."""
    new_config = pruned_config(config, pruned_shapes(layer_shapes(config), keep),
                               o_proj_bias=any(k.o_bias is not None for k in keep),
                               down_proj_bias=any(k.down_bias is not None for k in keep))
    with init_empty_weights(include_buffers=False):
        return family_of(config).pruned_causal_lm(new_config).eval()


@torch.no_grad()
def fill_layer(family, i: int, dense: nn.Module, shape: LayerShape, keep: LayerKeep, pruned: nn.Module) -> None:
    """Give the empty pruned layer `pruned` the kept units of the dense layer i (on the dense layer's device);
    a bias the pruned format has but neither the source nor compensation gives is zero."""
    prefix = f"{family.layers_path}.{i}."
    state = {name[len(prefix):]: t for name, t in _sliced_layer_state(family, i, dense, shape, keep).items()}
    weight = family.down_proj(dense).weight
    for name, p in pruned.state_dict().items():
        if name not in state and name.endswith(".bias"):
            state[name] = torch.zeros(p.shape, dtype=weight.dtype, device=weight.device)
    pruned.load_state_dict(state, strict=True, assign=True)


@torch.no_grad()
def fill_outside_layers(pruned: nn.Module, tensors) -> None:
    """Give the pruned model the weights outside its decoder layers ((name, tensor) pairs: embeddings, final
    norm, output layer), tying the output layer to the embedding where the config says so."""
    state = {name: t.detach().clone() for name, t in tensors}
    if pruned.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    pruned.load_state_dict(state, strict=False, assign=True)
    if pruned.config.tie_word_embeddings:
        pruned.tie_weights()
    empty = [name for name, p in pruned.named_parameters() if p.is_meta]
    if empty:
        raise RuntimeError(f"surgery left weights unset: {empty[:5]}")


@torch.no_grad()
def resize(model: nn.Module, keep: list[LayerKeep]) -> nn.Module:
    """A new model in the family's pruned format holding only the kept units of every layer (the
    source is left untouched)."""
    family, shapes = family_of(model.config), layer_shapes(model.config)
    new = empty_pruned_model(model.config, keep)
    for i, (dense, pruned) in enumerate(zip(family.decoder_layers(model), family.decoder_layers(new))):
        fill_layer(family, i, dense, shapes[i], keep[i], pruned)
    fill_outside_layers(new, ((n, t) for n, t in model.state_dict().items() if family.layer_of(n) is None))
    new.generation_config = model.generation_config
    return new


def with_biases(keep: list[LayerKeep], hidden: int) -> list[LayerKeep]:
    """The keep-sets with zero o_proj/down_proj compensation biases where they had none, so the
    pruned model has those biases to refit."""
    zero = torch.zeros(hidden)
    return [dataclasses.replace(k, down_bias=zero if k.down_bias is None else k.down_bias,
                                o_bias=zero if k.o_bias is None else k.o_bias) for k in keep]


def keep_all(config) -> list[LayerKeep]:
    return [LayerKeep(torch.arange(s.ffn), torch.arange(s.kv_heads)) for s in layer_shapes(config)]
