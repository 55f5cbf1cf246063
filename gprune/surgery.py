"""Surgery: cut FFN neurons and KV groups out of a model, giving a physically
smaller dense model in the pruned format. Which units to keep is decided
elsewhere; this module only slices weights and rounds widths."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from torch import nn

from .errors import GPruneError
from .families import LayerShape, family_of, layer_shapes, pruned_config
from .pruned_format import GPruneLlamaForCausalLM


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


def _rows(w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return w.index_select(0, idx).contiguous()


def _cols(w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return w.index_select(1, idx).contiguous()


def _sliced_layer_state(family, layer: nn.Module, shape: LayerShape, keep: LayerKeep) -> dict[str, torch.Tensor]:
    q, k, v, o = family.attention(layer)
    gate, up, down = family.ffn(layer)
    groups, neurons = keep.kv_groups.sort().values, keep.ffn.sort().values
    q_rows, kv_rows = family.query_rows(shape, groups), family.kv_rows(shape, groups)
    out = {
        "self_attn.q_proj.weight": _rows(q.weight, q_rows),
        "self_attn.k_proj.weight": _rows(k.weight, kv_rows),
        "self_attn.v_proj.weight": _rows(v.weight, kv_rows),
        "self_attn.o_proj.weight": _cols(o.weight, q_rows),
        "mlp.gate_proj.weight": _rows(gate.weight, neurons),
        "mlp.up_proj.weight": _rows(up.weight, neurons),
        "mlp.down_proj.weight": _cols(down.weight, neurons),
        "input_layernorm.weight": layer.input_layernorm.weight,
        "post_attention_layernorm.weight": layer.post_attention_layernorm.weight,
    }
    for name, proj, rows in (("q_proj", q, q_rows), ("k_proj", k, kv_rows), ("v_proj", v, kv_rows)):
        if proj.bias is not None:
            out[f"self_attn.{name}.bias"] = proj.bias.index_select(0, rows)
    for name, proj, extra in (("self_attn.o_proj", o, keep.o_bias), ("mlp.down_proj", down, keep.down_bias)):
        bias = proj.bias.detach().clone() if proj.bias is not None else None
        if extra is not None:
            bias = extra.to(o.weight) if bias is None else bias + extra.to(bias)
        if bias is not None:
            out[f"{name}.bias"] = bias
    return {k: t.detach().clone() for k, t in out.items()}


@torch.no_grad()
def resize(model: nn.Module, keep: list[LayerKeep]) -> GPruneLlamaForCausalLM:
    """A new model holding only the kept units of every layer (the source is left untouched)."""
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
        state.update({f"model.layers.{i}.{n}": t for n, t in _sliced_layer_state(family, layer, shape, k).items()})
    for name, t in model.state_dict().items():
        if not name.startswith("model.layers."):
            state[name] = t.detach().clone()

    with init_empty_weights(include_buffers=False):
        new = GPruneLlamaForCausalLM(config)
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


def keep_all(config) -> list[LayerKeep]:
    return [LayerKeep(torch.arange(s.ffn), torch.arange(s.kv_heads)) for s in layer_shapes(config)]
