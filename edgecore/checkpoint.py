"""Saving models in the project's pruned-model format (docs/ARCHITECTURE.md): safetensors,
config, tokenizer, any files the caller adds (recipe.json, summaries), and the modeling
files for trust_remote_code. Uniform widths without compensation biases are saved as
the stock architecture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn

from edgecore.families import family_of, fits_stock_layout, stock_config
from edgecore.outputs import atomic_dir
from edgecore.pruned_format import PRUNED_FORMATS, configuration_gprune, is_pruned_format, modeling_gprune


def as_stock_if_possible(model: nn.Module) -> nn.Module:
    """The same model as its family's stock class when every layer has the same sizes."""
    config = model.config
    if not is_pruned_format(config) or not fits_stock_layout(config):
        return model
    stock_cfg = stock_config(config)
    stock = family_of(config).causal_lm(stock_cfg).to(model.dtype)
    stock.load_state_dict(model.state_dict())
    stock.generation_config = model.generation_config
    return stock.eval()


# transformers 5 names a tokenizer.json tokenizer "TokenizersBackend", a class 4.x lacks; both read
# "PreTrainedTokenizerFast" as the same tokenizer (same ids, no BOS added), so that is what we write
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def save_tokenizer(tokenizer, directory: Path) -> None:
    """The tokenizer's files, readable by transformers 4.x and 5.x alike."""
    tokenizer.save_pretrained(directory)
    path = Path(directory) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
        path.write_text(json.dumps(config, indent=2) + "\n")


def save_config(config, directory: Path) -> None:
    """config.json with head_dim written out (runtimes that derive it as hidden / heads go wrong once heads
    are pruned) and, for per-layer widths, the configuration and modeling files it references."""
    if getattr(config, "head_dim", None) is None:
        config.head_dim = config.hidden_size // config.num_attention_heads
    config.save_pretrained(directory)
    if is_pruned_format(config):
        _attach_remote_code(Path(directory), type(config))


def _attach_remote_code(directory: Path, config_class: type) -> None:
    """Copy the modeling files in and point config.json's auto_map at them."""
    for module in (configuration_gprune, modeling_gprune):
        shutil.copy(module.__file__, directory / Path(module.__file__).name)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {
        "AutoConfig": f"configuration_gprune.{config_class.__name__}",
        "AutoModelForCausalLM": f"modeling_gprune.{PRUNED_FORMATS[config_class].__name__}",
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def save_checkpoint(model: nn.Module, tokenizer, out: str | Path, overwrite: bool = False,
                    extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Write `model` (+ tokenizer, extra text or binary files such as recipe.json) to `out` atomically."""
    model = as_stock_if_possible(model)
    with atomic_dir(out, overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        save_config(model.config, tmp)  # again: head_dim explicit, remote code attached
        save_tokenizer(tokenizer, tmp)
        for name, content in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content)
    return Path(out)
