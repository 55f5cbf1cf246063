"""A cheap identity of a model's weights, for cache keys and resume checks."""

from __future__ import annotations

import hashlib
import json

from edgecore.model_layers import model_layers

# where and how it was stored or loaded, not what it is
UNWEIGHED_FIELDS = ("torch_dtype", "dtype", "transformers_version", "_name_or_path")


def model_fingerprint(model) -> str:
    """Cheap identity of the weights: config plus a checksum of a few tensors. `model`: in memory or
    `ModelLayers`; a checkpoint gives the same fingerprint streamed or loaded, in any stored precision
    that holds the same values."""
    layers = model_layers(model)
    config = {k: v for k, v in layers.config.to_dict().items() if k not in UNWEIGHED_FIELDS}
    h = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode())
    last = len(layers) - 1
    for p in (layers.weight(0, "down_proj"), layers.weight(last, "gate_proj"), layers.weight(0, "o_proj")):
        h.update(f"{float(p.double().sum()):.10e},{float(p.double().abs().sum()):.10e}".encode())
    return h.hexdigest()[:16]
