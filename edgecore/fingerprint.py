"""A cheap identity of a model's weights, for cache keys and resume checks."""

from __future__ import annotations

import hashlib

from edgecore.families import family_of


def model_fingerprint(model) -> str:
    """Cheap identity of the weights: config plus a checksum of a few tensors."""
    family = family_of(model.config)
    layers = family.decoder_layers(model)
    probes = [family.down_proj(layers[0]).weight, family.module(layers[-1], "gate_proj").weight, family.o_proj(layers[0]).weight]
    h = hashlib.sha1(model.config.to_json_string(use_diff=False).encode())
    for p in (t.detach() for t in probes):
        h.update(f"{float(p.double().sum()):.10e},{float(p.double().abs().sum()):.10e}".encode())
    return h.hexdigest()[:16]
