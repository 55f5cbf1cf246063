"""Outputs are whole or absent. Every file or directory this project writes is built
under a temporary name beside its destination and renamed into place when complete:

- `atomic_dir(out)`: a user-facing output directory (replaced only with overwrite);
- `atomic_file(out)`: the same for a single file;
- `write_atomic(path, data)`: a small file (cache entries, metadata);
- `publish_dir(tmp, target)`: a cache directory that several processes may build at
  once; the first complete copy wins and the others use it;
- `scratch_dir(out)`: room for intermediate files beside an output, always removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from edgecore.errors import GPruneError


def check_writable(out: str | Path, overwrite: bool) -> Path:
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise GPruneError(f"{out} already exists (pass --overwrite to replace it)")
    return out


def _replace(tmp: Path, out: Path) -> None:
    """Move `tmp` to `out`, replacing what is there (a directory is moved aside first)."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "x")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def scratch_dir(out: Path, label: str = "tmp"):
    """A temporary directory next to `out` (same filesystem, so renames are atomic and nothing
    is copied across devices), always removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{label}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False):
    """Yields a temporary directory that becomes `out` when the block succeeds."""
    out = check_writable(out, overwrite)
    with scratch_dir(out) as tmp:
        yield tmp
        _replace(tmp, out)


@contextlib.contextmanager
def atomic_file(out: str | Path, overwrite: bool = False):
    """Yields a temporary path (with `out`'s name, in a scratch directory beside it) that
    becomes `out` when the block succeeds."""
    out = check_writable(out, overwrite)
    with scratch_dir(out) as tmp:
        yield tmp / out.name
        _replace(tmp / out.name, out)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a file under a temporary name, then rename it (readers never see half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def publish_dir(tmp: Path, target: Path) -> Path:
    """Rename the complete directory `tmp` to `target`. When another process published
    `target` first, its copy is kept and `tmp` is discarded: both callers get a whole copy."""
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target
