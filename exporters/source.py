"""The model an export starts from: a pruned (or stock) checkpoint directory,
checked before anything is written, and loaded in float32 with its tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecore.errors import GPruneError
from edgecore.families import Family, LayerShape, family_of, layer_shapes
from edgecore.loading import load_config, load_model
from edgecore.safetensors_io import tensor_shapes, weight_files


@dataclass
class Source:
    path: Path
    model: torch.nn.Module  # float32, eval
    tokenizer: object
    family: Family
    shapes: list[LayerShape]

    @property
    def config(self):
        return self.model.config


def check_head_dims(path: Path, config, raw_config: dict) -> None:
    """Every layer's q/k/v rows must divide into that layer's heads with one shared head size
    (llama.cpp and the KV cache layout both need a single head_dim)."""
    weights, shapes, family = tensor_shapes(path), layer_shapes(config), family_of(config)
    per_layer = raw_config.get("head_dims") or raw_config.get("head_dim_per_layer")  # not in the format, but be explicit
    if per_layer and len(set(per_layer)) > 1:
        raise GPruneError(f"{path}: head dims differ across layers ({sorted(set(per_layer))}); "
                          "GGUF and ONNX exports need one head_dim for every layer")
    seen = set()
    for i, shape in enumerate(shapes):
        for proj, heads in (("q_proj", shape.q_heads), ("k_proj", shape.kv_heads), ("v_proj", shape.kv_heads)):
            rows = weights.get(family.tensor_name(i, proj), (None,))[0]
            if rows is None:
                continue
            if rows % heads:
                raise GPruneError(f"{path}: layer {i} {proj} has {rows} rows for {heads} heads")
            seen.add(rows // heads)
    if len(seen) > 1:
        raise GPruneError(f"{path}: head dims differ across layers ({sorted(seen)}); "
                          "GGUF and ONNX exports need one head_dim for every layer")
    if seen and seen != {shapes[0].head_dim}:
        raise GPruneError(f"{path}: weights imply head_dim {seen.pop()} but config.json says {shapes[0].head_dim}")


def load_source(pruned_dir: str | Path) -> Source:
    path = Path(pruned_dir).expanduser()
    if not path.is_dir():
        raise GPruneError(f"{path}: not a model directory")
    if not (path / "config.json").is_file():
        raise GPruneError(f"{path}: not a model directory (no config.json)")
    config = load_config(str(path))
    raw = json.loads((path / "config.json").read_text())
    if not weight_files(path):
        raise GPruneError(f"{path}: no model weights (*.safetensors)")
    check_head_dims(path, config, raw)
    model, tokenizer = load_model(str(path), dtype=torch.float32)
    return Source(path, model, tokenizer, family_of(model.config), layer_shapes(model.config))

