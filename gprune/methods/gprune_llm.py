"""GPrune-LLM as docs/DESIGN.md reads it. Every step can be switched off
through GPruneConfig (methods/configs.py): distribution sensitivity, behaviour-consistent
modules, the reliability switch, outlier protection, measured-cost allocation (off: robust
standardized scores compete globally, as FLAP but median/MAD), the worst-dataset weight,
per-dataset calibration and bias compensation; `uniform` makes every layer the same size.

The measured cost is layer-local (how much a sublayer's output changes); `gains` can turn it
into what the removal costs at the model's output, one factor per sublayer. `gains="measured"`:
a probe removes the sublayer's first units in its removal order (PROBE_SHARE of the FFN's
neurons, the attention's first KV group); the KL divergence of the model's next-token
distribution from the dense one, over the probe's relative change of the layer's output on
the same tokens, is the gain. It helps at 10-20% sparsity and hurts at 35% (BENCHMARKS.md,
issue 14), so it is not the default.

`search` (generations, 0 = off) then refines the greedy's per-layer widths at the model's output
(gprune.width_search): candidates are priced by the KL of the whole pruned model, simulated
with OutputProbe, and inside a layer the units removed are always the greedy's own order for
that layer (`_ffn_order`), so only the widths change."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from edgecore.errors import GPruneError
from edgecore.families import family_of, is_uniform, layer_shapes
from edgecore.params import kv_group_params, layer_params, neuron_params
from gprune.allocation import global_counts, standardize, top_k
from gprune.calibration import LayerCalib
from gprune.fisher_gains import fisher_gains
from gprune.measured import Queue, Sublayer, align_sublayer, greedy
from gprune.methods import PrunePlan
from gprune.methods.common import keep_sets, layer_diagnostics
from gprune.methods.configs import GPruneConfig
from gprune.metrics import channel_scores, ffn_magnitude, group_channels, kv_magnitude, removed_of
from gprune.neuron_groups import modules_of, outliers, unit_view, unreliable_modules
from gprune.output_probe import OutputProbe
from gprune.stats import merge_all
from gprune.surgery import aligned_width
from gprune.width_search import Space, Widths, search_widths

PROBE_SHARE = 0.2  # share of a layer's FFN neurons a gain probe removes
# calibration windows per source, and tokens of each, the gains run the whole model on: the probes
# read more documents' first halves (attention's gains vary with the document)
GAIN_WINDOWS = {"measured": (4, 128), "fisher": (8, None)}
# the width search's cheap price, its full price, and a check on windows neither read (windows per source, tokens)
SEARCH_WINDOWS = {"cheap": (slice(0, 1), 128), "full": (slice(0, 4), 128), "held_out": (slice(4, 8), 128)}


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
    protected = outliers(torch.stack([c.down.rms for c in data]), cfg.outlier_factor) if cfg.outliers \
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


def _capped_keep(n_units: int, sparsity: float, cap: float) -> int:
    """Units a sublayer keeps at least when it may give up at most cap x the global sparsity."""
    if cap <= 0:
        return 0
    return math.ceil(n_units * (1 - min(1.0, cap * sparsity)))


@dataclass
class LayerUnits:
    """One layer's units as GPrune sees them: two sublayers with their removal queues."""
    ffn: Sublayer
    kv: Sublayer
    ffn_queues: list[list[int]]  # one removal order per module (protected units in none)
    kv_queue: list[int]
    ffn_ranking: torch.Tensor  # robust z of the mean base score (allocation without measured cost)
    kv_ranking: torch.Tensor
    protected: torch.Tensor
    sensitivity: torch.Tensor
    modules: list[dict]  # diagnostics per module
    ffn_mean: torch.Tensor  # mean input of down_proj / o_proj per channel, pooled over datasets
    kv_mean: torch.Tensor


def _layer_units(family, layer, shape, data, recipe) -> LayerUnits:
    cfg: GPruneConfig = recipe.method
    view, labels, switched, score, protected, raw = _ffn_units(family, layer, data, cfg)
    kv_view, kv_raw = _kv_units(family, layer, shape, data, cfg.metric)
    down_w, o_w = family.down_proj(layer).weight, family.o_proj(layer).weight
    hidden = down_w.shape[0]
    pooled_down, pooled_o = merge_all([c.down for c in data]), merge_all([c.o for c in data])
    ffn = _sublayer(down_w, [c.down_sample for c in data], [c.out_sqnorm for c in data], pooled_down.mean,
                    [torch.tensor([u]) for u in range(shape.ffn)], neuron_params(hidden),
                    max(recipe.align, _capped_keep(shape.ffn, recipe.sparsity, cfg.layer_cap)), cfg.lam, cfg.bias_comp)
    kv = _sublayer(o_w, [c.o_sample for c in data], [c.mid_sqnorm for c in data], pooled_o.mean,
                   [family.query_rows(shape, torch.tensor([g])) for g in range(shape.kv_heads)],
                   kv_group_params(shape, hidden, family.qkv_bias),
                   max(1, _capped_keep(shape.kv_heads, recipe.sparsity, cfg.layer_cap)), cfg.lam, cfg.bias_comp)
    queues, modules = [], []
    for m in range(int(labels.max()) + 1):
        members = ((labels == m) & ~protected).nonzero().flatten()
        queues.append(members[torch.argsort(score[members], stable=True)].tolist())
        in_m = labels == m
        modules.append({"module": m, "units": int(in_m.sum()), "protected": int((protected & in_m).sum()),
                        "switched_to_magnitude": m in switched,
                        "mean_sensitivity": round(float(view.sensitivity[in_m].mean()), 4),
                        "mean_frequency": round(float(view.frequency[in_m].mean()), 4)})
    return LayerUnits(ffn, kv, queues, torch.argsort(kv_view.mean_rank, stable=True).tolist(),
                      torch.where(protected, torch.inf, standardize(raw.mean(0), robust=True)),
                      standardize(kv_raw.mean(0), robust=True), protected, view.sensitivity, modules,
                      pooled_down.mean, pooled_o.mean)


def _allocate_measured(units: list[LayerUnits], target: float, align: int, chunk: int):
    """Global greedy over measured cost; returns kept FFN neurons and KV groups per layer, and
    how many units each module gave up."""
    subs, queues, chunks = [], [], []
    for lu in units:
        subs += [lu.ffn, lu.kv]
        chunks += [chunk, 1]
        queues += [Queue(len(subs) - 2, order) for order in lu.ffn_queues] + [Queue(len(subs) - 1, lu.kv_queue)]
    greedy(subs, queues, target, chunks)
    for s in range(0, len(subs), 2):
        align_sublayer(subs[s], [q for q in queues if q.sublayer == s], align)
    removed = [[q.pos for q in queues if q.sublayer == 2 * i] for i in range(len(units))]
    return [_kept(lu.ffn) for lu in units], [_kept(lu.kv) for lu in units], removed


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


def plan(model, recipe, calib) -> PrunePlan:
    cfg: GPruneConfig = recipe.method
    family, shapes = family_of(model.config), layer_shapes(model.config)
    hidden, qkv_bias = model.config.hidden_size, family.qkv_bias
    units = [_layer_units(family, layer, shape, _datasets(calib, i, cfg.per_dataset), recipe)
             for i, (layer, shape) in enumerate(zip(family.decoder_layers(model), shapes))]
    gains = None
    if cfg.gains != "local":
        gains = calib.gains if calib.gains is not None else _gains(model, cfg, calib, units)
        for lu, (attention_gain, ffn_gain) in zip(units, gains.tolist()):
            lu.kv.gain, lu.ffn.gain = attention_gain, ffn_gain
    removed = search = None
    if cfg.measured:
        target = recipe.sparsity * sum(layer_params(s, hidden, qkv_bias) for s in shapes)
        ffn_keep, kv_keep, removed = _allocate_measured(units, target, recipe.align,
                                                        int(cfg.chunk) or recipe.align)
        if cfg.search:
            ffn_keep, kv_keep, search = _search(model, recipe, calib, units, target, ffn_keep, kv_keep)
            removed = None  # the per-module counts were the greedy's
    else:
        ffn_keep, kv_keep = _allocate_ranked(units, shapes, hidden, qkv_bias, recipe.sparsity, recipe.align)
    if cfg.uniform:
        ffn_keep, kv_keep = _make_uniform(units, shapes, [len(k) for k in kv_keep], hidden, qkv_bias,
                                          recipe.sparsity, recipe.align)
        removed = None  # the per-module counts were the per-layer allocation's
    keep = keep_sets(model, ffn_keep, kv_keep, calib if cfg.bias_comp else None, cfg.bias_comp)
    diagnostics = _diagnostics(model, cfg, calib, units, ffn_keep, kv_keep, removed, gains)
    return PrunePlan(keep, diagnostics | {"search": search})


def _window_ids(calib, windows: slice, tokens: int | None) -> torch.Tensor:
    return torch.cat([w[windows, :tokens] for w in calib.windows.values()])


def _gains(model, cfg: GPruneConfig, calib, units: list[LayerUnits]) -> torch.Tensor:
    """[layers, 2] attention/FFN gains, normalised to mean 1 (only their ratios matter)."""
    windows, tokens = GAIN_WINDOWS[cfg.gains]
    ids = _window_ids(calib, slice(0, windows), tokens)
    if cfg.gains == "fisher":
        return fisher_gains(model, ids)
    shapes = layer_shapes(model.config)
    probe = OutputProbe(model, ids)
    gains = torch.zeros(len(units), 2, dtype=torch.float64)
    layers = tqdm(zip(units, shapes), total=len(units), desc="gain probes", unit="layer", leave=False)
    for i, (lu, shape) in enumerate(layers):
        for column, (part, sub, mean, removed) in enumerate((
                ("attention", lu.kv, lu.kv_mean, lu.kv_queue[:1]),
                ("ffn", lu.ffn, lu.ffn_mean,
                 removed_of(_ffn_by_share(lu, shape, round(shape.ffn * (1 - PROBE_SHARE))), shape.ffn).tolist()))):
            channels = torch.cat([sub.unit_channels[u] for u in removed])
            kl, local = probe.measure(i, part, *_held(channels, mean, cfg))
            gains[i, column] = kl / max(local, 1e-12)
    return gains / gains.mean()


def _kv_kept(lu: LayerUnits, shape, n: int) -> torch.Tensor:
    """The n KV groups a layer keeps: those last in its removal queue."""
    return torch.tensor(sorted(lu.kv_queue[shape.kv_heads - n:]))


def _held(channels: torch.Tensor, mean: torch.Tensor, cfg: GPruneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(channels, the values pruning leaves them at): their mean with bias compensation, else 0."""
    return channels, mean[channels] if cfg.bias_comp else torch.zeros(len(channels))


def _ffn_order(lu: LayerUnits, chunk: int) -> torch.Tensor:
    """The layer's FFN neurons in the order the greedy removes them when only this layer gives up
    units. A sublayer's costs depend only on its own removals, so this is also the global greedy's
    order restricted to the layer: any width keeps the units the greedy would."""
    sub = dataclasses.replace(lu.ffn, removed=[], objective=0.0, version=0)
    greedy([sub], [Queue(0, list(order)) for order in lu.ffn_queues], math.inf, [chunk])
    return torch.tensor(sub.removed, dtype=torch.long)


def _search(model, recipe, calib, units: list[LayerUnits], target: float, ffn_keep, kv_keep):
    """The greedy's widths refined by gprune.width_search, priced by the KL at the model's output with
    the removed channels held as pruning holds them; inside a layer the greedy's removal order."""
    cfg: GPruneConfig = recipe.method
    family, shapes, hidden = family_of(model.config), layer_shapes(model.config), model.config.hidden_size
    orders = [_ffn_order(lu, int(cfg.chunk) or recipe.align) for lu in units]
    space = Space(tuple(s.ffn - len(o) for s, o in zip(shapes, orders)), tuple(s.ffn for s in shapes),
                  tuple(s.kv_heads for s in shapes), recipe.align, neuron_params(hidden),
                  tuple(kv_group_params(s, hidden, family.qkv_bias) for s in shapes), target)

    def holds(w: Widths) -> dict:
        out = {}
        for i, (lu, shape, order) in enumerate(zip(units, shapes, orders)):
            groups = torch.tensor(lu.kv_queue[:shape.kv_heads - w.kv[i]], dtype=torch.long)
            for part, channels, mean in (("ffn", order[:shape.ffn - w.ffn[i]], lu.ffn_mean),
                                         ("attention", family.query_rows(shape, groups), lu.kv_mean)):
                out[i, part] = _held(channels, mean, cfg)
        return out

    ids = {name: _window_ids(calib, windows, tokens) for name, (windows, tokens) in SEARCH_WINDOWS.items()}
    probes = {name: OutputProbe(model, i) for name, i in ids.items() if i.numel()}  # held_out needs 8 windows
    start = Widths(tuple(len(f) for f in ffn_keep), tuple(len(k) for k in kv_keep))
    widths, log = search_widths(start, space, lambda w: probes["cheap"].kl(holds(w)),
                                lambda w: probes["full"].kl(holds(w)), int(cfg.search), recipe.seed)
    if "held_out" in probes:  # windows the search never read: does what it found carry over?
        log["held_out_start"], log["held_out_end"] = (probes["held_out"].kl(holds(w)) for w in (start, widths))
    if widths == start:
        return ffn_keep, kv_keep, log
    # removed_of gives the complement: the neurons not in the order's first (ffn - n), i.e. those kept
    keep_ffn = [removed_of(order[:shape.ffn - n], shape.ffn) for order, shape, n in zip(orders, shapes, widths.ffn)]
    keep_kv = [_kv_kept(lu, shape, n) for lu, shape, n in zip(units, shapes, widths.kv)]
    return keep_ffn, keep_kv, log


def _diagnostics(model, cfg: GPruneConfig, calib, units, ffn_keep, kv_keep, removed, gains) -> dict:
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
        "layers": layer_diagnostics(model, ffn_keep, kv_keep),
        "modules": modules,
        "switched_modules": [(d["layer"], d["module"]) for d in modules if d["switched_to_magnitude"]],
        "protected_neurons": [int(lu.protected.sum()) for lu in units],
        "gains": None if gains is None else [[round(float(g), 4) for g in row] for row in gains],
        "sensitivity_histogram": {"counts": hist.hist.int().tolist(),
                                  "edges": [round(float(e), 5) for e in hist.bin_edges]},
    }


def _kept(sub: Sublayer) -> torch.Tensor:
    gone = set(sub.removed)
    return torch.tensor([u for u in range(sub.n_units) if u not in gone], dtype=torch.long)
