"""How much GPrune's measured gains depend on the calibration windows the probes read (issue 14):
the gains measured on a chosen slice of the calibration windows, then imposed on prunes at
several sparsities (no reconstruction), each evaluated out of calibration as prune_grid does.

    python bench/gains_windows.py --first 0 --windows 8 --tokens 128 --sparsities 0.2,0.1 --out bench/results/gains_windows.jsonl"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import torch
from prune_grid import CALIB, EVAL, perplexity  # bench/ is on sys.path when run as a script

import gprune.methods.gprune_llm as gprune_llm
from edgecore import textdata
from edgecore.families import family_of, layer_shapes
from edgecore.loading import builtin_hf_dir, load_model
from gprune.calibration import calibrate, calibration_windows
from gprune.methods import method_config
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe

OOD = ["science", "dialogue", "boolq"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--first", type=int, default=0, help="first calibration window (per source) the probes read")
    ap.add_argument("--windows", type=int, default=4, help="windows per source the probes read")
    ap.add_argument("--tokens", type=int, default=128, help="tokens of each window")
    ap.add_argument("--sparsities", default="0.2,0.1")
    ap.add_argument("--eval-windows", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(str(builtin_hf_dir()))
    recipe = PruneRecipe(model="smollm2-135m", method=method_config("gprune", {"gains": "measured"}), sparsity=0.2,
                         align=32, calib=CALIB, n_samples=16, seq_len=256, reconstruct=False)
    calib = calibrate(model, tokenizer, recipe.calib_config())
    windows = calibration_windows(tokenizer, recipe.calib_config())
    calib.windows = {s: w[args.first:] for s, w in windows.items()}
    gprune_llm.GAIN_WINDOWS["measured"] = (args.windows, args.tokens)
    family, shapes = family_of(model.config), layer_shapes(model.config)
    units = [gprune_llm._layer_units(family, layer, shape, gprune_llm._datasets(calib, i, True), recipe)
             for i, (layer, shape) in enumerate(zip(family.decoder_layers(model), shapes))]
    t = time.perf_counter()
    gains = gprune_llm._gains(model, recipe.method, calib, units)
    gains_s = time.perf_counter() - t
    evals = {d: textdata.eval_windows(tokenizer, textdata.load_documents(d, "eval"), 256, args.eval_windows, source=d)
             for d in OOD}
    dense = {d: perplexity(model, w) for d, w in evals.items()}
    for sparsity in map(float, args.sparsities.split(",")):
        pruned, _ = prune_model(model, tokenizer, dataclasses.replace(recipe, sparsity=sparsity),
                                calibration=dataclasses.replace(calib, gains=gains))
        ratio = {d: perplexity(pruned, w) / dense[d] for d, w in evals.items()}
        row = {"first": args.first, "windows": args.windows, "tokens": args.tokens, "sparsity": sparsity,
               "ood": math.prod(ratio.values()) ** (1 / len(ratio)), "ratio": ratio, "gains": gains.tolist(),
               "gains_s": round(gains_s, 1)}
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(sparsity, round(row["ood"], 3), {d: round(r, 2) for d, r in ratio.items()}, flush=True)


if __name__ == "__main__":
    assert set(OOD) <= set(EVAL)
    main()
