"""The dense baseline's measured `Run`, cached across verifications.

A build verifies several candidates against one baseline artifact, and the next build against
the same one again: its accuracy, perplexity and memory need measuring once. An entry is keyed by
everything that changes those figures: the baseline's bytes (sha256), the tokenizer's bytes when
another one is given, the bytes of local text distributions, the backend and the version of its
runtime, transformers (tokenization), the project and HARNESS_VERSION, and the settings that
reach the Run (tasks, distributions, limit, seed, seq_len, max_windows, threads, memory).
Speed is never cached (it is measured in pairs with the candidate), nor parity (it needs the
baseline's logits, one forward).

Entries are JSON files under the user cache (`verify-baselines/KEY.json`), written whole under
a temporary name and renamed (edgecore.outputs.write_atomic): two processes filling the same
entry write the same figures and readers never see half a file. An entry that cannot be read
is ignored, measured again and rewritten."""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
from pathlib import Path

from edgecore.loading import resolve
from edgecore.outputs import write_atomic
from edgecore.pinned import cache_dir
from runtime_checks.environment import package_version
from runtime_checks.footprint import footprint
from runtime_checks.report_schema import Run

HARNESS_VERSION = 1  # bump whenever scoring changes what it computes (accuracy, loglik, backends, memory)
FORMAT = 1  # of the entry file
CHUNK = 1 << 20

_hashes: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256, so one process hashes a file once


def directory() -> Path:
    return cache_dir() / "verify-baselines"


def _file_hash(path: Path) -> str:
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
        _hashes[memo] = h.hexdigest()
    return _hashes[memo]


def content_hash(path) -> str:
    """sha256 of a file's bytes; for a directory, of its files' relative names and hashes in sorted order."""
    path = Path(path)
    if path.is_file():
        return _file_hash(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{_file_hash(f)}\n".encode())
    return h.hexdigest()


def _local(spec) -> Path | None:
    """The local file or directory behind an artifact spec; None for a hub id (its bytes are not here)."""
    if spec is None:
        return None
    path = Path(str(spec)).expanduser()
    if path.exists():
        return path
    resolved = resolve(str(spec))  # a built-in name becomes its directory in the cache
    return resolved if isinstance(resolved, Path) else None


def _runtime_version(backend: str) -> str | None:
    from runtime_checks.backends import BACKENDS

    return getattr(importlib.import_module(BACKENDS[backend][2]), "__version__", None)


def key(baseline, backend: str, settings, tokenizer_from=None) -> str | None:
    """The cache key of `baseline` measured on `backend` under `settings` (VerifySettings), or None
    when it cannot be keyed by content (a hub id): such a baseline is always measured."""
    path, tokenizer_path = _local(baseline), _local(tokenizer_from)
    if path is None or (tokenizer_from is not None and tokenizer_path is None):
        return None
    distributions = {d: content_hash(d) if d.endswith((".txt", ".jsonl")) and Path(d).is_file() else None
                     for d in settings.distributions}
    inputs = {
        "baseline": content_hash(path),
        "tokenizer": None if tokenizer_path is None else content_hash(tokenizer_path),
        "backend": backend, "runtime": _runtime_version(backend), "transformers": package_version("transformers"),
        "project": package_version("gprune-edge"), "harness": HARNESS_VERSION,
        "tasks": list(settings.tasks), "distributions": distributions, "limit": settings.limit,
        "seed": settings.seed, "seq_len": settings.seq_len, "max_windows": settings.max_windows,
        "threads": settings.threads, "memory": settings.memory,
        # the runtime as loaded: the memory probe fills this context; flash attention changes llama.cpp's logits
        "context_length": settings.context_length, "flash_attention": settings.flash_attention,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _path(cache_key: str) -> Path:
    return directory() / f"{cache_key}.json"


def load(cache_key: str, baseline) -> tuple[Run, str] | None:
    """(the cached Run with `baseline`'s footprint as it is now, the date it was measured), or None
    when there is no entry or it cannot be read (a damaged entry is measured again, never an error)."""
    try:
        entry = json.loads(_path(cache_key).read_text(encoding="utf-8"))
        if entry["format"] != FORMAT or entry["key"] != cache_key:
            return None
        run = Run.from_dict(entry["run"])
        measured = str(entry["measured"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    run.artifact = footprint(baseline)  # the same bytes may sit at another path than when measured
    return run, measured


def store(cache_key: str, run: Run) -> None:
    """Write the entry whole under a temporary name, then rename it over any older one."""
    measured = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry = {"format": FORMAT, "key": cache_key, "measured": measured, "run": run.to_dict()}
    write_atomic(_path(cache_key), json.dumps(entry, indent=1) + "\n")
