"""onnxruntime-web for the `onnxruntime-web` backend: the Node runner (runner.mjs) and its pinned npm
package (package.json + package-lock.json), installed once per version into the user cache."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgecore.errors import GPruneError
from edgecore.outputs import publish_dir
from edgecore.pinned import cache_dir

HERE = Path(__file__).parent
FILES = ("package.json", "package-lock.json", "runner.mjs", "decoder.mjs")  # what the installed copy is made of
MIN_NODE = 18  # onnxruntime-web's Node support
INSTALL_HINT = "Debian/Ubuntu: apt install nodejs npm; elsewhere https://nodejs.org"


@functools.cache  # every backend load checks Node: ask it once per process
def _version(executable: str) -> str:
    return subprocess.run([executable, "--version"], capture_output=True, text=True, check=False).stdout.strip()


def versions() -> dict[str, str | None]:
    """The pinned onnxruntime-web and the Node.js on PATH (None when absent), for reports."""
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    path = shutil.which("node")
    return {"onnxruntime-web": pinned, "node": (_version(path) or None) if path else None}


def node() -> str:
    """The `node` executable, checked to be new enough, or a one-line GPruneError saying how to get it."""
    path = shutil.which("node")
    if path is None:
        raise GPruneError(f"the onnxruntime-web backend needs Node.js {MIN_NODE} or newer on PATH ({INSTALL_HINT})")
    version = _version(path)
    major = re.match(r"v(\d+)", version)
    if not major or int(major.group(1)) < MIN_NODE:
        raise GPruneError(f"the onnxruntime-web backend needs Node.js {MIN_NODE} or newer; {path} is {version or '?'}")
    return path


@functools.cache
def _digest() -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:12]


def runner() -> Path:
    """runner.mjs in its installed copy (`npm ci` from the committed lockfile on first use; keyed by the
    content of FILES, so an upgrade installs beside the old copy and concurrent first uses both succeed)."""
    installed = cache_dir() / "web" / f"runner-{_digest()}"
    if not (installed / "node_modules" / "onnxruntime-web").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise GPruneError(f"installing onnxruntime-web needs npm on PATH ({INSTALL_HINT})")
        installed.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{installed.name}-", dir=installed.parent))
        for name in FILES:
            shutil.copy(HERE / name, tmp / name)
        done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise GPruneError(f"npm could not install onnxruntime-web: {last}")
        publish_dir(tmp, installed)
    return installed / "runner.mjs"
