"""Device target profiles: what a target runs (artifact formats and quant types), the
width alignment its kernels want, the threads and context it has, the default pruning
strength, the budgets a build must meet (runtime_checks gate thresholds), and what a
budget-driven build may choose among (`search`: artifact types, `search_sparsities`). One
JSON file per target in this folder; a path to any JSON file of the same shape works too."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edgecore.errors import GPruneError
from edgecore.typed_config import TypedConfig, read_json
from exporters import RUNTIMES, SERVING_RUNTIMES, check_request
from runtime_checks.gate import check_thresholds

HERE = Path(__file__).parent
DEFAULT_SEARCH_SPARSITIES = (0.0, 0.1, 0.2, 0.35, 0.5)
OPTIONAL = ("gate", "search", "search_sparsities", "runtime")


@dataclass
class TargetProfile(TypedConfig):
    name: str
    description: str
    artifacts: list[str]  # "FORMAT:DTYPE", e.g. "gguf:q4_k_m", "onnx:int4"
    align: int  # FFN width multiple: 256 for llama.cpp k-quants, 32 for q8_0/q4_0 and ONNX blocks
    threads: int
    context_length: int
    sparsity: float  # default pruning strength for this target
    gate: dict = field(default_factory=dict)  # runtime_checks gate thresholds, checked on load (gate.check_thresholds)
    # A budget build (--max-size, ...) chooses one artifact among these types (empty: `artifacts`) of
    # one format at these sparsities (0: the dense model quantized); the first artifact is the reference.
    search: list[str] = field(default_factory=list)
    search_sparsities: list[float] = field(default_factory=lambda: list(DEFAULT_SEARCH_SPARSITIES))
    # the runtime that verifies every artifact (runtime_checks backend name); empty: the format's own
    # (exporters.RUNTIMES), e.g. "onnxruntime-web" for ONNX served by a browser page
    runtime: str = ""
    what: ClassVar[str] = "target profile"

    def validate(self) -> None:
        if not self.artifacts:
            raise GPruneError("target profile lists no artifacts: a build would verify nothing; "
                              'give at least one, e.g. "artifacts": ["gguf:q8_0"]')
        if self.align < 1 or self.threads < 1 or self.context_length < 1 or not 0.0 <= self.sparsity < 1.0:
            raise GPruneError("target profile needs align, threads and context_length >= 1 and sparsity in [0, 1)")
        for artifact in [*self.artifacts, *self.search]:
            if ":" not in artifact:
                raise GPruneError(f"target artifact {artifact!r} is not FORMAT:DTYPE")
            check_request(*artifact.split(":", 1))
        if len({a.split(":")[0] for a in self.search_types}) > 1:
            raise GPruneError(f"target {self.name}: search lists more than one format ({', '.join(self.search)}); "
                              "a budget build chooses among the types of one runtime")
        if not self.search_sparsities or any(not 0.0 <= s < 1.0 for s in self.search_sparsities):
            raise GPruneError(f"target {self.name}: search_sparsities must be values in [0, 1), "
                              f"got {self.search_sparsities}")
        for fmt in {f for f, _ in self.formats}:
            if self.runtime and self.runtime not in SERVING_RUNTIMES[fmt]:
                raise GPruneError(f"target {self.name}: runtime {self.runtime!r} does not serve {fmt}; "
                                  f"choose one of: {', '.join(SERVING_RUNTIMES[fmt])}")
        self.gate = check_thresholds(self.gate, f"target {self.name} gate")

    def runtime_for(self, fmt: str) -> str:
        """The runtime_checks backend that verifies this target's artifacts of format `fmt`."""
        return self.runtime or RUNTIMES[fmt]

    @property
    def formats(self) -> list[tuple[str, str]]:
        return [tuple(a.split(":", 1)) for a in self.artifacts]

    @property
    def search_types(self) -> list[str]:
        """The artifact types a budget build chooses among, the reference (first artifact) first."""
        types = self.search or [a for a in self.artifacts if a.split(":")[0] == self.artifacts[0].split(":")[0]]
        return [self.artifacts[0], *(t for t in types if t != self.artifacts[0])]


def target_names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.json"))


def load_target(name_or_path: str) -> TargetProfile:
    path = Path(name_or_path)
    if not path.suffix == ".json":
        path = HERE / f"{name_or_path}.json"
        if not path.exists():
            raise GPruneError(f"unknown target {name_or_path!r}; built-in targets: {', '.join(target_names())}")
    data = read_json(path, "target profile")
    required = set(TargetProfile.field_names()) - set(OPTIONAL)
    if isinstance(data, dict) and required - set(data):
        raise GPruneError(f"{path}: target profile lacks {', '.join(sorted(required - set(data)))}; "
                          f"its keys are {', '.join(TargetProfile.field_names())}")
    try:
        return TargetProfile.from_dict(data)
    except GPruneError as e:
        raise GPruneError(f"{path}: {e}") from None
