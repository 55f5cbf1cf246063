"""The pruning verbs. `prune_model` prunes a model in memory; `prune` is the file-to-file call behind
`gprune-edge prune`, which streams a checkpoint directory: calibration, planning, surgery,
reconstruction and writing each hold one decoder layer's weights at a time, so the model's size is
bounded by disk, not memory. Both run the same code on the same arithmetic (`ModelLayers`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from edgecore import distributed
from edgecore.checkpoint import save_config, save_tokenizer
from edgecore.families import fits_stock_layout, layer_shapes, stock_config
from edgecore.loading import load_config, load_model, resolve
from edgecore.model_layers import InMemoryLayers, ModelLayers, StreamedLayers, drop_weights
from edgecore.outputs import atomic_dir, claim_output
from edgecore.params import prunable_params
from edgecore.run_context import RunContext
from edgecore.safetensors_io import ShardWriter
from gprune import methods
from gprune.allocation import check_reachable
from gprune.calibration import Calibration, calibrate, calibration_windows
from gprune.diagnostics import PLOT_FILE, render_plot
from gprune.methods.registry import PrunePlan
from gprune.recipe import RECIPE_FILE, PruneRecipe
from gprune.reconstruction import Reconstruction
from gprune.surgery import check_alignment, empty_pruned_model, fill_layer, fill_outside_layers, with_biases

SUMMARY_FILE = "prune_summary.json"


def plan_pruning(layers: ModelLayers, tokenizer, recipe: PruneRecipe, calibration: Calibration | None = None,
                 context: RunContext | None = None) -> PrunePlan:
    """What survives of `layers` under `recipe` (calibrating first when the method reads activations)."""
    context = (context or RunContext()).resolve()
    check_alignment(layers.shapes, recipe.align)
    check_reachable(layers.shapes, layers.config.hidden_size, layers.family.qkv_bias, recipe.sparsity, recipe.align)
    if recipe.method.calibrated and calibration is None:
        cache = Path(context.calib_cache) if context.calib_cache else None
        device = distributed.init(context.torch_device())
        calibration = calibrate(layers, tokenizer, recipe.calib_config(), cache, device)
    return methods.plan(layers, recipe.method, recipe.target(), calibration if recipe.method.calibrated else None)


def pruned_layers(layers: ModelLayers, tokenizer, recipe: PruneRecipe, plan: PrunePlan, device):
    """(the pruned model with its weights still empty, (i, pruned layer i) for every layer in turn): each
    layer cut from the dense one on `device` and, with `recipe.reconstruct`, refitted (the reconstruction
    diagnostics go into `plan.diagnostics`). A layer's weights are the caller's to keep or drop."""
    settings = recipe.reconstruction
    keep = with_biases(plan.keep, layers.config.hidden_size) if recipe.reconstruct and settings.bias else plan.keep
    pruned = empty_pruned_model(layers.config, keep)
    family, targets = layers.family, layers.family.decoder_layers(pruned)

    def each():
        run = None
        if recipe.reconstruct:
            windows = {s: w[:settings.windows] for s, w in calibration_windows(tokenizer, recipe.calib_config()).items()}
            run = Reconstruction(windows, settings.ridge, settings.target)
            run.start(layers, device)
        for i in tqdm(range(len(layers)), desc="reconstructing" if run else "cutting", unit="layer", leave=False):
            with layers.layer(i, device) as dense:
                fill_layer(family, i, dense, layers.shapes[i], keep[i], targets[i])
                goal = run.dense_pass(family, dense) if run else None
            del dense  # streamed: the dense layer's memory goes before the fit
            if run:
                run.fit(family, targets[i], goal)
            yield i, targets[i]
        if run:
            plan.diagnostics["reconstruction"] = run.diagnostics()

    return pruned, each()


def prune_model(model, tokenizer, recipe: PruneRecipe, calibration: Calibration | None = None,
                context: RunContext | None = None):
    """(pruned model, plan): `model` pruned as `recipe` says; `model` itself is left untouched.

    Methods that read activations calibrate on `recipe.calib` unless `calibration` is given
    (statistics are cached under `context.calib_cache`, default the user cache). With
    `recipe.reconstruct` the kept output projections are then refitted on the calibration
    windows (gprune.reconstruction). Both move one layer at a time to `context.device`."""
    context = (context or RunContext()).resolve()
    layers = InMemoryLayers(model)
    plan = plan_pruning(layers, tokenizer, recipe, calibration, context)
    pruned, each = pruned_layers(layers, tokenizer, recipe, plan, context.torch_device())
    for _, layer in each:
        layer.to(layers.device)
    fill_outside_layers(pruned, layers.outside_tensors())
    pruned.generation_config = model.generation_config
    return pruned, plan


def write_pruned(layers: ModelLayers, tokenizer, recipe: PruneRecipe, plan: PrunePlan, directory: Path | None,
                 device):
    """Write the pruned checkpoint (weights in the source's precision, config, tokenizer) into `directory`,
    one layer at a time; returns its config. Without a directory (a torchrun process other than rank 0)
    the layers are computed, for their share of the reconstruction, and not written."""
    writer = ShardWriter(directory) if directory else None
    pruned, each = pruned_layers(layers, tokenizer, recipe, plan, device)
    prefix = layers.family.layers_path
    for i, layer in each:
        for name, tensor in layer.state_dict().items() if writer else ():
            writer.add(f"{prefix}.{i}.{name}", tensor.to(layers.dtype))
        drop_weights(layer)
    config = stock_config(pruned.config) if fits_stock_layout(pruned.config) else pruned.config
    if writer is None:
        return config
    for name, tensor in layers.outside_tensors():
        if not (pruned.config.tie_word_embeddings and name == "lm_head.weight"):
            writer.add(name, tensor.to(layers.dtype))
    writer.close()
    config.dtype = layers.dtype
    save_config(config, directory)
    layers.generation_config.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    return config


@dataclass
class PruneResult:
    out: Path
    prunable_before: int
    prunable_after: int

    @property
    def sparsity(self) -> float:
        return 1 - self.prunable_after / self.prunable_before


def prune(recipe: PruneRecipe, out: str | Path, overwrite: bool = False,
          context: RunContext | None = None) -> PruneResult:
    """Prune `recipe.model` as the recipe says and write the pruned checkpoint to `out`: model,
    tokenizer, recipe.json, prune_summary.json and prune_plot.png. A checkpoint directory is streamed
    one layer at a time; a .gguf file or a hub id is loaded whole first. Under `torchrun` the processes
    split the calibration and reconstruction windows between them and rank 0 writes."""
    context = (context or RunContext()).resolve()  # fail before the slow part
    device = distributed.init(context.torch_device())
    if distributed.rank() != 0:
        layers, tokenizer = _open(recipe.model, context)
        config = write_pruned(layers, tokenizer, recipe, plan_pruning(layers, tokenizer, recipe, context=context),
                              None, device)
        return PruneResult(Path(out), prunable_params(layers.config), prunable_params(config))
    with claim_output(out, overwrite, inputs=[recipe.model]) as out:
        check_alignment(layer_shapes(load_config(recipe.model, context.trust_remote_code)), recipe.align)
        started = time.perf_counter()
        layers, tokenizer = _open(recipe.model, context)
        plan = plan_pruning(layers, tokenizer, recipe, context=context)
        planned = time.perf_counter()
        with atomic_dir(out, overwrite) as tmp:
            config = write_pruned(layers, tokenizer, recipe, plan, tmp, device)
            before, after = prunable_params(layers.config), prunable_params(config)
            summary = {
                "prunable_params_before": before,
                "prunable_params_after": after,
                "sparsity_target": recipe.sparsity,
                "sparsity_achieved": 1 - after / before,
                "layers": [vars(s) for s in layer_shapes(config)],
                "seconds": round(time.perf_counter() - started, 2),
                "seconds_planning": round(planned - started, 2),  # loading, calibrating and deciding
                "seconds_writing": round(time.perf_counter() - planned, 2),  # cutting, reconstructing and writing
                "diagnostics": plan.diagnostics,
            }
            (tmp / RECIPE_FILE).write_text(recipe.to_json())
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            (tmp / PLOT_FILE).write_bytes(render_plot(summary))
        return PruneResult(Path(out), before, after)


def _open(spec: str, context: RunContext):
    """(ModelLayers, tokenizer): a checkpoint directory streamed, anything else loaded whole."""
    source = resolve(spec)
    if isinstance(source, Path) and source.is_dir():
        layers = StreamedLayers(source, context.trust_remote_code)
        return layers, layers.tokenizer()
    model, tokenizer = load_model(spec, trust_remote_code=context.trust_remote_code)
    return InMemoryLayers(model), tokenizer
