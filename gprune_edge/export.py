"""`export`: one pruned checkpoint -> one artifact, checked on the runtime that serves it.
The exporter writes the artifact under a temporary name; runtime_checks reloads it and
compares it with the torch model; only an artifact within its dtype's tolerance is renamed
into place, so nothing is left at `out` when writing or the check fails."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from edgecore.errors import GPruneError
from edgecore.outputs import atomic_dir, atomic_file, claim_output
from exporters import RUNTIMES, WrittenArtifact, check_request, load_source, write_artifact
from runtime_checks.export_parity import check_export, check_tolerance

log = logging.getLogger(__name__)
PARITY_MODES = ("fail", "warn", "off")


@dataclass
class ExportResult(WrittenArtifact):
    verify_s: float = 0.0
    parity: dict = field(default_factory=dict)  # runtime_checks.parity.Parity.to_dict(); empty with parity "off"
    generation_matches: bool = False  # greedy tokens equal torch's on the check prompt

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def _checked(source, written: WrittenArtifact, parity_mode: str, threads) -> ExportResult:
    start = time.perf_counter()
    parity, matches = {}, False
    if parity_mode != "off":
        checked = check_export(written.path, written.runtime, source.layers, source.tokenizer, written.dtype, threads)
        try:
            check_tolerance(checked.parity, written.dtype, f"{written.format} export")
        except GPruneError as e:
            if parity_mode == "fail":
                raise
            log.warning("%s (kept: --parity warn)", e)
        parity, matches = checked.parity.to_dict(), checked.generation_matches
    return ExportResult(**vars(written), verify_s=time.perf_counter() - start, parity=parity,
                        generation_matches=matches)


def export(pruned_dir, format: str, dtype: str, out, *, strict: bool = False, overwrite: bool = False,
           parity: str = "fail", threads: int | None = None) -> ExportResult:
    """Export `pruned_dir` to `out` (a .gguf file or an ONNX directory) and check it.

    strict: fail instead of letting llama.cpp store tensors in a fallback type.
    parity: "fail" (default) reloads the artifact in its runtime, compares it with torch and raises
    GPruneError, leaving nothing at `out`, when it is beyond the tolerance for its dtype; "warn"
    measures and only warns (for models whose own predictions are chaotic, where any rounding
    moves the argmax); "off" skips the check."""
    check_request(format, dtype)
    if parity not in PARITY_MODES:
        raise GPruneError(f"unknown parity mode {parity!r}; choose one of: {', '.join(PARITY_MODES)}")
    if threads is not None and threads < 1:
        raise GPruneError(f"threads must be at least 1, got {threads}")
    with claim_output(out, overwrite, inputs=[pruned_dir]) as out:
        source = load_source(pruned_dir)
        destination = atomic_file if RUNTIMES[format] == "llama.cpp" else atomic_dir
        with destination(out, overwrite) as tmp:
            result = _checked(source, write_artifact(source, format, dtype, tmp, strict=strict, threads=threads),
                              parity, threads)
    result.path = out
    return result
