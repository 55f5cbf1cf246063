"""Real model shapes without weights: the config fields of models people ship, written from their
published config.json files (the hub id beside each). Tests and benches turn them into
random-weight models, full size or cut to a few layers with the real widths, to measure cost and
correctness (not quality) on models that cannot be downloaded here."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from edgecore.errors import GPruneError
from edgecore.safetensors_io import ShardWriter


@dataclass(frozen=True)
class Shape:
    name: str
    hub_id: str  # whose config.json the fields come from
    model_type: str
    fields: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return self.fields["num_hidden_layers"]


def _llama(name, hub_id, hidden, ffn, layers, heads, kv, head_dim, tie, vocab=128256):
    return Shape(name, hub_id, "llama", dict(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=head_dim, vocab_size=vocab, tie_word_embeddings=tie, rms_norm_eps=1e-5,
        rope_theta=500000.0))


def _qwen(name, hub_id, model_type, hidden, ffn, layers, heads, kv, tie, head_dim=None, vocab=151936):
    fields = dict(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tie, rms_norm_eps=1e-6)
    return Shape(name, hub_id, model_type, fields | ({"head_dim": head_dim} if head_dim else {}))


def _gemma3(name, hub_id, hidden, ffn, layers, heads, kv):
    return Shape(name, hub_id, "gemma3_text", dict(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=256, vocab_size=262144, tie_word_embeddings=True, rms_norm_eps=1e-6,
        sliding_window=512, query_pre_attn_scalar=256))


CATALOGUE: dict[str, Shape] = {s.name: s for s in (
    Shape("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "llama", dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        head_dim=64, vocab_size=49152, tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0)),
    _llama("llama-3.2-1b", "meta-llama/Llama-3.2-1B", 2048, 8192, 16, 32, 8, 64, tie=True),
    _llama("llama-3.2-3b", "meta-llama/Llama-3.2-3B", 3072, 8192, 28, 24, 8, 128, tie=True),
    _llama("llama-3.1-8b", "meta-llama/Llama-3.1-8B", 4096, 14336, 32, 32, 8, 128, tie=False),
    Shape("mistral-7b", "mistralai/Mistral-7B-v0.3", "mistral", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=32768, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_theta=1000000.0, sliding_window=None)),
    _qwen("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", 896, 4864, 24, 14, 2, tie=True),
    _qwen("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "qwen2", 1536, 8960, 28, 12, 2, tie=True),
    _qwen("qwen2.5-7b", "Qwen/Qwen2.5-7B", "qwen2", 3584, 18944, 28, 28, 4, tie=False, vocab=152064),
    _qwen("qwen3-0.6b", "Qwen/Qwen3-0.6B", "qwen3", 1024, 3072, 28, 16, 8, tie=True, head_dim=128),
    _qwen("qwen3-1.7b", "Qwen/Qwen3-1.7B", "qwen3", 2048, 6144, 28, 16, 8, tie=True, head_dim=128),
    _qwen("qwen3-4b", "Qwen/Qwen3-4B", "qwen3", 2560, 9728, 36, 32, 8, tie=True, head_dim=128),
    _qwen("qwen3-8b", "Qwen/Qwen3-8B", "qwen3", 4096, 12288, 36, 32, 8, tie=False, head_dim=128),
    _gemma3("gemma-3-270m", "google/gemma-3-270m", 640, 2048, 18, 4, 1),
    _gemma3("gemma-3-1b", "google/gemma-3-1b-pt", 1152, 6912, 26, 4, 1),
)}


def shape_config(name: str, layers: int | None = None, vocab: int | None = None) -> PretrainedConfig:
    """The config of catalogue shape `name`, with `layers` decoder layers (default all) and a
    `vocab`-token vocabulary (default the real one; a small one keeps unit tests fast)."""
    if name not in CATALOGUE:
        raise GPruneError(f"unknown shape {name!r}; the catalogue has {', '.join(CATALOGUE)}")
    shape = CATALOGUE[name]
    fields = dict(shape.fields)
    if layers is not None:
        fields["num_hidden_layers"] = layers
    if vocab is not None:
        fields["vocab_size"] = vocab
    return AutoConfig.for_model(shape.model_type, **fields)


def write_random_checkpoint(name: str, directory: str | Path, dtype=torch.bfloat16, layers: int | None = None,
                            seed: int = 0, std: float = 0.02) -> Path:
    """A random-weight checkpoint of catalogue shape `name` written to `directory` (safetensors shards and
    config.json) one tensor at a time, so a shape larger than memory can be made on any machine."""
    config = shape_config(name, layers)
    with init_empty_weights(include_buffers=False):
        empty = AutoModelForCausalLM.from_config(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    writer, g = ShardWriter(directory), torch.Generator().manual_seed(seed)
    for tensor_name, p in empty.state_dict().items():
        if not (config.tie_word_embeddings and tensor_name == "lm_head.weight"):
            writer.add(tensor_name, torch.empty(p.shape, dtype=dtype).normal_(0, std, generator=g))
    writer.close()
    config.dtype = dtype
    config.save_pretrained(directory)
    return directory


def random_model(name: str, layers: int | None = None, vocab: int | None = None, dtype=torch.float32,
                 seed: int = 0, std: float = 0.02):
    """A random-weight model of catalogue shape `name` (see shape_config), in eval mode."""
    config = shape_config(name, layers, vocab)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    with torch.no_grad():  # the default init of some families leaves norms at zero: make every weight matter
        for p in model.parameters():
            p.normal_(0, std)
    return model
