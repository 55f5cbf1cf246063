"""Recovery by distillation (`recovery.distill`, `gprune-edge recover`) on tiny random models:
the KL to the teacher falls on held-out text; an interrupted, resumed run ends where an
uninterrupted one does; LoRA adapters merge into plain weights; the data-free "self" source is
generated once and cached; bad inputs are refused in one line and leave nothing behind."""

import copy
import json
import random

import pytest
import torch
from bad_inputs import no_leftovers, refused, run, tiny_dir
from tiny import VOCAB, tiny_model, tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from edgecore import textdata
from edgecore.errors import GPruneError
from edgecore.families import layer_shapes
from edgecore.loading import load_model
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe
from recovery.config import BUILTIN_SOURCES, DistillConfig
from recovery.data import (GEN_BATCH, GEN_CACHE, generate_batch, heldout_windows, self_cache_path, self_generated_stream,
                           split_budget, training_windows)
from recovery.distill import CURVE_FILE, RECOVERY_FILE, distill_model, partial_dir, recover
from recovery.loss import heldout_kl

SEQ, BATCH = 32, 2
TOKENS_PER_STEP = SEQ * BATCH


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine extra threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_text(path, n_docs=8, chars=600, seed=0):
    """Documents of characters the tiny tokenizer maps one-to-one to ids, blank-line separated
    (a .txt source alternates them between the training and the held-out half)."""
    rnd = random.Random(seed)
    alphabet = [chr(c) for c in range(33, 33 + VOCAB - 4)]
    common = alphabet[:20]
    docs = ["".join(rnd.choice(common if rnd.random() < 0.7 else alphabet) for _ in range(chars))
            for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return str(write_text(tmp_path_factory.mktemp("text") / "text.txt"))


def pruned_student(teacher):
    student, _ = prune_model(teacher, tiny_tokenizer(), PruneRecipe(method="magnitude", sparsity=0.3, align=8))
    return student


def config(text, steps, **fields):
    base = dict(tokens=steps * TOKENS_PER_STEP, seq_len=SEQ, batch_size=BATCH, lr=3e-3, data=[text], save_steps=0,
                eval_windows=4)
    return DistillConfig(**{**base, **fields})


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k


class Interrupted(Exception):
    pass


class InterruptAt(TrainerCallback):
    """Kills the run (an exception out of Trainer.train) before step `step` + 1 starts."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupted(f"interrupted after step {self.step}")


# ----------------------------------------------------------------------------- config

def test_config_round_trips_and_refuses_bad_values():
    cfg = DistillConfig(tokens=1000, data="wiki, self ,wiki", lora_rank=4)
    assert cfg.data == ["wiki", "self"]
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.learning_rate() == 2e-4 and DistillConfig().learning_rate() == 5e-5
    # defaults scale with the device: 4 windows on the CPU, 32 on CUDA; the rate with sqrt(tokens per step)
    assert DistillConfig().batch_for("cpu") == 4 and DistillConfig().batch_for("cuda") == 32
    assert DistillConfig(batch_size=8).batch_for("cuda") == 8
    assert DistillConfig().learning_rate(32 * 512) == pytest.approx(2e-4)
    assert DistillConfig(lr=1e-3).learning_rate(32 * 512) == 1e-3
    for bad, needle in [({"tokens": 0}, "positive"), ({"tokens": -3}, "positive"), ({"data": ["wikki"]}, "unknown"),
                        ({"data": []}, "no data sources"), ({"temperature": 0.0}, "temperature"),
                        ({"lora_rank": -1}, "lora_rank"), ({"tokenz": 5}, "no option 'tokenz'"),
                        ({"data": ["wiki", "news"], "weights": [1.0]}, "1 given for 2 data sources"),
                        ({"weights": [1.0, 0.0, 2.0]}, "positive"), ({"max_passes": 0}, "max_passes")]:
        with pytest.raises(GPruneError, match=needle):
            DistillConfig.from_dict(bad)
    assert set(BUILTIN_SOURCES) == set(textdata.SOURCE_NAMES)


# ----------------------------------------------------------------------------- in memory

def test_distillation_lowers_the_kl_on_held_out_windows(text):
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    student = pruned_student(teacher)
    shapes = layer_shapes(student.config)
    held_out = torch.cat(list(heldout_windows(tok, [text], SEQ, 6).values()))
    before = heldout_kl(student, teacher, held_out)
    student, history = distill_model(student, teacher, tok, config(text, 12), progress=False)
    after = heldout_kl(student, teacher, held_out)
    assert after < 0.7 * before, (before, after)
    assert history.heldout_kl["after"]["mean"] < history.heldout_kl["before"]["mean"]
    assert layer_shapes(student.config) == shapes  # widths unchanged
    assert history.steps == 12 and history.tokens_seen == 12 * TOKENS_PER_STEP
    assert [p["step"] for p in history.loss_history] == list(range(1, 13))
    assert not student.training


def test_hidden_state_term_and_temperature_train(text):
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    student = pruned_student(teacher)
    student, history = distill_model(student, teacher, tok, config(text, 3, hidden_weight=0.5, temperature=2.0,
                                                                   eval_windows=0), progress=False)
    assert len(history.loss_history) == 3 and all(p["loss"] > 0 for p in history.loss_history)
    assert history.heldout_kl == {}


def test_gradient_checkpointing_trains_the_same_weights(text):
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    base = pruned_student(teacher)
    plain, _ = distill_model(copy.deepcopy(base), teacher, tok, config(text, 3, eval_windows=0), progress=False)
    recomputed, _ = distill_model(copy.deepcopy(base), teacher, tok,
                                  config(text, 3, eval_windows=0, gradient_checkpointing=True), progress=False)
    assert_same_weights(weights(recomputed), weights(plain))
    assert any(not torch.equal(v, weights(base)[k]) for k, v in weights(plain).items())


def test_compiled_training_trains_the_same_weights(text):
    """--compile: the student's forward and backward compiled by torch.compile (inductor), the loss's
    hook on the final norm traced with it."""
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    base = pruned_student(teacher)
    eager, _ = distill_model(copy.deepcopy(base), teacher, tok, config(text, 3, eval_windows=0), progress=False)
    torch._dynamo.utils.counters.clear()
    compiled, _ = distill_model(copy.deepcopy(base), teacher, tok, config(text, 3, eval_windows=0, compile=True),
                                progress=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it was compiled
    assert type(compiled) is type(base)  # the plain model comes back, not the compiled wrapper
    for key, value in weights(compiled).items():
        assert torch.allclose(value, weights(eager)[key], atol=1e-4), key


@pytest.mark.parametrize("lora_rank", [0, 2], ids=["full", "lora"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, text, lora_rank):
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    base = pruned_student(teacher)
    cfg = config(text, 6, save_steps=2, eval_windows=0, lora_rank=lora_rank)

    whole, _ = distill_model(copy.deepcopy(base), teacher, tok, cfg, progress=False)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        distill_model(copy.deepcopy(base), teacher, tok, cfg, ckpt_dir=ckpt, callbacks=[InterruptAt(5)],
                      progress=False)
    assert (ckpt / "checkpoint-4").is_dir() and not (ckpt / "checkpoint-6").exists()
    with pytest.raises(GPruneError, match="pass --resume"):  # progress is never restarted silently
        distill_model(copy.deepcopy(base), teacher, tok, cfg, ckpt_dir=ckpt, progress=False)
    with pytest.raises(GPruneError, match="started differently.*tokens"):
        distill_model(copy.deepcopy(base), teacher, tok, cfg.replace(tokens=8 * TOKENS_PER_STEP), ckpt_dir=ckpt,
                      resume=True, progress=False)

    resumed, history = distill_model(copy.deepcopy(base), teacher, tok, cfg, ckpt_dir=ckpt, resume=True,
                                     progress=False)
    assert history.resumed_from_step == 4 and history.steps == 6
    assert [p["step"] for p in history.loss_history] == list(range(1, 7))
    assert_same_weights(weights(resumed), weights(whole))
    moved = [k for k, v in weights(whole).items() if not torch.equal(v, weights(base)[k])]
    assert moved and (not lora_rank or all(k.endswith("_proj.weight") for k in moved))
    assert not (ckpt / "checkpoint-6").exists()  # no checkpoint of the finished run


def test_self_generated_text_is_cached_and_deterministic(tmp_path, monkeypatch, text):
    monkeypatch.setenv("GPRUNE_CACHE", str(tmp_path / "cache"))
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    first = self_generated_stream(teacher, tok, 300, seed=0, progress=False)
    path = self_cache_path(teacher, tok, 0)
    assert path.is_file() and len(first) >= 300
    stored = path.read_text()
    again = self_generated_stream(teacher, tok, 300, seed=0, progress=False)
    assert torch.equal(first, again) and path.read_text() == stored  # read back, not generated again
    longer = self_generated_stream(teacher, tok, 3000, seed=0, progress=False)
    assert torch.equal(longer[:len(first)], first)  # a bigger budget extends the cache
    _, history = distill_model(pruned_student(teacher), teacher, tok,
                               config(text, 2, data=["self", text], eval_windows=1), progress=False)
    assert set(history.data) == {"self", text} and list(history.heldout_kl["before"]) == [text, "mean"]


def test_a_static_cache_samples_the_text_a_dynamic_one_does(monkeypatch):
    """On CUDA 'self' text is sampled with a static KV cache (so generate() compiles its decoding step);
    the sequences are those of the dynamic cache, every batch padded to one prompt length."""
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    dynamic = [generate_batch(teacher, tok, seed=0, batch=b) for b in range(2)]
    monkeypatch.setitem(GEN_CACHE, "cpu", "static")
    assert [generate_batch(teacher, tok, seed=0, batch=b) for b in range(2)] == dynamic
    assert dynamic[0] != dynamic[1] and all(len(seqs) == GEN_BATCH["cpu"] for seqs in dynamic)


def test_budget_follows_the_mixture_weights():
    assert split_budget(10, ["a", "b", "c"]) == {"a": 4, "b": 3, "c": 3}
    assert split_budget(10, ["a", "b", "c"], [3, 1, 1]) == {"a": 6, "b": 2, "c": 2}
    assert split_budget(7, ["a", "b"], [1, 2]) == {"a": 2, "b": 5}  # 2.33 / 4.67: the larger remainder rounds up
    assert sum(split_budget(1001, ["a", "b", "c"], [0.2, 0.3, 0.5]).values()) == 1001


def test_a_source_past_its_passes_is_topped_up_by_the_teacher(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GPRUNE_CACHE", str(tmp_path / "cache"))
    teacher, tok = tiny_model(seed=0), tiny_tokenizer()
    short = write_text(tmp_path / "short.txt", n_docs=2, chars=200)  # one training document: 5-6 windows a pass
    windows, info = training_windows(tok, [str(short)], 20, SEQ, teacher=teacher, progress=False, max_passes=2)
    assert windows.shape == (20, SEQ)
    assert info[str(short)] == {"windows": 10, "passes": 2, "capped": 10}
    assert info["self"]["windows"] == 10
    assert "10 windows come from self" in caplog.text
    with pytest.raises(GPruneError, match="needs the teacher"):
        training_windows(tok, [str(short)], 20, SEQ, max_passes=2)
    _, uncapped = training_windows(tok, [str(short)], 20, SEQ, max_passes=10)
    assert uncapped == {str(short): {"windows": 20, "passes": 4}}


# ----------------------------------------------------------------------------- files and CLI

@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory):
    """A tiny dense model and its magnitude-pruned copy (with recipe.json naming the dense one)."""
    root = tmp_path_factory.mktemp("models")
    teacher = tiny_dir(root / "dense")
    result = run("prune", "-m", teacher, "--method", "magnitude", "-s", 0.3, "--align", 8, "--out", root / "pruned")
    assert result.exit_code == 0, result.output
    return root / "pruned"


def recover_args(pruned, out, text, *extra, steps=4):
    return ["recover", pruned, "--tokens", steps * TOKENS_PER_STEP, "--seq-len", SEQ, "--batch-size", BATCH,
            "--lr", 3e-3, "--data", text, "--device", "cpu", "--eval-windows", 2, "--out", out, *extra]


def test_recover_writes_the_pruned_format_with_its_records(tmp_path, pruned_dir, text):
    out = tmp_path / "recovered"
    result = run(*recover_args(pruned_dir, out, text, "--save-steps", 2))
    assert result.exit_code == 0, result.output
    assert "held-out KL" in result.output and "saved to" in result.output
    model, _ = load_model(str(out))
    source, _ = load_model(str(pruned_dir))
    assert layer_shapes(model.config) == layer_shapes(source.config)
    assert (out / "recipe.json").read_text() == (pruned_dir / "recipe.json").read_text()
    record = json.loads((out / RECOVERY_FILE).read_text())
    assert record["teacher"] == json.loads((pruned_dir / "recipe.json").read_text())["model"]  # the default teacher
    assert record["tokens_seen"] == 4 * TOKENS_PER_STEP and len(record["loss_history"]) == 4
    assert DistillConfig.from_dict(record["config"]).tokens == 4 * TOKENS_PER_STEP
    assert (out / CURVE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert not partial_dir(out).exists()

    # the same run again from its recovery.json: same weights
    again = tmp_path / "again"
    assert run("recover", pruned_dir, "--config", out / RECOVERY_FILE, "--out", again).exit_code == 0
    assert_same_weights(weights(load_model(str(again))[0]), weights(model))


def test_lora_output_is_merged_plain_weights(tmp_path, pruned_dir, text):
    out = tmp_path / "lora"
    result = run(*recover_args(pruned_dir, out, text, "--lora-rank", 4, "--save-steps", 0, steps=3))
    assert result.exit_code == 0, result.output
    model, _ = load_model(str(out))  # loads as the plain pruned format: no adapter tensors
    source, _ = load_model(str(pruned_dir))
    assert weights(model).keys() == weights(source).keys()
    assert not list(out.glob("adapter*"))
    changed = [k for k, v in weights(model).items() if not torch.equal(v, weights(source)[k])]
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # only the adapted projections moved


def test_interrupted_recover_resumes_to_the_same_output(tmp_path, pruned_dir, text):
    cfg = DistillConfig(tokens=5 * TOKENS_PER_STEP, seq_len=SEQ, batch_size=BATCH, lr=3e-3, data=[text],
                        save_steps=2, eval_windows=0)
    whole = tmp_path / "whole"
    recover(pruned_dir, cfg, whole, progress=False)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        recover(pruned_dir, cfg, out, callbacks=[InterruptAt(3)], progress=False)
    assert not out.exists() and (partial_dir(out) / "checkpoint-2").is_dir()
    args = ["recover", pruned_dir, "--config", whole / RECOVERY_FILE, "--out", out]
    refused(run(*args), "interrupted run", "--resume")
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads((out / RECOVERY_FILE).read_text())["resumed_from_step"] == 2
    assert_same_weights(weights(load_model(str(out))[0]), weights(load_model(str(whole))[0]))
    assert not partial_dir(out).exists()


# ----------------------------------------------------------------------------- bad inputs

def other_vocab_dir(path, vocab=VOCAB - 8):
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def other_tokenizer_dir(path):
    tiny_dir(path)
    vocab = json.loads((path / "tokenizer.json").read_text())
    table = vocab["model"]["vocab"]
    a, b = "A", "B"
    table[a], table[b] = table[b], table[a]  # same size, two ids swapped
    (path / "tokenizer.json").write_text(json.dumps(vocab))
    return path


@pytest.mark.parametrize("case", ["other-vocabulary", "other-tokenizer", "tokens-zero", "tokens-negative",
                                  "tokens-garbled", "missing-data-file", "unknown-data-source", "not-a-model",
                                  "no-such-dir", "no-recipe-no-teacher", "weights-garbled", "weights-count"])
def test_bad_inputs_are_refused_in_one_line_and_leave_nothing(tmp_path, pruned_dir, text, case):
    out = tmp_path / "out"
    args = dict(pruned=pruned_dir, tokens=4 * TOKENS_PER_STEP, data=text, extra=[])
    needles = {
        "other-vocabulary": ("different vocabularies",), "other-tokenizer": ("tokenizers differ",),
        "tokens-zero": ("positive",), "tokens-negative": ("positive",), "tokens-garbled": ("--tokens",),
        "missing-data-file": ("no such file",), "unknown-data-source": ("unknown data source 'wikki'",),
        "not-a-model": ("not a model directory",), "no-such-dir": ("not a model directory",),
        "no-recipe-no-teacher": ("give --teacher",), "weights-garbled": ("comma-separated list of float",),
        "weights-count": ("2 given for 1 data sources",),
    }[case]
    if case == "other-vocabulary":
        args["extra"] = ["--teacher", other_vocab_dir(tmp_path / "teacher")]
    elif case == "other-tokenizer":
        args["extra"] = ["--teacher", other_tokenizer_dir(tmp_path / "teacher")]
    elif case.startswith("tokens-"):
        args["tokens"] = {"tokens-zero": "0", "tokens-negative": "-5", "tokens-garbled": "lots"}[case]
    elif case == "missing-data-file":
        args["data"] = str(tmp_path / "missing.txt")
    elif case == "unknown-data-source":
        args["data"] = "wiki,wikki"
    elif case == "not-a-model":
        (tmp_path / "empty").mkdir()
        args["pruned"] = tmp_path / "empty"
    elif case == "no-such-dir":
        args["pruned"] = tmp_path / "nowhere"
    elif case == "no-recipe-no-teacher":
        args["pruned"] = tiny_dir(tmp_path / "bare")
    elif case.startswith("weights-"):
        args["extra"] = ["--weights", "2,x" if case == "weights-garbled" else "2,1"]
    refused(run("recover", args["pruned"], "--tokens", args["tokens"], "--seq-len", SEQ, "--batch-size", BATCH,
                "--data", args["data"], "--device", "cpu", "--out", out, *args["extra"]), *needles)
    no_leftovers(out)
    assert not partial_dir(out).exists()


def test_existing_output_is_refused_without_overwrite(tmp_path, pruned_dir, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(run(*recover_args(pruned_dir, out, text)), "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine" and not partial_dir(out).exists()


def test_recover_help_states_the_cpu_budget():
    result = run("recover", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "tens of thousands of tokens" in text and "millions need a GPU" in text
