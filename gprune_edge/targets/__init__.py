"""Device targets: what a device gives a model and what its application needs, not a recipe.

A profile names the artifact types the device's runtime takes (one format; the first is the
reference type every ratio is measured against), the width alignment its kernels want, the
cores and context length the model runs with, and the budgets: memory available to the model
(weights, KV cache at `context_length`, the runtime's buffers), storage for the file, a decode
floor (tokens/s on the machine that runs the build, or a speed-up over the dense model at the
reference type) and a quality floor (perplexity over the reference's). `sources` says where each
figure comes from. `build` searches within the budgets; `--sparsity` is the only recipe a user
forces. One JSON file per built-in target in this folder; a path to any JSON file of the same
shape works too, and a profile of the first layout (a fixed sparsity and a gate) is converted
with a one-line note."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edgecore.errors import GPruneError, note
from edgecore.typed_config import TypedConfig, read_json
from exporters import RUNTIMES, SERVING_RUNTIMES, check_request

HERE = Path(__file__).parent
TARGET_VERSION = 2  # 1: a recipe (sparsity) and a gate; 2: a device's budgets
BUDGET_FIELDS = ("memory_mb", "storage_mb", "min_decode_tok_s", "min_decode_speedup", "max_perplexity_ratio")


@dataclass
class TargetProfile(TypedConfig):
    name: str
    description: str
    artifacts: list[str]  # "FORMAT:DTYPE" the runtime takes, one format; the first is the reference type
    align: int  # FFN width multiple: 256 for llama.cpp k-quants, 32 for q8_0/q4_0 and ONNX blocks
    threads: int  # cores the model runs on
    context_length: int  # tokens of KV cache the application keeps: counted in the memory budget
    memory_mb: float | None = None  # memory for the model: weights, KV cache at context_length, buffers
    storage_mb: float | None = None  # room for the artifact file(s)
    min_decode_tok_s: float | None = None  # measured on the machine that runs the build, on `threads`
    min_decode_speedup: float | None = None  # over the dense model at the reference type, same machine
    max_perplexity_ratio: float | None = None  # the quality floor: worst distribution over the reference's
    runtime: str = ""  # the runtime_checks backend; empty: the format's own (exporters.RUNTIMES)
    sources: dict[str, str] = field(default_factory=dict)  # figure -> where it comes from
    version: int = TARGET_VERSION
    what: ClassVar[str] = "target profile"

    def validate(self) -> None:
        if not self.artifacts:
            raise GPruneError("target profile lists no artifacts: a build would verify nothing; "
                              'give at least one, e.g. "artifacts": ["gguf:q8_0"]')
        if self.align < 1 or self.threads < 1 or self.context_length < 1:
            raise GPruneError("target profile needs align, threads and context_length >= 1")
        for artifact in self.artifacts:
            if ":" not in artifact:
                raise GPruneError(f"target artifact {artifact!r} is not FORMAT:DTYPE")
            check_request(*artifact.split(":", 1))
        if len({a.split(":")[0] for a in self.artifacts}) > 1:
            raise GPruneError(f"target {self.name}: artifacts of more than one format ({', '.join(self.artifacts)}); "
                              "a target is one runtime: make one target per format")
        for name in BUDGET_FIELDS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise GPruneError(f"target {self.name}: {name} must be above 0 (or null: no limit), got {value}")
        if self.runtime and self.runtime not in SERVING_RUNTIMES[self.format]:
            raise GPruneError(f"target {self.name}: runtime {self.runtime!r} does not serve {self.format}; "
                              f"choose one of: {', '.join(SERVING_RUNTIMES[self.format])}")
        unknown = sorted(set(self.sources) - set(BUDGET_FIELDS) - {"threads", "context_length", "artifacts"})
        if unknown:
            raise GPruneError(f"target {self.name}: sources names no figure {', '.join(unknown)}")

    @property
    def format(self) -> str:
        return self.artifacts[0].split(":", 1)[0]

    @property
    def types(self) -> list[tuple[str, str]]:
        """(format, dtype) of every artifact type, the reference first."""
        return [tuple(a.split(":", 1)) for a in self.artifacts]

    @property
    def runtime_name(self) -> str:
        """The runtime_checks backend that verifies this target's artifacts."""
        return self.runtime or RUNTIMES[self.format]


def target_names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.json"))


def load_target(name_or_path: str) -> TargetProfile:
    path = Path(name_or_path)
    if not path.suffix == ".json":
        path = HERE / f"{name_or_path}.json"
        if not path.exists():
            raise GPruneError(f"unknown target {name_or_path!r}; built-in targets: {', '.join(target_names())}")
    data = read_json(path, "target profile")
    if not isinstance(data, dict):
        raise GPruneError(f"{path}: a target profile is a JSON object")
    try:
        if data.get("version", 1) < 2 and FIRST_LAYOUT & set(data):
            data = convert_first_layout(data, path)
        required = {"name", "description", "artifacts", "align", "threads", "context_length"}
        if required - set(data):
            raise GPruneError(f"target profile lacks {', '.join(sorted(required - set(data)))}; "
                              f"its keys are {', '.join(TargetProfile.field_names())}")
        return TargetProfile.from_dict(data)
    except GPruneError as e:
        raise GPruneError(f"{path}: {e}") from None


# The first layout was a recipe: a fixed sparsity, a gate of thresholds, and the types a budget search chose among.
FIRST_LAYOUT = {"sparsity", "gate", "search", "search_sparsities"}
GATE_TO_BUDGET = {"max_perplexity_ratio": "max_perplexity_ratio", "min_decode_speedup": "min_decode_speedup",
                  "max_peak_memory_mb": "memory_mb"}


def convert_first_layout(data: dict, path) -> dict:
    """A profile of the first layout as budgets, with a one-line note of what changed; a gate key
    that has no budget is refused in one line."""
    data = dict(data)
    changes = []
    if "sparsity" in data:
        changes.append(f"sparsity {data.pop('sparsity')} dropped (the build searches; --sparsity forces one)")
    gate = data.pop("gate", None) or {}
    if not isinstance(gate, dict):
        raise GPruneError("gate: expected a mapping of thresholds")
    unknown = sorted(set(gate) - set(GATE_TO_BUDGET))
    if unknown:
        raise GPruneError(f"gate key {', '.join(unknown)} has no device budget; drop it (verify --gate checks it)")
    for key, value in gate.items():
        data.setdefault(GATE_TO_BUDGET[key], value)
    if gate:
        changes.append("gate read as budgets (max_peak_memory_mb now counts the model at context_length)")
    artifacts = list(data.get("artifacts") or [])
    search = data.pop("search", None) or []
    fmt = artifacts[0].split(":")[0] if artifacts else None
    kept = [a for a in dict.fromkeys([*artifacts[:1], *search, *artifacts[1:]]) if a.split(":")[0] == fmt]
    dropped = [a for a in artifacts if a not in kept]
    if search or dropped:
        data["artifacts"] = kept
        changes.append("search merged into artifacts" + (f", {', '.join(dropped)} dropped (one format per target)"
                                                         if dropped else ""))
    if "search_sparsities" in data:
        changes.append("search_sparsities moved to the build config's sparsities")
        data.pop("search_sparsities")
    note(f"{path}: a target profile of the first layout, read as a device's budgets: {'; '.join(changes)} "
         "(gprune-edge targets --check FILE --json prints it in the new layout)")
    return data
