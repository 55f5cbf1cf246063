"""What a verification measures and how: the settings `verify` takes, recorded in the
report's "settings". Typed configs (edgecore.typed_config), so a build config can embed
them and read them back from JSON. Their `validate` refuses out-of-range values in one
line; the bounds live here once (BOUNDS, SPEED_BOUNDS) so the CLI checks its options
against the same ranges under its own option names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.textdata import SOURCE_NAMES, parse_hub_name
from edgecore.typed_config import TypedConfig
from runtime_checks.accuracy import DEFAULT_SEQ_LEN, DEFAULT_WINDOWS
from runtime_checks.tasks import TASK_NAMES

DEFAULT_DISTRIBUTIONS = ("wiki", "news", "science", "code")

DEFAULT_PAIRS = 7  # the minimum: fewer leave the bootstrap interval too lumpy (speed.MIN_INTERVAL_PAIRS = 5)
DEFAULT_MAX_PAIRS = 31
DEFAULT_CONFIDENCE = 0.95
DEFAULT_TARGET_WIDTH = 0.10  # stop once the decode ratio's interval has high / low - 1 <= this
DEFAULT_MAX_SECONDS = 300.0  # the speed phase of one candidate backend; the minimum pairs always run
DEFAULT_PREFILL_TOKENS = 512
DEFAULT_PROMPT_TOKENS = 64
DEFAULT_DECODE_TOKENS = 64

MAX_TOKENS = 8192  # longest window/prompt: beyond it logits alone run to gigabytes (and past most contexts)

# field -> (lowest, highest or None): the valid range of each count; None values (limit: every
# question, threads: the runtime's default) are not checked
BOUNDS = {"limit": (1, None), "max_windows": (1, None), "seq_len": (2, MAX_TOKENS),
          "parity_tokens": (2, MAX_TOKENS), "threads": (1, None), "context_length": (32, None)}
SPEED_BOUNDS = {"pairs": (1, None), "prefill_tokens": (1, MAX_TOKENS), "prompt_tokens": (1, MAX_TOKENS),
                "decode_tokens": (1, MAX_TOKENS), "threads": (1, None), "max_pairs": (1, None),
                "confidence": (0.5, 0.999), "target_width": (0.0, None), "max_seconds": (0.0, None)}


def check_range(label: str, value: int | None, low: int, high: int | None = None, note: str = "") -> None:
    """GPruneError in one line when `value` is outside [low, high]: `label` (an option name)
    must be ..., got `value`. `note` is appended, e.g. what 0 would mean elsewhere."""
    if value is None or (value >= low and (high is None or value <= high)):
        return
    valid = f"at least {low}" if high is None else f"between {low} and {high}"
    raise GPruneError(f"{label} must be {valid}{note}, got {value}")


def check_tasks(label: str, names) -> None:
    for name in names:
        if name not in TASK_NAMES:
            raise GPruneError(f"{label}: unknown task {name!r}; known: {', '.join(TASK_NAMES)}")


def check_distributions(label: str, names) -> None:
    """What edgecore.textdata.load_documents accepts, checked without reading anything: a built-in
    source, hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or a .txt/.jsonl file."""
    for name in names:
        if name.startswith("hf:"):
            try:
                parse_hub_name(name)  # the form only; the hub is not asked
            except GPruneError as e:
                raise GPruneError(f"{label}: {e}") from None
        elif name not in SOURCE_NAMES and not name.endswith((".txt", ".jsonl")):
            raise GPruneError(f"{label}: unknown text distribution {name!r}; known: {', '.join(SOURCE_NAMES)}, "
                              "hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or a .txt/.jsonl file")


@dataclass
class SpeedSettings(TypedConfig):
    """How speed.compare_speed times a candidate against its baseline. In a report's speed
    section the token counts are those actually used (the fixed text may be shorter).

    Pairs are adaptive: at least `pairs`, then more until the decode ratio's bootstrap
    interval (at `confidence`) is narrow enough (high / low - 1 <= `target_width`), or
    `max_pairs` or `max_seconds` is reached. A noisy machine thus pays in time, not in a
    verdict noise can pass; pairs = max_pairs gives the old fixed count. Configs written
    before these fields load with their defaults."""
    pairs: int = DEFAULT_PAIRS  # the minimum, at least 1; a verification without speed has speed None
    prefill_tokens: int = DEFAULT_PREFILL_TOKENS  # one forward over this many tokens: prefill tok/s
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS  # the decode run's prompt: its first token gives TTFT
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    threads: int | None = None
    max_pairs: int | None = None  # None: DEFAULT_MAX_PAIRS, or `pairs` if that is more (see pair_cap)
    confidence: float = DEFAULT_CONFIDENCE  # of every ratio's interval
    target_width: float = DEFAULT_TARGET_WIDTH  # 0: run to a cap (unless every pair gives one ratio)
    max_seconds: float | None = DEFAULT_MAX_SECONDS  # None: no time cap
    what: ClassVar[str] = "speed settings"

    @property
    def pair_cap(self) -> int:
        """The most pairs timed; None for max_pairs keeps an old config's larger `pairs` valid."""
        return max(self.pairs, DEFAULT_MAX_PAIRS) if self.max_pairs is None else self.max_pairs

    def validate(self) -> None:
        for name, (low, high) in SPEED_BOUNDS.items():
            note = " (set speed to null to skip speed)" if name == "pairs" else ""
            check_range(self._where(name), getattr(self, name), low, high, note)
        if self.pair_cap < self.pairs:
            raise GPruneError(f"{self._where('max_pairs')} must be at least pairs ({self.pairs}), "
                              f"got {self.max_pairs}")


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
    # The runtime as the device runs it: a KV cache for this many tokens (llama.cpp allocates it at load;
    # the memory probe fills it, on every runtime) and llama.cpp's flash attention, without which a
    # per-layer-KV model's V cache is padded to its widest layer. None / False: the runtime's defaults.
    # Flash attention changes llama.cpp's logits a little (SmolLM2 q8_0: KL 0.004, perplexity -0.3%):
    # candidate and baseline run with the same setting.
    context_length: int | None = None
    flash_attention: bool = False
    what: ClassVar[str] = "verify settings"

    def validate(self) -> None:
        check_tasks(self._where("tasks"), self.tasks)
        check_distributions(self._where("distributions"), self.distributions)
        for name, (low, high) in BOUNDS.items():
            note = " (null for every question)" if name == "limit" else ""
            check_range(self._where(name), getattr(self, name), low, high, note)

    def runtime_context(self) -> int | None:
        """The context a runtime is loaded with to evaluate and time: `context_length`, or more when a
        window, prompt or the parity text is longer (the memory probe holds exactly `context_length`)."""
        if self.context_length is None:
            return None
        speed = (self.speed.prefill_tokens + 1, self.speed.prompt_tokens + self.speed.decode_tokens) \
            if self.speed else ()
        return max(self.context_length, self.seq_len, self.parity_tokens, *speed)
