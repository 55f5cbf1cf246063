"""Multi-distribution calibration, one decoder layer at a time.

The embedding output is captured once; then layer i runs on the hidden states
that layers < i produced, with hooks on the inputs of `down_proj` and `o_proj`
that accumulate mergeable `ChannelStats` per dataset. Only the current layer
sits on the compute device. A small token sample of those inputs (and of the
residual norms) is kept too: GPrune measures the cost of removing units on it.
Results are cached (safetensors + JSON, never pickle) so another sparsity does
not recalibrate."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from edgecore import distributed, textdata
from edgecore.errors import GPruneError
from edgecore.fingerprint import model_fingerprint
from edgecore.model_layers import capture_layer_inputs, model_layers
from edgecore.outputs import publish_dir, scratch_dir
from edgecore.pinned import cache_dir
from edgecore.safetensors_io import read_header
from gprune.stats import ChannelStats

CACHE_VERSION = 2
DEFAULT_SOURCES = ("wiki", "news", "code")  # offline, so `prune --method gprune` needs no data options


@dataclass(frozen=True)
class CalibConfig:
    sources: tuple[str, ...] = DEFAULT_SOURCES
    n_samples: int = 32
    seq_len: int = 256
    seed: int = 0
    sample_tokens: int = 256  # tokens per dataset kept raw for the measured removal cost
    batch_size: int = 8


@dataclass
class LayerCalib:
    """One layer on one dataset."""
    down: ChannelStats  # inputs of down_proj (FFN neurons)
    o: ChannelStats  # inputs of o_proj (attention heads' outputs)
    down_sample: torch.Tensor  # [T, ffn] down_proj inputs at sampled tokens
    o_sample: torch.Tensor  # [T, q_heads*head_dim]
    mid_sqnorm: torch.Tensor  # [T] ||residual after attention||^2 (scale for the attention's cost)
    out_sqnorm: torch.Tensor  # [T] ||layer output||^2 (scale for the FFN's cost)


@dataclass
class Calibration:
    sources: list[str]
    layers: Sequence[list[LayerCalib]]  # [layer][dataset]: a list, or StoredRows read from disk
    timing: dict = field(default_factory=dict)


def parse_sources(spec) -> tuple[str, ...]:
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not names:
        raise GPruneError("no calibration sources given; e.g. --calib wiki,news,code")
    return tuple(dict.fromkeys(names))


def calibration_windows(tokenizer, cfg: CalibConfig) -> dict[str, torch.Tensor]:
    """[n_samples, seq_len] token windows per source (textdata raises on unknown/empty/short text)."""
    return {name: textdata.token_windows(tokenizer, textdata.load_documents(name, "calib"), cfg.n_samples,
                                         cfg.seq_len, cfg.seed, source=name) for name in cfg.sources}


def _sample_positions(n_tokens: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_tokens, generator=g)[:min(k, n_tokens)].sort().values


@torch.no_grad()
def _run_layer(i: int, layer, family, batches, positions: torch.Tensor,
               index: list[torch.Tensor]) -> tuple[LayerCalib, list]:
    """Run layer i over a dataset's batches, collecting its statistics; returns the new hidden states.
    `positions`: the sampled tokens (sorted flat indices into the dataset's windows); `index[b]`: the flat
    index of every token of batch b (a process holds only its share of the windows)."""
    o_proj, down_proj = family.o_proj(layer), family.down_proj(layer)
    down = ChannelStats.zeros(down_proj.in_features)
    o = ChannelStats.zeros(o_proj.in_features)
    n = len(positions)
    samples = {"down": torch.zeros(n, down_proj.in_features), "o": torch.zeros(n, o_proj.in_features),
               "mid": torch.zeros(n), "out": torch.zeros(n)}
    current = {}  # the batch being run: which of its tokens are sampled, and their slots in `positions`

    def keep(name, x, squared=False):  # rows of x [b, s, c] at the sampled tokens of this batch, into their slots
        rows = x.reshape(-1, x.shape[-1])[current["mask"].to(x.device)].float().cpu()
        samples[name][current["slots"]] = rows.pow(2).sum(-1) if squared else rows

    def on_down(module, args):
        down.update(args[0])
        keep("down", args[0])

    def on_o(module, args):
        o.update(args[0])
        keep("o", args[0])

    def on_mid(module, args):  # post-attention norm's input is the residual after attention
        keep("mid", args[0], squared=True)

    handles = [down_proj.register_forward_pre_hook(on_down), o_proj.register_forward_pre_hook(on_o),
               family.ffn_norm(layer).register_forward_pre_hook(on_mid)]
    outputs = []
    try:
        for (hidden, kwargs), tokens in zip(batches, index):
            tokens = tokens.flatten()
            slots = torch.searchsorted(positions, tokens).clamp(max=max(n - 1, 0))
            current["mask"] = positions[slots] == tokens if n else torch.zeros(len(tokens), dtype=torch.bool)
            current["slots"] = slots[current["mask"]]
            out = layer(hidden, **kwargs[i])
            out = out[0] if isinstance(out, tuple) else out
            keep("out", out, squared=True)
            outputs.append((out, kwargs))
    finally:
        for h in handles:
            h.remove()
    calib = LayerCalib(down, o, samples["down"], samples["o"], samples["mid"], samples["out"])
    return _summed_over_processes(calib), outputs


def _summed_over_processes(calib: LayerCalib) -> LayerCalib:
    """Every process's share added up: sums of the statistics, and the sampled rows (each process filled
    its own rows and left the others zero)."""
    if distributed.active():
        for stats in (calib.down, calib.o):
            for f in fields(stats):
                distributed.all_reduce_sum(getattr(stats, f.name))
        for t in (calib.down_sample, calib.o_sample, calib.mid_sqnorm, calib.out_sqnorm):
            distributed.all_reduce_sum(t)
    return calib


@torch.no_grad()
def collect(model, windows: dict[str, torch.Tensor], cfg: CalibConfig, device: torch.device | None = None,
            store: Path | None = None) -> Calibration:
    """Statistics of every layer on every dataset, processing one decoder layer at a time on `device`
    (default: where the model is). `model`: a model in memory or `ModelLayers`. With `store`, each
    layer's statistics are written there as soon as they are complete and read back when asked for,
    so a model of any depth holds one layer's in memory. Under torchrun each process runs its share of
    the windows and the statistics are summed across processes."""
    layers = model_layers(model)
    device = device or layers.device
    started = time.perf_counter()
    index = {name: list(distributed.share(torch.arange(ids.numel()).view(ids.shape)).split(cfg.batch_size))
             for name, ids in windows.items()}
    hidden = {name: capture_layer_inputs(layers, distributed.share(ids), cfg.batch_size, device)
              for name, ids in windows.items()}
    positions = {name: _sample_positions(ids.numel(), cfg.sample_tokens, cfg.seed + d)
                 for d, (name, ids) in enumerate(windows.items())}
    rows = []
    for i, layer in tqdm(layers.each(device), total=len(layers), desc="calibrating", unit="layer", leave=False):
        row = []
        for name in windows:
            calib, hidden[name] = _run_layer(i, layer, layers.family, hidden[name], positions[name], index[name])
            row.append(calib)
        if store is None:
            rows.append(row)
        else:
            _save_row(row, store / _row_file(i))
    timing = {"calibration_s": round(time.perf_counter() - started, 3),
              "tokens": int(sum(ids.numel() for ids in windows.values())), "processes": distributed.world()}
    if store is not None:
        rows = StoredRows(store, len(layers), len(windows))
        (store / "meta.json").write_text(json.dumps({"sources": list(windows), "layers": len(layers),
                                                     "timing": timing}, indent=2))
    return Calibration(list(windows), rows, timing)


# ----------------------------------------------------------------------------- cache
# One folder per (model, settings): meta.json and one safetensors file per layer, so that pruning
# reads one layer's statistics at a time. The folder is built under a temporary name and published
# whole (two processes calibrating the same model both get a complete copy).

def cache_key(model, cfg: CalibConfig) -> str:
    spec = json.dumps({"v": CACHE_VERSION, "model": model_fingerprint(model_layers(model)),
                       "sources": list(cfg.sources), "n": cfg.n_samples, "len": cfg.seq_len, "seed": cfg.seed,
                       "t": cfg.sample_tokens})
    return hashlib.sha1(spec.encode()).hexdigest()[:20]


def _row_file(i: int) -> str:
    return f"layer-{i:05d}.safetensors"


def _save_row(row: list[LayerCalib], path: Path) -> None:
    tensors = {}
    for d, c in enumerate(row):
        tensors.update(c.down.to_tensors(f"{d}.down"))
        tensors.update(c.o.to_tensors(f"{d}.o"))
        tensors.update({f"{d}.down_sample": c.down_sample, f"{d}.o_sample": c.o_sample,
                        f"{d}.mid_sqnorm": c.mid_sqnorm, f"{d}.out_sqnorm": c.out_sqnorm})
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


class StoredRows(Sequence):
    """Per-layer statistics read from a cache folder when asked for: rows[i][dataset]."""

    def __init__(self, path: Path, n_layers: int, n_sources: int):
        self.path, self.n_layers, self.n_sources = Path(path), n_layers, n_sources

    def __len__(self) -> int:
        return self.n_layers

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        t = load_file(str(self.path / _row_file(i % len(self))))
        return [LayerCalib(ChannelStats.from_tensors(t, f"{d}.down"), ChannelStats.from_tensors(t, f"{d}.o"),
                           t[f"{d}.down_sample"], t[f"{d}.o_sample"], t[f"{d}.mid_sqnorm"], t[f"{d}.out_sqnorm"])
                for d in range(self.n_sources)]


def load(path: Path) -> Calibration:
    """A cached calibration, every layer's file checked whole (read_header) but none loaded yet."""
    meta = json.loads((path / "meta.json").read_text())
    for i in range(meta["layers"]):
        read_header(path / _row_file(i))
    return Calibration(meta["sources"], StoredRows(path, meta["layers"], len(meta["sources"])),
                       {**meta["timing"], "cached": True})


def calibrate(model, tokenizer, cfg: CalibConfig, cache: Path | None = None, device=None) -> Calibration:
    """Cached calibration: statistics for (model, sources, samples, seq_len, seed) are computed once,
    one layer at a time on `device` (default: where the model is). `model`: in memory or `ModelLayers`."""
    path = (cache or cache_dir() / "calib") / cache_key(model, cfg)
    distributed.barrier()  # every process sees the cache as it was before any of them ran
    if (path / "meta.json").exists():
        try:
            return load(path)
        except (OSError, KeyError, ValueError, GPruneError):
            shutil.rmtree(path, ignore_errors=True)  # a damaged entry is recomputed
    windows = calibration_windows(tokenizer, cfg)
    with scratch_dir(path, "calib") as tmp:
        fresh = collect(model, windows, cfg, device, store=tmp)
        if distributed.rank() == 0:  # under torchrun every process holds the same sums: one copy is kept
            publish_dir(tmp, path)  # the statistics stay readable there (another job's copy holds the same)
        distributed.barrier()
    return Calibration(fresh.sources, StoredRows(path, len(fresh.layers), len(fresh.sources)), fresh.timing)
