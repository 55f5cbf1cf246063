"""Reading safetensors files without loading the weights: are they all there, and what
shapes do they hold. Weights are only ever read from safetensors: nothing here unpickles."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open

from edgecore.errors import GPruneError, first_line


def weight_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("*.safetensors"))


def tensor_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, by name, over all safetensors files of a model directory."""
    shapes = {}
    for f in weight_files(directory):
        try:
            with safe_open(f, framework="pt") as st:
                for name in st.keys():
                    shapes[name] = tuple(st.get_slice(name).get_shape())
        except (SafetensorError, OSError) as e:
            raise GPruneError(f"{f}: corrupt or truncated safetensors file ({first_line(e)})") from None
    return shapes


def check_safetensors(path: Path) -> None:
    """Open every safetensors file's header and check the data are all there."""
    files = weight_files(path)
    if not files:
        pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt*")]
        hint = f" (found {', '.join(pickles)}: pickled weights are never loaded)" if pickles else ""
        raise GPruneError(f"{path}: no model weights (*.safetensors){hint}")
    for f in files:
        try:
            with safe_open(f, framework="pt") as st:
                names = list(st.keys())
                if names:  # the last tensor's data must be readable: catches truncation
                    st.get_slice(names[-1])[...]
        except (SafetensorError, OSError, RuntimeError) as e:
            raise GPruneError(f"{f}: corrupt or truncated safetensors file ({first_line(e)})") from None
