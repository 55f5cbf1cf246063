"""Reading safetensors headers (names, shapes) without loading the weights."""

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
