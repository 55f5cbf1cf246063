"""GPrune-LLM as docs/DESIGN.md reads it. Every step can be switched off
through GPruneConfig (methods/configs.py): distribution sensitivity, behaviour-consistent
modules, the reliability switch, outlier protection, measured-cost allocation (off: robust
standardized scores compete globally, as FLAP but median/MAD), the worst-dataset weight,
per-dataset calibration and bias compensation; `uniform` makes every layer the same size.
The measured cost is layer-local: how much a sublayer's output changes, relative to the
residual stream (gprune.measured)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from edgecore.errors import GPruneError
from edgecore.families import is_uniform
from edgecore.model_layers import ModelLayers
from edgecore.params import kv_group_params, layer_params, neuron_params
from gprune.allocation import global_counts, standardize, top_k
from gprune.calibration import LayerCalib
from gprune.measured import Pop, Queue, Sublayer, align_sublayer, merge_paths, removal_path, replay
from gprune.methods.common import keep_sets, layer_diagnostics
from gprune.methods.configs import GPruneConfig
from gprune.methods.registry import PrunePlan, PruneTarget, register
from gprune.metrics import channel_scores, ffn_magnitude, group_channels, kv_magnitude
from gprune.neuron_groups import modules_of, outliers, unit_view, unreliable_modules
from gprune.stats import merge_all
from gprune.surgery import aligned_width

OUTLIER_FACTOR = 20.0  # a neuron whose RMS is this far above its layer's median is a massive activation


def _datasets(calib, i: int, per_dataset: bool):
    """Layer i's per-dataset entries, or one pooled entry when per_dataset is off."""
    row = calib.layers[i]
    if per_dataset:
        return row
    cat = lambda name: torch.cat([getattr(c, name) for c in row])  # noqa: E731
    return [LayerCalib(merge_all([c.down for c in row]), merge_all([c.o for c in row]), cat("down_sample"),
                       cat("o_sample"), cat("mid_sqnorm"), cat("out_sqnorm"))]


def _ffn_units(family, layer, data, cfg: GPruneConfig):
    """Per-unit analysis of one layer's FFN: removal order per module, protected units, diagnostics."""
    down = family.down_proj(layer).weight
    scores = torch.stack([channel_scores(down, c.down, cfg.metric) for c in data])
    freq = torch.stack([c.down.frequency for c in data]).mean(0)
    mean_abs = merge_all([c.down for c in data]).sumabs
    view = unit_view(scores, freq, mean_abs)
    labels = modules_of(view, int(cfg.modules), cfg.sensitivity)
    switched = unreliable_modules(view, labels, cfg.sensitivity) if cfg.reliability else []
    magnitude_rank = unit_view(ffn_magnitude(family, layer)[None], freq, mean_abs).mean_rank
    score = view.mean_rank.clone()
    for m in switched:
        score[labels == m] = magnitude_rank[labels == m]
    protected = outliers(torch.stack([c.down.rms for c in data]), OUTLIER_FACTOR) if cfg.outliers \
        else torch.zeros(len(score), dtype=torch.bool)
    return view, labels, switched, score, protected, scores


def _kv_units(family, layer, shape, data, metric):
    o = family.o_proj(layer).weight
    scores = torch.stack([group_channels(family, shape, channel_scores(o, c.o, metric)) for c in data])
    return unit_view(scores, torch.ones(shape.kv_heads), kv_magnitude(family, layer, shape)), scores


def _sublayer(weight, samples, sqnorms, mean, unit_channels, unit_params, min_keep, lam, bias_comp):
    x = torch.cat(samples).float()  # float32: the greedy pass measures thousands of chunks
    if bias_comp:  # with compensation a removed channel costs only its deviation from the mean
        x = x - mean.float()[None]
    lengths = [len(s) for s in samples]
    bounds = torch.tensor([0] + lengths).cumsum(0).tolist()
    return Sublayer(weight.detach().float().cpu(), x.t().contiguous(), 1 / torch.cat(sqnorms).float().clamp(min=1e-12),
                    list(zip(bounds[:-1], bounds[1:])), unit_channels, unit_params, min_keep, lam)


def _ffn_sublayer(down_w, shape, data, cfg: GPruneConfig, align: int) -> Sublayer:
    pooled_down = merge_all([c.down for c in data])
    return _sublayer(down_w, [c.down_sample for c in data], [c.out_sqnorm for c in data], pooled_down.mean,
                     [torch.tensor([u]) for u in range(shape.ffn)], neuron_params(down_w.shape[0]), align, cfg.lam,
                     cfg.bias_comp)


def _kv_sublayer(family, o_w, shape, data, cfg: GPruneConfig) -> Sublayer:
    pooled_o = merge_all([c.o for c in data])
    return _sublayer(o_w, [c.o_sample for c in data], [c.mid_sqnorm for c in data], pooled_o.mean,
                     [family.query_rows(shape, torch.tensor([g])) for g in range(shape.kv_heads)],
                     kv_group_params(shape, o_w.shape[0], family.qkv_bias), 1, cfg.lam, cfg.bias_comp)


@dataclass
class LayerUnits:
    """One layer's units as GPrune sees them: removal queues, rankings and, with measured cost, each
    sublayer's removal path. Nothing here holds the layer's weights."""
    ffn_queues: list[list[int]]  # one removal order per module (protected units in none)
    kv_queue: list[int]
    ffn_ranking: torch.Tensor  # robust z of the mean base score (allocation without measured cost)
    kv_ranking: torch.Tensor
    protected: torch.Tensor
    sensitivity: torch.Tensor
    modules: list[dict]  # diagnostics per module
    first_queue: int = 0  # global index of this layer's first queue (the FFN's; the KV queue is last)
    ffn_path: list[Pop] | None = None
    kv_path: list[Pop] | None = None

    def queues(self) -> tuple[list[Queue], Queue]:
        """Fresh FFN queues and the KV queue (positions at the start)."""
        return [Queue(0, order) for order in self.ffn_queues], Queue(1, self.kv_queue)


def _layer_units(family, layer, shape, data, cfg: GPruneConfig, first_queue: int) -> LayerUnits:
    view, labels, switched, score, protected, raw = _ffn_units(family, layer, data, cfg)
    kv_view, kv_raw = _kv_units(family, layer, shape, data, cfg.metric)
    queues, modules = [], []
    for m in range(int(labels.max()) + 1):
        members = ((labels == m) & ~protected).nonzero().flatten()
        queues.append(members[torch.argsort(score[members], stable=True)].tolist())
        in_m = labels == m
        modules.append({"module": m, "units": int(in_m.sum()), "protected": int((protected & in_m).sum()),
                        "switched_to_magnitude": m in switched,
                        "mean_sensitivity": round(float(view.sensitivity[in_m].mean()), 4),
                        "mean_frequency": round(float(view.frequency[in_m].mean()), 4)})
    return LayerUnits(queues, torch.argsort(kv_view.mean_rank, stable=True).tolist(),
                      torch.where(protected, torch.inf, standardize(raw.mean(0), robust=True)),
                      standardize(kv_raw.mean(0), robust=True), protected, view.sensitivity, modules, first_queue)


def _removal_paths(family, layer, shape, data, lu: LayerUnits, cfg: GPruneConfig, align: int) -> None:
    """Both sublayers' removal paths for the global greedy over measured cost (gprune.measured)."""
    ffn_queues, kv_queue = lu.queues()
    lu.ffn_path = removal_path(_ffn_sublayer(family.down_proj(layer).weight, shape, data, cfg, align), ffn_queues,
                               lu.first_queue, align)
    lu.kv_path = removal_path(_kv_sublayer(family, family.o_proj(layer).weight, shape, data, cfg), [kv_queue],
                              lu.first_queue + len(ffn_queues), 1)


def _allocate_measured(layers: ModelLayers, units: list[LayerUnits], calib, cfg: GPruneConfig, target: float,
                       align: int):
    """Global greedy over measured cost (the layers' paths merged), then each layer's FFN width aligned;
    returns kept FFN neurons and KV groups per layer, and how many units each module gave up."""
    taken = merge_paths([p for lu in units for p in (lu.ffn_path, lu.kv_path)], target)
    ffn_keep, kv_keep, removed = [], [], []
    for i, lu in enumerate(units):
        ffn_queues, _ = lu.queues()
        ffn = _ffn_sublayer(layers.weight(i, "down_proj"), layers.shapes[i], _datasets(calib, i, cfg.per_dataset),
                            cfg, align)
        replay(ffn, ffn_queues, lu.first_queue, lu.ffn_path[:taken[2 * i]])
        align_sublayer(ffn, ffn_queues, align)
        ffn_keep.append(_kept(ffn))
        gone = {u for pop in lu.kv_path[:taken[2 * i + 1]] for u in pop.units}
        kv_keep.append(torch.tensor([g for g in range(layers.shapes[i].kv_heads) if g not in gone], dtype=torch.long))
        removed.append([q.pos for q in ffn_queues])
    return ffn_keep, kv_keep, removed


def _allocate_ranked(units: list[LayerUnits], shapes, hidden, qkv_bias, sparsity, align):
    """Ablation of measured cost: robust z-scores compete globally (FLAP's structure search with
    median/MAD); inside a layer every module gives up the same share of its queue."""
    counts = global_counts([lu.ffn_ranking for lu in units], [lu.kv_ranking for lu in units], shapes, hidden,
                           qkv_bias, sparsity, align)
    ffn_keep = [_ffn_by_share(lu, shape, n_ffn) for lu, shape, (n_ffn, _) in zip(units, shapes, counts)]
    return ffn_keep, [top_k(lu.kv_ranking, n_kv) for lu, (_, n_kv) in zip(units, counts)]


def _ffn_by_share(lu: LayerUnits, shape, n_ffn: int) -> torch.Tensor:
    """The n_ffn neurons a layer keeps when every module gives up the same share of its removal queue
    (protected neurons, in no queue, are kept first)."""
    share = torch.full((shape.ffn,), torch.inf, dtype=torch.float64)
    for order in lu.ffn_queues:
        if order:
            share[torch.tensor(order)] = torch.arange(len(order), dtype=torch.float64) / len(order)
    return top_k(share, n_ffn)


def _make_uniform(units: list[LayerUnits], shapes, kv_kept: list[int], hidden, qkv_bias, sparsity, align):
    """The same widths in every layer (for runtimes that need the stock architecture): the allocation's
    mean KV groups per layer, then the FFN width that meets the budget; inside each layer the units
    GPrune would remove last."""
    if not is_uniform(shapes):
        raise GPruneError("uniform widths need a model whose layers are all the same size; this one has "
                          "per-layer widths already")
    shape = shapes[0]
    n_kv = max(1, round(sum(kv_kept) / len(kv_kept)))
    total = sum(layer_params(s, hidden, qkv_bias) for s in shapes)
    attention_removed = len(shapes) * (shape.kv_heads - n_kv) * kv_group_params(shape, hidden, qkv_bias)
    per_layer = max(0.0, sparsity * total - attention_removed) / (len(shapes) * neuron_params(hidden))
    n_ffn = aligned_width(shape.ffn - per_layer, align, shape.ffn)
    return ([_ffn_by_share(lu, shape, n_ffn) for lu in units],
            [_kv_kept(lu, shape, n_kv) for lu in units])


@register(GPruneConfig)
def plan(layers: ModelLayers, cfg: GPruneConfig, target: PruneTarget, calib) -> PrunePlan:
    family, shapes = layers.family, layers.shapes
    hidden, qkv_bias = layers.config.hidden_size, family.qkv_bias
    units, first_queue = [], 0
    for i, layer in tqdm(layers.each(), total=len(layers), desc="ranking units", unit="layer", leave=False):
        data = _datasets(calib, i, cfg.per_dataset)
        lu = _layer_units(family, layer, shapes[i], data, cfg, first_queue)
        if cfg.measured:
            _removal_paths(family, layer, shapes[i], data, lu, cfg, target.align)
        first_queue += len(lu.ffn_queues) + 1
        units.append(lu)
    removed = None
    if cfg.measured:
        budget = target.sparsity * sum(layer_params(s, hidden, qkv_bias) for s in shapes)
        ffn_keep, kv_keep, removed = _allocate_measured(layers, units, calib, cfg, budget, target.align)
    else:
        ffn_keep, kv_keep = _allocate_ranked(units, shapes, hidden, qkv_bias, target.sparsity, target.align)
    if cfg.uniform:
        ffn_keep, kv_keep = _make_uniform(units, shapes, [len(k) for k in kv_keep], hidden, qkv_bias,
                                          target.sparsity, target.align)
        removed = None  # the per-module counts were the per-layer allocation's
    keep = keep_sets(layers, ffn_keep, kv_keep, calib if cfg.bias_comp else None, cfg.bias_comp)
    return PrunePlan(keep, _diagnostics(layers, cfg, calib, units, ffn_keep, kv_keep, removed))


def _kv_kept(lu: LayerUnits, shape, n: int) -> torch.Tensor:
    """The n KV groups a layer keeps: those last in its removal queue."""
    return torch.tensor(sorted(lu.kv_queue[shape.kv_heads - n:]))


def _diagnostics(layers: ModelLayers, cfg: GPruneConfig, calib, units, ffn_keep, kv_keep, removed) -> dict:
    modules = []
    for i, lu in enumerate(units):
        for m, d in enumerate(lu.modules):
            gone = removed[i][m] if removed else None
            modules.append({"layer": i, **d, "removed": gone,
                            "sparsity": round(gone / d["units"], 4) if removed and d["units"] else None})
    sens = torch.cat([lu.sensitivity for lu in units]).float()
    hist = torch.histogram(sens, bins=20, range=(0.0, max(float(sens.max()), 1e-6)))
    return {
        "metric": cfg.metric, "options": cfg.to_dict(),
        "calibration": {"sources": calib.sources, **calib.timing},
        "layers": layer_diagnostics(layers, ffn_keep, kv_keep),
        "modules": modules,
        "switched_modules": [(d["layer"], d["module"]) for d in modules if d["switched_to_magnitude"]],
        "protected_neurons": [int(lu.protected.sum()) for lu in units],
        "sensitivity_histogram": {"counts": hist.hist.int().tolist(),
                                  "edges": [round(float(e), 5) for e in hist.bin_edges]},
    }


def _kept(sub: Sublayer) -> torch.Tensor:
    gone = set(sub.removed)
    return torch.tensor([u for u in range(sub.n_units) if u not in gone], dtype=torch.long)
