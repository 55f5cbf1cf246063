"""The settings of a recovery run (knowledge distillation of a pruned student from its dense
teacher): one typed config, saved in the output's recovery.json so the run can be repeated
(`gprune-edge recover ... --config OUT/recovery.json`). Light on purpose (no torch): the CLI's
--help reads the defaults from here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig, option

SELF_SOURCE = "self"  # text the teacher generates itself (data-free distillation)
DEFAULT_DATA = ("wiki", "news", "code")  # the calibration distributions, train ("calib") halves
BUILTIN_SOURCES = ("wiki", "news", "science", "code", "dialogue", "boolq")  # edgecore.textdata.SOURCE_NAMES
MAX_SEQ_LEN = 8192
LR_FULL = 5e-5  # default learning rate when every weight trains, at LR_TOKENS tokens per step
LR_LORA = 2e-4  # default learning rate for LoRA adapters (they start at zero and need a larger step)
LR_TOKENS = 1024  # tokens per step the default rates are for (4 x 256); they scale with its square root
BATCH_BY_DEVICE = {"cpu": 4, "cuda": 32}  # default windows per step and process


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

    tokens: int = option(20_000, "Token budget: training tokens the student sees (20000, 20k, 2M; rounded up to whole "
                                 "steps). On CPU budgets are tens of thousands of tokens (SmolLM2-135M pruned 20% "
                                 "distilled at about 70 tokens/s on 2 idle CPU cores with the default batch, "
                                 "BENCHMARKS.md); millions need a GPU.")
    seq_len: int = option(256, "Tokens per training window.")
    batch_size: int | None = option(None, "Windows per optimizer step and process (data-parallel runs multiply "
                                          "it) [default: 4 on the CPU, 32 on CUDA].")
    lr: float | None = option(None, f"Peak learning rate (short warmup, cosine decay to a tenth) [default: "
                                    f"{LR_FULL:g} ({LR_LORA:g} with LoRA) at {LR_TOKENS} tokens per step, scaled "
                                    f"with the square root of the tokens per step: {LR_FULL * 4:g} at 32 x 512].")
    temperature: float = option(1.0, "KL temperature; 1 = forward KL(teacher||student) on the logits.")
    hidden_weight: float = option(0.0, "Weight of an extra loss matching every decoder layer's output to the "
                                       "teacher's (MSE, normalized by the teacher's mean square per layer); 0 = off.")
    data: list[str] = option(None, "Training text, comma-separated: wiki, news, science, code, dialogue, boolq "
                                   "(their calibration halves; the evaluation halves stay held out), self (text the "
                                   "teacher generates itself from varied prompts: data-free distillation, generated "
                                   "once and cached), hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or .txt/.jsonl files.",
                             default_factory=lambda: list(DEFAULT_DATA))
    weights: list[float] | None = option(None, "Mixture weights, one per --data source in its order (e.g. 3,1,1): "
                                               "each source's share of the budget [default: equal shares].")
    max_passes: int = option(4, "Passes over a named source at most, each at another offset: a share beyond "
                                "that comes from self (text the teacher generates) instead of memorising the text.")
    lora_rank: int = option(0, "0 trains every weight; N > 0 trains rank-N LoRA adapters on the attention and FFN "
                               "projections (less memory for optimizer state), merged into the weights at the end.")
    gradient_checkpointing: bool = option(False, "Recompute each decoder layer's activations in the backward pass "
                                                 "instead of keeping them: less memory (the most of it at large "
                                                 "batches), about a third more compute.")
    compile: bool = option(False, "Compile the student's forward and backward with torch.compile (inductor): a "
                                  "minute or more of compiling first, then faster steps where fusing the small "
                                  "operations pays (BENCHMARKS.md, 'torch.compile').")
    save_steps: int = option(50, "Checkpoint every this many steps into OUT.partial/ (for --resume); 0 = none.")
    seed: int = option(0, "Seed for the windows, their order and LoRA.")
    eval_windows: int = option(4, "Held-out windows per source for the KL to the teacher reported before and "
                                  "after; 0 = skip.")
    what: ClassVar[str] = "recovery config"
    moved: ClassVar[dict] = {"device": "a run setting now: --device"}

    def __post_init__(self):
        if isinstance(self.data, str):  # "wiki,news" from Python callers, as on the command line
            self.data = self.data.split(",")
        super().__post_init__()

    def validate(self) -> None:
        if self.tokens <= 0:
            raise GPruneError(f"tokens (the distillation budget) must be a positive number, got {self.tokens}")
        if not 2 <= self.seq_len <= MAX_SEQ_LEN:
            raise GPruneError(f"seq_len (tokens per training window) must be in [2, {MAX_SEQ_LEN}], got {self.seq_len}")
        if self.batch_size is not None and self.batch_size < 1:
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
        if self.weights is not None:
            if len(self.weights) != len(self.data):
                raise GPruneError(f"weights: {len(self.weights)} given for {len(self.data)} data sources "
                                  f"({', '.join(self.data)}); give one per source")
            if any(w <= 0 for w in self.weights):
                raise GPruneError(f"weights must be positive, got {', '.join(map(str, self.weights))}")
        if self.max_passes < 1:
            raise GPruneError(f"max_passes must be at least 1, got {self.max_passes}")

    def batch_for(self, device_type: str) -> int:
        """Windows per step and process on a device of this type ("cpu", "cuda")."""
        return self.batch_size or BATCH_BY_DEVICE.get(device_type, BATCH_BY_DEVICE["cpu"])

    def learning_rate(self, tokens_per_step: int = LR_TOKENS) -> float:
        """The peak learning rate for steps of `tokens_per_step` tokens (all processes together)."""
        if self.lr is not None:
            return self.lr
        return (LR_LORA if self.lora_rank else LR_FULL) * math.sqrt(tokens_per_step / LR_TOKENS)
