"""Write a whole output directory or nothing: build it in a temporary sibling
directory, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import GPruneError


def check_writable(out: str | Path, overwrite: bool) -> Path:
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise GPruneError(f"{out} already exists (pass --overwrite to replace it)")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False):
    """Yields a temporary directory that becomes `out` when the block succeeds."""
    out = check_writable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
