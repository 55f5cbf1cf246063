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
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from edgecore import textdata
from edgecore.devices import model_device
from edgecore.errors import GPruneError
from edgecore.families import family_of
from edgecore.fingerprint import model_fingerprint
from edgecore.outputs import write_atomic
from edgecore.pinned import cache_dir
from gprune.stats import ChannelStats

CACHE_VERSION = 1
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
    layers: list[list[LayerCalib]]  # [layer][dataset]
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


class _Stop(Exception):
    pass


@torch.no_grad()
def capture_layer_inputs(model, ids: torch.Tensor, batch_size: int, device: torch.device):
    """Hidden states entering decoder layer 0 and the keyword arguments it is called with, per batch."""
    family = family_of(model.config)
    first = family.decoder_layers(model)[0]
    captured = []

    def grab(module, args, kwargs):
        hidden = kwargs.pop("hidden_states", None)
        hidden = args[0] if hidden is None else hidden
        captured.append((hidden, dict(kwargs)))
        raise _Stop

    body = model.model
    home = {name: model_device(m) for name, m in body.named_children()
            if name != "layers" and any(True for _ in m.parameters())}
    for name in home:
        getattr(body, name).to(device)
    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for batch in ids.split(batch_size):
            try:
                body(input_ids=batch.to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
        for name, dev in home.items():
            getattr(body, name).to(dev)
    return captured


def _sample_positions(n_tokens: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_tokens, generator=g)[:min(k, n_tokens)].sort().values


@torch.no_grad()
def _run_layer(layer, family, batches, positions: torch.Tensor) -> tuple[LayerCalib, list]:
    """Run one layer over a dataset's batches, collecting its statistics; returns the new hidden states."""
    o_proj, down_proj = family.o_proj(layer), family.down_proj(layer)
    down = ChannelStats.zeros(down_proj.in_features)
    o = ChannelStats.zeros(o_proj.in_features)
    samples = {"down": [], "o": [], "mid": []}
    offset = [0]  # flat token index of the current batch's first token

    def picked(x):  # rows of x [b, s, c] at the sampled positions inside this batch
        flat = x.reshape(-1, x.shape[-1])
        lo, hi = offset[0], offset[0] + flat.shape[0]
        sel = positions[(positions >= lo) & (positions < hi)] - lo
        return flat[sel.to(flat.device)].float().cpu()

    def on_down(module, args):
        down.update(args[0])
        samples["down"].append(picked(args[0]))

    def on_o(module, args):
        o.update(args[0])
        samples["o"].append(picked(args[0]))

    def on_mid(module, args):  # post-attention norm's input is the residual after attention
        samples["mid"].append(picked(args[0]).pow(2).sum(-1))

    handles = [down_proj.register_forward_pre_hook(on_down), o_proj.register_forward_pre_hook(on_o),
               family.ffn_norm(layer).register_forward_pre_hook(on_mid)]
    outputs, out_sq = [], []
    try:
        for hidden, kwargs in batches:
            out = layer(hidden, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            out_sq.append(picked(out).pow(2).sum(-1))
            outputs.append((out, kwargs))
            offset[0] += hidden.shape[0] * hidden.shape[1]
    finally:
        for h in handles:
            h.remove()
    calib = LayerCalib(down, o, torch.cat(samples["down"]), torch.cat(samples["o"]), torch.cat(samples["mid"]),
                       torch.cat(out_sq))
    return calib, outputs


@torch.no_grad()
def collect(model, windows: dict[str, torch.Tensor], cfg: CalibConfig, device: torch.device | None = None
            ) -> Calibration:
    """Statistics of every layer on every dataset, processing one decoder layer at a time on
    `device` (default: where the model is)."""
    device = device or model_device(model)
    family = family_of(model.config)
    layers = family.decoder_layers(model)
    started = time.perf_counter()
    hidden = {name: capture_layer_inputs(model, ids, cfg.batch_size, device) for name, ids in windows.items()}
    positions = {name: _sample_positions(ids.numel(), cfg.sample_tokens, cfg.seed + d)
                 for d, (name, ids) in enumerate(windows.items())}
    per_layer = []
    for layer in tqdm(layers, desc="calibrating", unit="layer", leave=False):
        home = model_device(layer)
        layer.to(device)
        row = []
        for name in windows:
            calib, hidden[name] = _run_layer(layer, family, hidden[name], positions[name])
            row.append(calib)
        layer.to(home)
        per_layer.append(row)
    timing = {"calibration_s": round(time.perf_counter() - started, 3),
              "tokens": int(sum(ids.numel() for ids in windows.values()))}
    return Calibration(list(windows), per_layer, timing)


# ----------------------------------------------------------------------------- cache

def cache_key(model, cfg: CalibConfig) -> str:
    spec = json.dumps({"v": CACHE_VERSION, "model": model_fingerprint(model), "sources": list(cfg.sources),
                       "n": cfg.n_samples, "len": cfg.seq_len, "seed": cfg.seed, "t": cfg.sample_tokens})
    return hashlib.sha1(spec.encode()).hexdigest()[:20]


def save_calibration(calib: Calibration, path: Path) -> None:
    tensors = {}
    for i, row in enumerate(calib.layers):
        for d, c in enumerate(row):
            p = f"{i}.{d}"
            tensors.update(c.down.to_tensors(f"{p}.down"))
            tensors.update(c.o.to_tensors(f"{p}.o"))
            tensors.update({f"{p}.down_sample": c.down_sample, f"{p}.o_sample": c.o_sample,
                            f"{p}.mid_sqnorm": c.mid_sqnorm, f"{p}.out_sqnorm": c.out_sqnorm})
    write_atomic(path / "stats.safetensors", save({k: v.contiguous() for k, v in tensors.items()}))
    write_atomic(path / "meta.json", json.dumps({"sources": calib.sources, "layers": len(calib.layers),
                                                 "timing": calib.timing}, indent=2))


def load(path: Path) -> Calibration:
    meta = json.loads((path / "meta.json").read_text())
    t = load_file(str(path / "stats.safetensors"))
    layers = []
    for i in range(meta["layers"]):
        row = []
        for d in range(len(meta["sources"])):
            p = f"{i}.{d}"
            row.append(LayerCalib(ChannelStats.from_tensors(t, f"{p}.down"), ChannelStats.from_tensors(t, f"{p}.o"),
                                  t[f"{p}.down_sample"], t[f"{p}.o_sample"], t[f"{p}.mid_sqnorm"],
                                  t[f"{p}.out_sqnorm"]))
        layers.append(row)
    return Calibration(meta["sources"], layers, {**meta["timing"], "cached": True})


def calibrate(model, tokenizer, cfg: CalibConfig, cache: Path | None = None, device=None) -> Calibration:
    """Cached calibration: statistics for (model, sources, samples, seq_len, seed) are computed once,
    one layer at a time on `device` (default: where the model is)."""
    path = (cache or cache_dir() / "calib") / cache_key(model, cfg)
    if (path / "meta.json").exists() and (path / "stats.safetensors").exists():
        try:
            return load(path)
        except (OSError, KeyError, ValueError, SafetensorError):
            pass  # a damaged cache is recomputed
    calib = collect(model, calibration_windows(tokenizer, cfg), cfg, device)
    save_calibration(calib, path)
    return calib
