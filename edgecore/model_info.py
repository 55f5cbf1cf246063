"""`info`: what a model is, read from its files without loading the weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecore.errors import GPruneError, first_line
from edgecore.families import layer_shapes
from edgecore.loading import check_safetensors, load_config, resolve
from edgecore.params import prunable_params
from edgecore.safetensors_io import tensor_shapes


@dataclass
class ModelInfo:
    path: str
    format: str  # "hf" or "gguf"
    architecture: str
    layers: int
    hidden_size: int
    head_dim: int
    ffn_widths: list[int]
    q_heads: list[int]
    kv_heads: list[int]
    params: int
    prunable_params: int | None
    file_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def describe_model(spec: str | None) -> ModelInfo:
    source = resolve(spec)
    if not isinstance(source, Path):
        raise GPruneError(f"info reads local models only; {spec} is neither a built-in name nor a path")
    if source.suffix == ".gguf":
        return _describe_gguf(source)
    config = load_config(str(source))
    check_safetensors(source)
    params = sum(math.prod(shape) for shape in tensor_shapes(source).values())
    shapes = layer_shapes(config)
    return ModelInfo(str(source), "hf", (config.architectures or [config.model_type])[0], len(shapes),
                     config.hidden_size, shapes[0].head_dim, [s.ffn for s in shapes], [s.q_heads for s in shapes],
                     [s.kv_heads for s in shapes], params, prunable_params(config), _dir_bytes(source))


def _describe_gguf(path: Path) -> ModelInfo:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, struct errors, ...
        raise GPruneError(f"{path}: not a readable GGUF file ({first_line(e)})") from None

    def field(key, default=None):
        f = reader.get_field(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    n = int(field(f"{arch}.block_count", 0))

    def per_layer(key, default=0):
        v = field(f"{arch}.{key}", default)
        return [int(x) for x in v] if isinstance(v, list) else [int(v)] * n

    q = per_layer("attention.head_count")
    hidden = int(field(f"{arch}.embedding_length", 0))
    head_dim = int(field(f"{arch}.attention.key_length", hidden // max(q) if q and max(q) else 0))
    params = sum(int(t.n_elements) for t in reader.tensors)
    return ModelInfo(str(path), "gguf", arch, n, hidden, head_dim, per_layer("feed_forward_length"), q,
                     per_layer("attention.head_count_kv"), params, None, path.stat().st_size)


def format_info(info: ModelInfo) -> str:
    def runs(values):  # "1536 x30" instead of thirty numbers when layers agree
        return f"{values[0]} x{len(values)}" if len(set(values)) == 1 else " ".join(map(str, values))

    lines = [
        f"path:         {info.path}",
        f"format:       {info.format}",
        f"architecture: {info.architecture}",
        f"layers:       {info.layers}   hidden: {info.hidden_size}   head dim: {info.head_dim}",
        f"FFN widths:   {runs(info.ffn_widths)}",
        f"query heads:  {runs(info.q_heads)}",
        f"KV heads:     {runs(info.kv_heads)}",
        f"parameters:   {info.params:,}" + (f"  (prunable: {info.prunable_params:,})" if info.prunable_params else ""),
        f"file size:    {info.file_bytes / 2**20:.1f} MiB",
    ]
    return "\n".join(lines)
