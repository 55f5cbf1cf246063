"""Safetensors checkpoints without loading them whole: what tensors and shapes a model directory
holds (one file, or shards listed by `model.safetensors.index.json`), every file checked against
its header before any slow work, one tensor read at a time; and a writer that flushes shards as
it goes. Weights are only ever read from safetensors: nothing here unpickles."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from edgecore.errors import GPruneError, first_line

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
READ_BLOCK_ELEMENTS = 1 << 22  # converted at a time when a tensor is read in another precision
SHARD_BYTES = 512 << 20  # a written shard: what a writer holds in memory before it flushes
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


CODES = {dtype: code for code, dtype in DTYPES.items()}


def weight_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("*.safetensors"))


def read_header(path: Path) -> dict:
    """A safetensors file's header (name -> dtype, shape, data_offsets), checked against the file's size:
    a truncated or corrupt file fails here in one line naming it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8:
                raise ValueError(f"header of {length} bytes in a {size}-byte file")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise GPruneError(f"{path}: corrupt or truncated safetensors file ({first_line(e)})") from None
    header.pop("__metadata__", None)
    end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    if 8 + length + end > size:
        raise GPruneError(f"{path}: truncated safetensors file ({size} bytes, its header needs {8 + length + end})")
    return header


class StoredTensors:
    """The tensors of a model directory, by name, read one at a time in their stored dtype."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.files = _tensor_files(self.directory)  # name -> file
        self.headers = {f: read_header(f) for f in sorted(set(self.files.values()))}
        missing = [n for n, f in self.files.items() if n not in self.headers[f]]
        if missing:
            raise GPruneError(f"{self.files[missing[0]]}: lacks {missing[0]}, which {INDEX_FILE} puts there")

    def names(self) -> list[str]:
        return list(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.headers[self.files[name]][name]["shape"])

    def dtype(self, name: str) -> torch.dtype:
        code = self.headers[self.files[name]][name]["dtype"]
        if code not in DTYPES:
            raise GPruneError(f"{self.files[name]}: tensor {name} has dtype {code}, which gprune-edge does not read")
        return DTYPES[code]

    def read(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor, copied into memory (the file is mapped only while it is read); converted to `dtype` a
        block of rows at a time, so that an 8B model's embedding is never in memory in both precisions."""
        path, shape = self.files[name], self.shape(name)
        try:
            with safe_open(path, framework="pt") as f:
                if dtype is None or dtype == self.dtype(name) or len(shape) == 0:
                    tensor = f.get_tensor(name)
                    return tensor if dtype is None else tensor.to(dtype)
                stored, out = f.get_slice(name), torch.empty(shape, dtype=dtype)
                rows = max(1, READ_BLOCK_ELEMENTS // max(1, out[0].numel()))
                for start in range(0, shape[0], rows):
                    out[start:start + rows] = stored[start:start + rows]
                return out
        except (SafetensorError, OSError) as e:
            raise GPruneError(f"{path}: cannot read {name} ({first_line(e)})") from None


    def read_rows(self, name: str, rows: torch.Tensor, dtype: torch.dtype | None = None,
                  block: int = 8192) -> torch.Tensor:
        """Rows `rows` (sorted, unique) of a 2-d tensor, read `block` rows at a time: an embedding's
        used rows without the whole table in memory."""
        path, out = self.files[name], []
        try:
            with safe_open(path, framework="pt") as f:
                table = f.get_slice(name)
                for start in range(0, self.shape(name)[0], block):
                    wanted = rows[(rows >= start) & (rows < start + block)] - start
                    if len(wanted):
                        out.append(table[start:start + block][wanted].clone())
        except (SafetensorError, OSError) as e:
            raise GPruneError(f"{path}: cannot read {name} ({first_line(e)})") from None
        rows_read = torch.cat(out)
        return rows_read if dtype is None else rows_read.to(dtype)


def _tensor_files(directory: Path) -> dict[str, Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = {name: directory / shard for name, shard in weight_map.items()}
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise GPruneError(f"{index}: not a safetensors index ({first_line(e)})") from None
        absent = sorted({str(f) for f in files.values() if not f.is_file()})
        if absent:
            raise GPruneError(f"{absent[0]}: listed in {index.name} but missing")
        return files
    files = weight_files(directory)
    if not files:
        pickles = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt*")]
        hint = f" (found {', '.join(pickles)}: pickled weights are never loaded)" if pickles else ""
        raise GPruneError(f"{directory}: no model weights (*.safetensors){hint}")
    return {name: f for f in files for name in read_header(f)}


def tensor_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, by name, over all safetensors files of a model directory."""
    stored = StoredTensors(directory)
    return {name: stored.shape(name) for name in stored.names()}


def check_safetensors(path: Path) -> None:
    """Every safetensors file of a model directory is there and as long as its header says."""
    StoredTensors(path)


class ShardWriter:
    """Writes a checkpoint's tensors as they come, a shard whenever `shard_bytes` have gathered, then
    the index (or one `model.safetensors` when everything fit in one shard)."""

    def __init__(self, directory: Path, shard_bytes: int | None = None):
        self.directory, self.shard_bytes = Path(directory), shard_bytes or SHARD_BYTES
        self.pending: dict[str, torch.Tensor] = {}
        self.shards: list[list[str]] = []  # tensor names per written shard
        self.total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().to("cpu").contiguous()
        if self._pending_bytes() + tensor.nbytes > self.shard_bytes:
            self._flush()  # a large tensor (an embedding) goes alone rather than on top of a full shard
        self.pending[name] = tensor
        if self._pending_bytes() >= self.shard_bytes:
            self._flush()

    def _pending_bytes(self) -> int:
        return sum(t.nbytes for t in self.pending.values())

    def _flush(self) -> None:
        if not self.pending:
            return
        write_safetensors(self.directory / f"shard-{len(self.shards):05d}.tmp", self.pending)
        self.shards.append(list(self.pending))
        self.total += sum(t.nbytes for t in self.pending.values())
        self.pending = {}

    def close(self) -> None:
        self._flush()
        n = len(self.shards)
        if n == 1:
            (self.directory / "shard-00000.tmp").rename(self.directory / SINGLE_FILE)
            return
        weight_map = {}
        for i, names in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.directory / f"shard-{i:05d}.tmp").rename(self.directory / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self.total}, "weight_map": weight_map}
        (self.directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file written from the tensors' own memory (safetensors.torch.save_file copies every
    tensor into bytes first, doubling what a writer holds)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the format's own writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for t in tensors.values():
            f.write(t.reshape(-1).view(torch.uint8).numpy().data)
