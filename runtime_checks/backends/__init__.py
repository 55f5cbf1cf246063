"""Runtime backends behind one interface (base.Backend), looked up by name.

Each backend lives in its own module, imported only when asked for, so a machine
without llama-cpp-python or onnxruntime can still run the others."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgecore.errors import GPruneError

# name -> (module, class, the package it needs, how to install it)
BACKENDS = {
    "torch": ("runtime_checks.backends.torch_backend", "TorchBackend", "torch", "pip install torch"),
    "llama.cpp": ("runtime_checks.backends.llama_cpp_backend", "LlamaCppBackend", "llama_cpp",
                  "pip install 'gprune-edge[llama]' (llama-cpp-python)"),
    "onnxruntime": ("runtime_checks.backends.onnxruntime_backend", "OnnxRuntimeBackend", "onnxruntime",
                    "pip install onnxruntime"),
    # onnx reads the graph's interface; Node and the npm package are checked by the class (check_available)
    "onnxruntime-web": ("runtime_checks.backends.web_backend", "WebBackend", "onnx", "pip install onnx"),
}
BACKEND_NAMES = tuple(BACKENDS)


def _is_onnx(path: Path) -> bool:
    return path.suffix == ".onnx" or (path.is_dir() and (path / "model.onnx").is_file())


def default_backend(artifact) -> str:
    """The runtime an artifact is made for: .gguf -> llama.cpp, ONNX -> onnxruntime, else torch."""
    path = Path(str(artifact)).expanduser()
    if path.suffix == ".gguf":
        return "llama.cpp"
    if _is_onnx(path):
        return "onnxruntime"
    return "torch"


def backend_class(name: str):
    if name not in BACKENDS:
        raise GPruneError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module_name, class_name, package, install = BACKENDS[name]
    try:
        importlib.import_module(package)
    except ImportError:
        raise GPruneError(f"backend {name} needs package {package}: {install}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise GPruneError(f"backend {name} is not available in this installation ({module_name} is missing)") \
                from None
        raise GPruneError(f"backend {name} needs package {e.name}: {install}") from None
    cls = getattr(module, class_name)
    if hasattr(cls, "check_available"):  # a runtime outside Python (Node): fail here, before any model loads
        cls.check_available()
    return cls


def check_artifact(name: str, path) -> None:
    """Fail in one line before loading when the file obviously does not suit the backend."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise GPruneError(f"{path}: no such file or directory")
    if name == "llama.cpp" and path.suffix != ".gguf":
        raise GPruneError(f"{path}: the llama.cpp backend needs a .gguf file")
    if name in ("onnxruntime", "onnxruntime-web") and not _is_onnx(path):
        raise GPruneError(f"{path}: the {name} backend needs a .onnx file or a directory with model.onnx")
    if name == "torch" and path.suffix == ".onnx":
        raise GPruneError(f"{path}: the torch backend cannot run an ONNX file; use --backend onnxruntime")


def load_backend(name: str | None, path, threads: int | None = None, context_length: int | None = None,
                 flash_attention: bool = False):
    """A loaded `Backend` for `path`; name None picks the artifact's default runtime. A runtime that
    allocates its KV cache at load gets `context_length` (None: its default) and `flash_attention`."""
    name = name or default_backend(path)
    cls = backend_class(name)
    if name != "torch" or Path(str(path)).expanduser().exists():  # torch also takes built-in names, hub ids
        check_artifact(name, path)
    if cls.allocates_context:
        return cls(path, threads=threads, context_length=context_length, flash_attention=flash_attention)
    return cls(path, threads=threads)
