"""Outputs are whole or absent, and never cost the user data. Every file or directory this
project writes is built under a temporary name beside its destination and renamed into
place when complete:

- `claim_output(out, overwrite, inputs)`: held by a command for its whole run. It fails in
  one line before any slow work when `out` cannot be written, when it exists and would be
  replaced without --overwrite, holds one of the inputs, or is not an output of this tool
  (directories carry a MARKER file), or when another process is writing `out`; it removes
  temporaries that killed runs left beside `out`;
- `atomic_dir(out)`, `atomic_file(out)`: a user-facing output directory or file;
- `write_atomic(path, data)`: a small file (cache entries, metadata);
- `publish_dir(tmp, target)`: a cache directory that several processes may build at
  once; the first complete copy wins and the others use it;
- `scratch_dir(out)`: room for intermediate files beside an output, always removed.

Temporaries are named `.NAME.LABEL-PID-RANDOM`, so the next run for NAME can tell a dead
run's leftovers from a live one's."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from edgecore.errors import GPruneError

MARKER = ".gprune-edge"  # in every output directory: --overwrite replaces only directories that have it
GGUF_MAGIC = b"GGUF"  # the one kind of single-file output (llama.cpp models)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (mkdtemp and mkstemp
    create 0700/0600; outputs get the permissions the user's umask gives)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it, and put it back at once
    os.umask(mask)
    return mask


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _is_our_output(out: Path) -> bool:
    if out.is_dir():
        return (out / MARKER).is_file()
    try:
        with open(out, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _holds(out: Path, path: Path) -> bool:
    """Whether `path` is `out` or lies inside it (symlinks resolved)."""
    out, path = out.resolve(), path.resolve()
    return path == out or out in path.parents


def _check_parent_writable(out: Path) -> None:
    """The nearest existing ancestor of `out` must be a directory we can create files in."""
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GPruneError(f"cannot write {out}: {ancestor} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=f".{out.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GPruneError(f"cannot write {out}: {ancestor} is not writable ({e.strerror})") from None


def check_writable(out: str | Path, overwrite: bool, inputs=(), resume: bool = False) -> Path:
    """`out` as an absolute path, after checking it may be written (see the module docstring).
    `resume`: an existing output directory of ours is continued rather than replaced."""
    if os.path.basename(os.path.normpath(str(out))) in ("", ".", ".."):
        raise GPruneError(f"{out!s} cannot be an output (it names a folder in use): give a new file or folder name")
    out = _absolute(out)
    if os.path.lexists(out):
        if resume and not overwrite and out.is_dir() and _is_our_output(out):
            pass
        elif not overwrite:
            raise GPruneError(f"{out} already exists (pass --overwrite to replace it)")
        for source in inputs:
            if source is not None and Path(source).expanduser().exists() and _holds(out, Path(source).expanduser()):
                raise GPruneError(f"refusing to overwrite {out}: it holds the input {source}")
        if not _is_our_output(out):
            raise GPruneError(f"refusing to overwrite {out}: it is not an output of gprune-edge "
                              f"(no {MARKER} marker); remove it yourself or choose another output")
    _check_parent_writable(out)
    return out


_PID = re.compile(r"-(\d+)-[^-]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(out: Path) -> None:
    """Temporaries of runs for `out` whose process is gone (killed, machine restarted)."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*-*"):
        match = _PID.search(path.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def _output_lock(out: Path):
    """An exclusive lock on `out` for this process (another process asking for it fails at once)."""
    from edgecore.pinned import cache_dir

    key = hashlib.sha1(os.path.realpath(out).encode()).hexdigest()[:20]
    path = cache_dir() / "locks" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise GPruneError(f"another gprune-edge process (pid {holder}) is writing {out}; "
                              "wait for it or choose another output") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def claim_output(out: str | Path, overwrite: bool = False, inputs=(), resume: bool = False):
    """Check `out` (see check_writable), lock it and clear dead runs' temporaries; yields its
    absolute path. Hold it around a whole command, so a clash fails before the slow work."""
    out = check_writable(out, overwrite, inputs, resume)
    with _output_lock(out):
        _remove_stale_temporaries(out)
        yield out


def _replace(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move `tmp` to `out`; an existing `out` is replaced only with `overwrite`."""
    if os.path.lexists(out):
        if not overwrite:
            raise GPruneError(f"{out} appeared while this run was writing it; it was left as it is")
        if out.is_dir():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-{os.getpid()}-"))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(tmp, out)


@contextlib.contextmanager
def scratch_dir(out: Path, label: str = "tmp"):
    """A temporary directory next to `out` (same filesystem, so renames are atomic and nothing
    is copied across devices), with the user's permissions, always removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{label}-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _absent_or_overwritten(out: str | Path, overwrite: bool) -> Path:
    out = _absolute(out)
    if os.path.lexists(out) and not overwrite:
        raise GPruneError(f"{out} already exists (pass --overwrite to replace it)")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False):
    """Yields a temporary directory that becomes `out` (marked as ours) when the block succeeds."""
    out = _absent_or_overwritten(out, overwrite)
    with scratch_dir(out) as tmp:
        yield tmp
        (tmp / MARKER).write_text("written by gprune-edge; `--overwrite` may replace this directory\n")
        mode = 0o666 & ~current_umask()
        for f in tmp.rglob("*"):  # libraries that write through mkstemp leave 0600 files
            if f.is_file() and not f.is_symlink():
                os.chmod(f, mode)
        _replace(tmp, out, overwrite)


@contextlib.contextmanager
def atomic_file(out: str | Path, overwrite: bool = False):
    """Yields a temporary path (with `out`'s name, in a scratch directory beside it) that
    becomes `out` when the block succeeds."""
    out = _absent_or_overwritten(out, overwrite)
    with scratch_dir(out) as tmp:
        yield tmp / out.name
        _replace(tmp / out.name, out, overwrite)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a file under a temporary name, then rename it (readers never see half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~current_umask())
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
