"""Scratch space for intermediate files (the f32 GGUF before quantizing, the fp32 ONNX
before conversion): a temporary directory beside the destination, always removed."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def scratch_dir(dest: Path, label: str):
    """A fresh directory next to `dest` (same file system, so no cross-device copies), removed on exit."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.{label}-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
