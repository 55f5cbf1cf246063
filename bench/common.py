"""What the bench scripts share: the settings of the pruning benchmarks (calibration and evaluation
distributions, sparsities, baselines, ablations, the recipe), held-out evaluation windows and a
torch model's perplexity on them (scored by runtime_checks, as `verify` scores every runtime),
and JSON-lines results. Not a script: the scripts import it (`from common import ...`; bench/ is
on sys.path when one runs as `python bench/X.py`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgecore import textdata
from edgecore.params import prunable_params
from gprune.methods import method_config
from gprune.recipe import PruneRecipe
from runtime_checks.accuracy import window_perplexity
from runtime_checks.backends.torch_backend import TorchBackend

CALIB = ["wiki", "news", "code"]
EVAL = ["wiki", "news", "code", "science", "dialogue", "boolq"]  # last three: out of calibration
OOD = [d for d in EVAL if d not in CALIB]
SPARSITIES = [0.10, 0.20, 0.35, 0.50]
BASELINES = ["magnitude", "wanda-sp", "flap"]
ABLATIONS = {  # name -> gprune options (each switches one step off)
    "no-sensitivity": {"sensitivity": False}, "no-modules": {"modules": 1}, "no-reliability": {"reliability": False},
    "no-outliers": {"outliers": False}, "no-measured": {"measured": False}, "lam=0": {"lam": 0.0},
    "pooled": {"per_dataset": False}, "no-bias-comp": {"bias_comp": False},
}


def recipe(method: str, sparsity: float, options: dict | None = None, reconstruct: bool | None = False, **fields):
    """The benchmarks' PruneRecipe: SmolLM2-135M, FFN widths a multiple of 32, seed 0, 16 windows of
    256 tokens from each CALIB source; `fields` override any of it."""
    settings = dict(model="smollm2-135m", align=32, seed=0, calib=CALIB, n_samples=16, seq_len=256)
    return PruneRecipe(**{**settings, **fields}, method=method_config(method, options), sparsity=sparsity,
                       reconstruct=reconstruct)


def achieved(pruned, dense) -> float:
    """Share of the dense model's prunable parameters the pruned model lost."""
    return round(1 - prunable_params(pruned.config) / prunable_params(dense.config), 4)


def eval_sets(tokenizer, windows: int, seq_len: int = 256, names=EVAL) -> dict:
    """{distribution: [windows, seq_len] token ids} from the start of each distribution's eval half."""
    return {d: textdata.eval_windows(tokenizer, textdata.load_documents(d, "eval"), seq_len, windows, source=d)
            for d in names}


def perplexity(model, windows) -> float:
    """Perplexity of a torch model in memory (on its own device) over [n, seq_len] token windows."""
    return window_perplexity(TorchBackend.from_model(model), windows.tolist())


def gmean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def append_jsonl(path, row: dict) -> None:
    """Append `row` as one JSON line, written whole (serialised first, one write), creating folders."""
    line = json.dumps(row) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(line)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
