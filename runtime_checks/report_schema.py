"""The verification report as types: the one definition of what report.json holds.

    Report                      report.json
      settings: VerifySettings    what was measured and how (runtime_checks.settings)
      environment: Environment    machine, threads, package versions, date
      baseline_run: Run           the dense baseline on its backend
      candidates: [CandidateRun]  the artifact on each backend: a Run plus
        parity: Parity              next-token agreement with the baseline (runtime_checks.parity)
        speed: SpeedComparison      alternating timing pairs against the baseline (ratios with intervals), or None
        comparison: Comparison      every figure as a delta or ratio to the baseline (runtime_checks.deltas)
      gate: GateResult | None     thresholds, verdict, failures, undecided (runtime_checks.gate); None when not gated

`Report.to_dict()` is report.json's layout, key for key and in order; `Report.from_dict`
reads it (and reports written before these types) back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from runtime_checks.accuracy import PerplexityResult, TaskResult
from runtime_checks.parity import Parity
from runtime_checks.settings import SpeedSettings, VerifySettings


class _Flat:
    """A record of plain JSON values: to_dict/from_dict are its fields as they are."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


def _optional(cls, data):
    return None if data is None else cls.from_dict(data)


@dataclass
class Environment(_Flat):
    date: str  # ISO 8601, UTC
    cpu: str
    cores: int | None
    threads: int | None
    platform: str
    python: str
    packages: dict[str, str | None]  # distribution name -> version (None: not installed)


@dataclass
class Footprint(_Flat):
    """What an artifact weighs, from file headers (runtime_checks.footprint)."""
    path: str
    file_bytes: int
    file_mb: float
    parameters: int | None  # None where the format does not say (ONNX)
    files: list[str]


@dataclass
class MemoryPeak(_Flat):
    """Peak RSS of a fresh process that loads and runs the model (runtime_checks.memory)."""
    peak_rss_mb: float
    before_load_mb: float  # the interpreter and its imports, before the model is loaded
    model_mb: float  # what loading and running added


@dataclass
class SpeedFigures(_Flat):
    """One value per speed figure (speed.FIGURES): medians per model, or candidate/baseline ratios."""
    prefill_tok_s: float
    decode_tok_s: float
    ttft_ms: float


@dataclass
class RatioSummary(_Flat):
    """candidate / baseline over the timing pairs, with the median's bootstrap interval
    (speed.ratio_interval) at the settings' confidence."""
    median: float
    min: float
    max: float
    pairs: list[float]  # one ratio per pair, in the order measured
    low: float | None = None  # None: too few pairs for an interval, or a report from before intervals
    high: float | None = None

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)

    def __str__(self) -> str:
        """median [low, high] (n pairs), as reports and gate messages write it."""
        bounds = "no interval" if self.interval is None else f"{self.low:.3f}, {self.high:.3f}"
        n = len(self.pairs)
        return f"{self.median:.3f} [{bounds}] ({n} pair{'' if n == 1 else 's'})"


@dataclass
class SpeedComparison:
    settings: SpeedSettings  # token counts as actually used
    candidate: SpeedFigures  # medians over pairs
    baseline: SpeedFigures
    ratio: dict[str, RatioSummary]  # figure name -> summary; > 1 is faster for tok/s, slower for ttft
    stopped_by: str | None = None  # "width", "decided", "max_pairs" or "max_seconds"; None in older reports
    seconds: float | None = None  # the speed phase, warm-up included
    # the candidate's own decode tok/s, one value per pair, with its median's interval (an absolute
    # floor is gated on it); None in older reports
    candidate_decode: RatioSummary | None = None

    def to_dict(self) -> dict:
        return {"settings": self.settings.to_dict(), "candidate": self.candidate.to_dict(),
                "baseline": self.baseline.to_dict(), "ratio": {k: v.to_dict() for k, v in self.ratio.items()},
                "stopped_by": self.stopped_by, "seconds": self.seconds,
                "candidate_decode": self.candidate_decode and self.candidate_decode.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "SpeedComparison":
        return cls(SpeedSettings.from_dict(data["settings"]), SpeedFigures.from_dict(data["candidate"]),
                   SpeedFigures.from_dict(data["baseline"]),
                   {k: RatioSummary.from_dict(v) for k, v in data["ratio"].items()},
                   data.get("stopped_by"), data.get("seconds"),
                   _optional(RatioSummary, data.get("candidate_decode")))


@dataclass
class TaskDelta(_Flat):
    metric: str  # the task's primary metric: "acc" or "acc_norm"
    candidate: float
    baseline: float
    delta: float  # candidate - baseline
    chance: float
    n: int


@dataclass
class MeanAccuracy(_Flat):
    """Means over the tasks both runs have; None when there are none."""
    candidate: float | None
    baseline: float | None
    delta: float | None  # candidate - baseline


@dataclass
class PerplexityDelta(_Flat):
    candidate: float
    baseline: float
    ratio: float  # candidate / baseline


@dataclass
class MemoryDelta(_Flat):
    candidate_mb: float  # peak RSS, whole process
    baseline_mb: float
    ratio: float
    candidate_model_mb: float  # RSS added by loading and running
    baseline_model_mb: float
    model_ratio: float | None


@dataclass
class Comparison:
    """A candidate's figures next to the baseline's (runtime_checks.deltas.compare_runs)."""
    tasks: dict[str, TaskDelta]
    mean_accuracy: MeanAccuracy
    perplexity: dict[str, PerplexityDelta]
    max_perplexity_ratio: float | None  # the worst distribution's; None without distributions
    memory: MemoryDelta | None  # None when memory was not measured
    file_mb_ratio: float | None
    parameters_ratio: float | None
    speed_ratio: SpeedFigures | None  # median ratio per figure; None when speed was skipped

    def to_dict(self) -> dict:
        return {
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "mean_accuracy": self.mean_accuracy.to_dict(),
            "perplexity": {k: v.to_dict() for k, v in self.perplexity.items()},
            "max_perplexity_ratio": self.max_perplexity_ratio,
            "memory": None if self.memory is None else self.memory.to_dict(),
            "file_mb_ratio": self.file_mb_ratio,
            "parameters_ratio": self.parameters_ratio,
            "speed_ratio": None if self.speed_ratio is None else self.speed_ratio.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Comparison":
        return cls(
            tasks={k: TaskDelta.from_dict(v) for k, v in data["tasks"].items()},
            mean_accuracy=MeanAccuracy.from_dict(data["mean_accuracy"]),
            perplexity={k: PerplexityDelta.from_dict(v) for k, v in data["perplexity"].items()},
            max_perplexity_ratio=data["max_perplexity_ratio"],
            memory=_optional(MemoryDelta, data["memory"]),
            file_mb_ratio=data["file_mb_ratio"],
            parameters_ratio=data["parameters_ratio"],
            speed_ratio=_optional(SpeedFigures, data["speed_ratio"]),
        )


@dataclass
class Run:
    """One model on one backend: accuracy, memory and size."""
    artifact: Footprint
    backend: str
    tasks: dict[str, TaskResult]
    perplexity: dict[str, PerplexityResult]
    memory: MemoryPeak | None  # None when memory was not measured

    def to_dict(self) -> dict:
        return {
            "artifact": self.artifact.to_dict(),
            "backend": self.backend,
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "perplexity": {k: v.to_dict() for k, v in self.perplexity.items()},
            "memory": None if self.memory is None else self.memory.to_dict(),
        }

    @classmethod
    def _fields_from(cls, data: dict) -> dict:
        return {"artifact": Footprint.from_dict(data["artifact"]), "backend": data["backend"],
                "tasks": {k: TaskResult.from_dict(v) for k, v in data["tasks"].items()},
                "perplexity": {k: PerplexityResult.from_dict(v) for k, v in data["perplexity"].items()},
                "memory": _optional(MemoryPeak, data.get("memory"))}

    @classmethod
    def from_dict(cls, data: dict) -> "Run":
        return cls(**cls._fields_from(data))


@dataclass
class CandidateRun(Run):
    """The artifact on one backend: its Run plus what is measured against the baseline."""
    parity: Parity
    speed: SpeedComparison | None  # None when speed was skipped
    comparison: Comparison

    @classmethod
    def of(cls, run: Run, parity: Parity, speed: SpeedComparison | None, comparison: Comparison) -> "CandidateRun":
        return cls(**{f.name: getattr(run, f.name) for f in fields(Run)}, parity=parity, speed=speed,
                   comparison=comparison)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "parity": self.parity.to_dict(),
                "speed": None if self.speed is None else self.speed.to_dict(),
                "comparison": self.comparison.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "CandidateRun":
        return cls(**cls._fields_from(data), parity=Parity.from_dict(data["parity"]),
                   speed=_optional(SpeedComparison, data.get("speed")),
                   comparison=Comparison.from_dict(data["comparison"]))


@dataclass
class GateResult(_Flat):
    """The gate's verdict (gate.check): "fail" if a threshold fails, else "undecided" if a speed
    interval straddles its threshold, else "pass". `passed` is verdict == "pass", kept for the
    callers that read it; reports from before verdicts read as "pass" or "fail"."""
    thresholds: dict[str, float]  # gate.load_thresholds
    passed: bool
    failures: list[str]  # one line per failed threshold and backend (str(gate.Failure))
    verdict: str | None = None  # "pass" | "fail" | "undecided"; None: derived from `passed`
    undecided: list[str] = field(default_factory=list)  # one line per undecided threshold (str(gate.Undecided))

    def __post_init__(self):
        if self.verdict is None:
            self.verdict = "pass" if self.passed else "fail"


@dataclass
class Report:
    artifact: str
    baseline: str
    settings: VerifySettings
    environment: Environment
    baseline_run: Run
    candidates: list[CandidateRun]
    gate: GateResult | None = None  # None: no thresholds were given
    baseline_cached: str | None = None  # when the baseline's figures came from the cache: the date they were measured

    def to_dict(self) -> dict:
        """report.json's layout (JSON-ready; NaN stays a float)."""
        out = {"artifact": self.artifact, "baseline": self.baseline, "settings": self.settings.to_dict(),
               "environment": self.environment.to_dict(), "candidates": [c.to_dict() for c in self.candidates],
               "baseline_run": self.baseline_run.to_dict()}
        if self.baseline_cached is not None:
            out["baseline_cached"] = self.baseline_cached
        if self.gate is not None:
            out["gate"] = self.gate.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(artifact=data["artifact"], baseline=data["baseline"],
                   settings=VerifySettings.from_dict(data["settings"]),
                   environment=Environment.from_dict(data["environment"]),
                   baseline_run=Run.from_dict(data["baseline_run"]),
                   candidates=[CandidateRun.from_dict(c) for c in data["candidates"]],
                   gate=_optional(GateResult, data.get("gate")), baseline_cached=data.get("baseline_cached"))
