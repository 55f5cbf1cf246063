"""The recipe: one typed, JSON-serializable description of a pruning run, saved
as recipe.json with every output so the run can be repeated from its folder."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GPruneError


@dataclass
class PruneRecipe:
    model: str = "smollm2-135m"  # built-in name, HF directory, .gguf file or hub id
    method: str = "gprune"
    sparsity: float = 0.3  # share of prunable (decoder attention + FFN) parameters removed
    align: int = 32  # FFN widths are rounded to a multiple of this
    seed: int = 0
    device: str = "auto"  # "auto" takes CUDA when present
    trust_remote_code: bool = False
    # calibration (methods that read activations: wanda-sp, flap, gprune)
    calib: list = field(default_factory=lambda: ["wiki", "news", "code"])  # text sources, see gprune.textdata
    n_samples: int = 32  # windows per source
    seq_len: int = 256  # tokens per window
    metric: str = "flap"  # gprune's base metric: wanda-sp or flap
    options: dict = field(default_factory=dict)  # method-specific settings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PruneRecipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"gprune_edge_version"})
        if unknown:
            raise GPruneError(f"recipe has unknown keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "PruneRecipe":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise GPruneError(f"{path}: cannot read recipe ({e})") from None
