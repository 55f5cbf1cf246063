"""A build's run folder: every stage's output is kept as it completes, so rerunning the same
command after an interrupt (Ctrl-C, kill, a lost machine) continues where it stopped.

`OUT/stages.json` lists each stage by name with the key of what it was made from (a hash of
its settings and of the keys of the stages it reads) and what it reported. A stage whose key
matches and whose output exists is reused; a stage whose key changed is removed and remade,
and so is everything keyed on it, while the rest is kept. Makers write their output under a
temporary name and rename it (edgecore.outputs), and the index is rewritten atomically after
the rename, so at every moment the folder lists only complete outputs. A stage that was
started but not finished with the same key is told so (`resume`), for makers that keep
checkpoints of their own (distillation)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from edgecore.errors import GPruneError
from edgecore.outputs import MARKER, write_atomic

log = logging.getLogger("gprune_edge.build")
INDEX = "stages.json"
INDEX_VERSION = 1


def stage_key(*parts) -> str:
    """A short stable hash of JSON-able parts (configs as dicts, upstream keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remove_path(path: Path) -> None:
    """Remove a stage output: renamed aside first, so a half-removed output never keeps its name."""
    if not os.path.lexists(path):
        return
    aside = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True) if aside.is_dir() else aside.unlink(missing_ok=True)


class RunFolder:
    """The stages of one run in `root` (created if absent, marked as ours)."""

    def __init__(self, root: Path, identity: dict):
        self.root = root
        self.used: set[str] = set()
        index = self._read()
        if index and index.get("identity") != identity:
            raise GPruneError(f"{root} holds another run ({_describe(index.get('identity'))}); choose another --out, "
                              "or pass --overwrite to replace it")
        self.identity, self.stages = identity, (index or {}).get("stages", {})
        root.mkdir(parents=True, exist_ok=True)
        if not (root / MARKER).exists():
            (root / MARKER).write_text("written by gprune-edge; `--overwrite` may replace this directory\n")
        self._save()

    def _read(self) -> dict | None:
        path = self.root / INDEX
        if not path.exists():
            return None
        try:
            index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise GPruneError(f"{path}: unreadable stage index ({e}); pass --overwrite to start over") from None
        if not isinstance(index, dict) or index.get("version") != INDEX_VERSION:
            raise GPruneError(f"{path}: a run folder of another gprune-edge version; pass --overwrite to start over")
        return index

    def _save(self) -> None:
        write_atomic(self.root / INDEX, json.dumps(
            {"version": INDEX_VERSION, "identity": self.identity, "stages": self.stages}, indent=1) + "\n")

    def run(self, name: str, output: str, key: str, make: Callable[[Path, bool], dict]) -> dict:
        """The info of stage `name`: reused when done with this `key`, else `make(path, resume)` is
        called to write `root/output` (resume: an unfinished attempt with the same key left state)."""
        path, entry = self.root / output, self.stages.get(name, {})
        if entry.get("key") == key and entry.get("done") and os.path.lexists(path):
            if name not in self.used:
                log.info("%s: done before, reused", name)
            self.used.add(name)
            return entry["info"]
        self.used.add(name)
        resume = entry.get("key") == key and not entry.get("done")
        remove_path(path)
        self.stages[name] = {"key": key, "output": output, "done": False}
        self._save()
        log.info("%s: %s", name, "resuming" if resume else "running")
        info = make(path, resume)
        self.stages[name] = {"key": key, "output": output, "done": True, "info": info}
        self._save()
        return info

    def drop_unused(self) -> None:
        """Remove the outputs of stages this run did not use (made for settings since changed)."""
        for name in [n for n in self.stages if n not in self.used]:
            remove_path(self.root / self.stages.pop(name)["output"])
        self._save()


def _describe(identity) -> str:
    if not isinstance(identity, dict):
        return "unknown"
    return ", ".join(f"{k} {v}" for k, v in identity.items())

