"""The settings of a recovery run (knowledge distillation of a pruned student from its dense
teacher): one typed config, saved in the output's recovery.json so the run can be repeated
(`gprune-edge recover ... --config OUT/recovery.json`). Light on purpose (no torch): the CLI's
--help reads the defaults from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig

SELF_SOURCE = "self"  # text the teacher generates itself (data-free distillation)
DEFAULT_DATA = ("wiki", "news", "code")  # the calibration distributions, train ("calib") halves
BUILTIN_SOURCES = ("wiki", "news", "science", "code", "dialogue", "boolq")  # edgecore.textdata.SOURCE_NAMES
MAX_SEQ_LEN = 8192
LR_FULL = 5e-5  # default learning rate when every weight trains
LR_LORA = 2e-4  # default learning rate for LoRA adapters (they start at zero and need a larger step)


def check_source_name(name: str) -> str:
    """`name` if it names a data source (the file or hub dataset itself is read later), else a one-line error."""
    if name == SELF_SOURCE or name in BUILTIN_SOURCES or name.startswith("hf:") or name.endswith((".txt", ".jsonl")):
        return name
    raise GPruneError(f"unknown data source {name!r}; use {', '.join(BUILTIN_SOURCES)}, {SELF_SOURCE} (text the "
                      "teacher generates), hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or a .txt/.jsonl file")


def parse_data(spec) -> list[str]:
    """Source names from "a,b,c" or a list, stripped, de-duplicated, each checked."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not names:
        raise GPruneError("no data sources given; e.g. --data wiki,news,code (or self for data-free distillation)")
    return [check_source_name(n) for n in dict.fromkeys(names)]


@dataclass
class DistillConfig(TypedConfig):
    """Knowledge distillation of a pruned student from the dense teacher.

    Loss per token: temperature^2 * KL(teacher || student) on the softened next-token
    distributions, plus `hidden_weight` times the mean over decoder layers of the MSE between the
    student's and the teacher's layer outputs, each layer's MSE divided by the teacher's mean
    square there (so the few massive-activation channels do not dominate). The token budget
    sets the number of optimizer steps: ceil(tokens / (batch_size * seq_len * processes))."""

    tokens: int = 20_000  # token budget: training tokens seen (rounded up to whole steps)
    seq_len: int = 256  # tokens per training window
    batch_size: int = 4  # windows per optimizer step and process (data-parallel runs multiply it)
    lr: float | None = None  # peak learning rate; None: 5e-5 for full training, 2e-4 for LoRA
    temperature: float = 1.0  # KL temperature; 1.0 = forward KL(teacher||student) on the logits
    hidden_weight: float = 0.0  # weight of the per-layer hidden-state MSE term; 0 = off
    data: list[str] = field(default_factory=lambda: list(DEFAULT_DATA))  # sources, train halves; see parse_data
    lora_rank: int = 0  # 0 = train every weight; >0 = LoRA adapters of this rank, merged at the end
    save_steps: int = 50  # checkpoint for --resume every this many steps; 0 = none
    seed: int = 0
    device: str = "auto"  # "auto" takes CUDA when present
    eval_windows: int = 4  # held-out windows per source for the KL reported before/after; 0 = skip
    what: ClassVar[str] = "recovery config"

    def __post_init__(self):
        if isinstance(self.data, str):  # "wiki,news" from Python callers, as on the command line
            self.data = self.data.split(",")
        super().__post_init__()

    def validate(self) -> None:
        if self.tokens <= 0:
            raise GPruneError(f"tokens (the distillation budget) must be a positive number, got {self.tokens}")
        if not 2 <= self.seq_len <= MAX_SEQ_LEN:
            raise GPruneError(f"seq_len (tokens per training window) must be in [2, {MAX_SEQ_LEN}], got {self.seq_len}")
        if self.batch_size < 1:
            raise GPruneError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise GPruneError(f"lr (learning rate) must be in (0, 1), got {self.lr}")
        if self.temperature <= 0:
            raise GPruneError(f"temperature must be positive, got {self.temperature}")
        if self.hidden_weight < 0:
            raise GPruneError(f"hidden_weight must be >= 0 (0 = off), got {self.hidden_weight}")
        if self.lora_rank < 0:
            raise GPruneError(f"lora_rank must be >= 0 (0 = train every weight), got {self.lora_rank}")
        if self.save_steps < 0:
            raise GPruneError(f"save_steps must be >= 0 (0 = no checkpoints), got {self.save_steps}")
        if self.eval_windows < 0:
            raise GPruneError(f"eval_windows must be >= 0 (0 = skip the held-out KL), got {self.eval_windows}")
        self.data = parse_data(self.data)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (LR_LORA if self.lora_rank else LR_FULL)
