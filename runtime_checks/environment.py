"""Where a report was measured: machine, threads, package versions, date."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata

from runtime_checks import web
from runtime_checks.report_schema import Environment

PACKAGES = ("gprune-edge", "torch", "transformers", "llama-cpp-python", "onnxruntime", "gguf", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int | None) -> Environment:
    return Environment(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        threads=threads,
        platform=platform.platform(),
        python=platform.python_version(),
        packages={**{name: package_version(name) for name in PACKAGES}, **web.versions()},
    )
