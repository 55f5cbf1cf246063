"""Write a pruned checkpoint as an unquantized GGUF file (f32, f16, bf16) with
gguf-py, as the llama.cpp architecture edgecore.families.gguf_arch picks: the
family's stock one for uniform widths, else `deci`, whose FFN width and head
counts are per layer (DESIGN.md, GGUF facts)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from edgecore.errors import GPruneError
from edgecore.families import GGUF_NEOX_ROPE, gguf_arch
from edgecore.model_layers import weight_name
from exporters.gguf_vocab import add_tokenizer
from exporters.source import Source

DIRECT_TYPES = {  # dtype -> (tensor type of 2-D weights, GGUF file type)
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
ROPE_FREQS = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
ROTARY_HEADS = {"q_proj": "q_heads", "k_proj": "kv_heads"}  # roles whose rows are rotary heads -> LayerShape field


def rotary_interleave(w: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers rotates the two halves of each head; llama.cpp's archs outside GGUF_NEOX_ROPE
    rotate adjacent pairs. Reorder each head's rows (or bias entries) from [half0, half1] to
    interleaved pairs."""
    head_dim = w.shape[0] // heads
    return w.reshape(heads, 2, head_dim // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _rope_parameters(config) -> dict:
    params = dict(getattr(config, "rope_parameters", None) or {})
    # per attention kind (Gemma 3): the GGUF holds the global layers' rope; llama.cpp fixes the
    # sliding layers' base at 10000, as Gemma 3 has it
    params = dict(params.get("full_attention", params))
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params.setdefault("rope_type", "default")
    return params


def add_rope(writer: gguf.GGUFWriter, config, head_dim: int) -> torch.Tensor | None:
    """Rope base and scaling metadata; returns the rope_freqs tensor that Llama-3 scaling needs."""
    rope = _rope_parameters(config)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = rope["rope_type"]
    if kind == "default":
        return None
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        return None
    if kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope.get("original_max_position_embeddings")
                                                 or config.max_position_embeddings))
        return None
    if kind == "llama3":
        # llama.cpp divides each rotary frequency by rope_freqs[i]: the ratio of plain to scaled frequencies.
        scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
        plain = 1.0 / (float(rope["rope_theta"]) ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        return (plain / scaled.double()).float()
    raise GPruneError(f"rope scaling {kind!r} is not supported by the GGUF exporter")


def add_hparams(writer: gguf.GGUFWriter, source: Source, arch: str, file_type: gguf.LlamaFileType) -> None:
    config, shapes = source.config, source.shapes
    writer.add_name(source.path.name)
    writer.add_file_type(file_type)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(len(shapes))
    if arch == "deci":
        writer.add_feed_forward_length([s.ffn for s in shapes])
        writer.add_head_count([s.q_heads for s in shapes])
        writer.add_head_count_kv([s.kv_heads for s in shapes])
    else:
        writer.add_feed_forward_length(shapes[0].ffn)
        writer.add_head_count(shapes[0].q_heads)
        writer.add_head_count_kv(shapes[0].kv_heads)
    writer.add_key_length(shapes[0].head_dim)
    writer.add_value_length(shapes[0].head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    if getattr(config, "layer_types", None) and "sliding_attention" in config.layer_types:
        writer.add_sliding_window(int(config.sliding_window))


def _as_gguf_array(t: torch.Tensor, tensor_type: gguf.GGMLQuantizationType) -> np.ndarray:
    """The tensor as written: 1-D tensors (norms, biases) stay f32, as llama.cpp expects."""
    t = t.detach().float()
    if _stored_type(tuple(t.shape), tensor_type) == gguf.GGMLQuantizationType.F32:
        return t.numpy()
    if tensor_type == gguf.GGMLQuantizationType.F16:
        return t.to(torch.float16).numpy()
    # bf16 by torch's rounding (to nearest even, as ggml's): gguf-py's own makes 64-bit temporaries, 8 GB for an
    # 8B model's embedding
    return t.to(torch.bfloat16).view(torch.int16).numpy()


def _stored_type(shape: tuple[int, ...], tensor_type: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    return gguf.GGMLQuantizationType.F32 if len(shape) == 1 else tensor_type


def _add_tensor_info(writer: gguf.GGUFWriter, name: str, shape: tuple[int, ...],
                     tensor_type: gguf.GGMLQuantizationType) -> None:
    """Declare a tensor before its data is written (the header lists every tensor first)."""
    stored = _stored_type(shape, tensor_type)
    n_bytes = int(np.prod(shape)) * (4 if stored == gguf.GGMLQuantizationType.F32 else 2)
    writer.add_tensor_info(name, shape, np.dtype(np.float32), n_bytes, raw_dtype=stored)


def gguf_names(source: Source, arch: str) -> dict[str, str]:
    """GGUF name -> checkpoint tensor name, in llama.cpp's naming, in the checkpoint's order."""
    arch_enum = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    names = gguf.get_tensor_name_map(arch_enum, len(source.shapes))
    skeleton = source.layers.skeleton
    # tied: llama.cpp reads token_embd for the output when output.weight is absent
    head = weight_name(skeleton, skeleton.get_output_embeddings())
    out = {}
    for hf_name in source.tensors.names():
        if hf_name == head and source.config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GPruneError(f"no GGUF name for tensor {hf_name}")
        out[name] = hf_name
    return out


def gguf_tensor(source: Source, hf_name: str, arch: str) -> torch.Tensor:
    """A checkpoint tensor read in float32, in llama.cpp's rotary layout and norm convention."""
    t = source.layers.read(hf_name)
    family, role = source.family, source.family.role_of(hf_name)
    if arch not in GGUF_NEOX_ROPE and role in ROTARY_HEADS:
        shape = source.shapes[family.layer_of(hf_name)]
        t = rotary_interleave(t, getattr(shape, ROTARY_HEADS[role]))
    if hf_name == family.final_norm_path + ".weight" or (role in family.norm_roles and hf_name.endswith(".weight")):
        t = t + family.norm_offset  # llama.cpp's norms scale by the weight alone
    return t


def write_gguf(source: Source, path, dtype: str) -> str:
    """Write `source` to `path` as f32/f16/bf16, one tensor in memory at a time (gguf-py writes the
    header first, then each tensor's data); returns the llama.cpp architecture used."""
    tensor_type, file_type = DIRECT_TYPES[dtype]
    arch = gguf_arch(source.config)
    names = gguf_names(source, arch)
    writer = gguf.GGUFWriter(str(path), arch)
    try:
        add_hparams(writer, source, arch, file_type)
        rope_freqs = add_rope(writer, source.config, source.shapes[0].head_dim)
        add_tokenizer(writer, source.tokenizer, source.config.vocab_size)
        if rope_freqs is not None:
            _add_tensor_info(writer, ROPE_FREQS, tuple(rope_freqs.shape), gguf.GGMLQuantizationType.F32)
        for name, hf_name in names.items():
            _add_tensor_info(writer, name, source.tensors.shape(hf_name), tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if rope_freqs is not None:
            writer.write_tensor_data(rope_freqs.numpy())
        for name, hf_name in tqdm(names.items(), desc=f"writing {Path(path).name}", unit="tensor"):
            writer.write_tensor_data(_as_gguf_array(gguf_tensor(source, hf_name, arch), tensor_type))
    finally:
        writer.close()
    return arch
