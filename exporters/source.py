"""The model an export starts from: a pruned (or stock) checkpoint directory, checked before
anything is written, read lazily (one tensor or one decoder layer at a time: a GGUF export never
holds the model), and loaded whole in float32 only for what needs it (ONNX's tracing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from edgecore.errors import GPruneError
from edgecore.families import Family, LayerShape, family_of, layer_shapes
from edgecore.loading import load_config, load_model
from edgecore.model_layers import StreamedLayers
from edgecore.safetensors_io import StoredTensors, tensor_shapes, weight_files


@dataclass
class Source:
    path: Path
    layers: StreamedLayers  # the checkpoint, read a layer at a time
    tokenizer: object

    @property
    def config(self):
        return self.layers.config

    @property
    def family(self) -> Family:
        return self.layers.family

    @property
    def shapes(self) -> list[LayerShape]:
        return self.layers.shapes

    @property
    def tensors(self) -> StoredTensors:
        return self.layers.stored

    @cached_property
    def model(self) -> torch.nn.Module:
        """The whole model in float32, eval (loaded on first use)."""
        return load_model(str(self.path), dtype=torch.float32)[0]


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
    layers = StreamedLayers(path)
    return Source(path, layers, layers.tokenizer())

