"""What a verification measures and how: the settings `verify` takes, recorded in the
report's "settings". Typed configs (edgecore.typed_config), so a build config can embed
them and read them back from JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from edgecore.typed_config import TypedConfig
from runtime_checks.accuracy import DEFAULT_SEQ_LEN, DEFAULT_WINDOWS
from runtime_checks.tasks import TASK_NAMES

DEFAULT_DISTRIBUTIONS = ("wiki", "news", "science", "code")

DEFAULT_PAIRS = 7
DEFAULT_PREFILL_TOKENS = 512
DEFAULT_PROMPT_TOKENS = 64
DEFAULT_DECODE_TOKENS = 64


@dataclass
class SpeedSettings(TypedConfig):
    """How speed.compare_speed times a candidate against its baseline. In a report's speed
    section the token counts are those actually used (the fixed text may be shorter)."""
    pairs: int = DEFAULT_PAIRS
    prefill_tokens: int = DEFAULT_PREFILL_TOKENS  # one forward over this many tokens: prefill tok/s
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS  # the decode run's prompt: its first token gives TTFT
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    threads: int | None = None
    what: ClassVar[str] = "speed settings"


@dataclass
class VerifySettings(TypedConfig):
    tasks: tuple[str, ...] = TASK_NAMES
    distributions: tuple[str, ...] = DEFAULT_DISTRIBUTIONS
    limit: int | None = 100  # questions per task (fixed-seed subsample); None = all
    seed: int = 0
    seq_len: int = DEFAULT_SEQ_LEN
    max_windows: int = DEFAULT_WINDOWS  # perplexity windows per distribution
    threads: int | None = 1  # 1 gives the most stable timings on a shared machine
    parity_tokens: int = 256
    speed: SpeedSettings | None = field(default_factory=SpeedSettings)  # None skips speed
    memory: bool = True
    what: ClassVar[str] = "verify settings"
