"""Text sources for calibration and perplexity: real offline data, a tiny tokenizer built here."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from edgecore import textdata as td
from edgecore.errors import GPruneError
from edgecore.pinned import cache_dir


@pytest.fixture(scope="module")
def byte_tokenizer():
    """A byte-level BPE trained in a few ms on a few strings: needs no hub."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 10 + ["def f(x):\n    return x"] * 10,
                            trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def word_tokenizer():
    """Whitespace words w0..w999, one id each, so a window's ids reveal where it came from."""
    vocab = {"[UNK]": 0, "<eos>": 1} | {f"w{i}": i + 2 for i in range(1000)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="[UNK]")


@pytest.mark.parametrize("name", td.SOURCE_NAMES)
def test_source_halves_are_disjoint_and_cached(name):
    calib, held_out = td.load_documents(name, "calib"), td.load_documents(name, split="eval")
    assert calib and held_out and all(isinstance(d, str) and d.strip() for d in calib + held_out)
    assert not set(calib) & set(held_out)
    assert 0.3 < len(calib) / (len(calib) + len(held_out)) < 0.7  # a hash split is roughly even
    assert td.load_documents(name) == calib  # deterministic
    [cached] = (cache_dir() / "text").glob(f"{name}-v{td.CACHE_VERSION}*.json")
    assert len(json.loads(cached.read_text())) == len(calib) + len(held_out)


def test_sources_look_like_their_distribution():
    all_wiki = td.load_documents("wiki", "calib") + td.load_documents("wiki", "eval")
    assert any(d.startswith("Albedo\n\n") for d in all_wiki)
    wiki = " ".join(td.load_documents("wiki"))
    assert "<ref" not in wiki and wiki.count("[[") == 0 and wiki.count("{{") < 5  # one unbalanced {{efn}}
    assert any("def " in d for d in td.load_documents("code"))
    assert all(d.startswith("A: ") and "\nB: " in d for d in td.load_documents("dialogue"))
    assert any("Introduction" in d for d in td.load_documents("science"))


def test_clean_wiki():
    raw = ("{{Infobox|a={{nested}}}}'''Albedo''' ({{IPA|x}}) is the [[diffuse reflection|diffuse reflectivity]] "
           "of a [[surface]].<ref name=\"a\">{{cite web|url=x}}</ref>\n[[File:A.svg|thumb|a [[link]]]]\n"
           "==Terrestrial albedo==\n{| class=\"wikitable\"\n|-\n| snow || 0.8\n|}\n"
           "See [http://example.org the site].\n[[Category:Climate]]\n==References==\n{{reflist}}")
    assert td.clean_wiki(raw) == ("Albedo is the diffuse reflectivity of a surface.\n\nTerrestrial albedo\n"
                                  "See the site.")


def test_token_windows_shape_determinism_and_no_overlap(word_tokenizer):
    docs = [" ".join(f"w{i}" for i in range(k, k + 100)) for k in range(0, 1000, 100)]  # 1000 + 9 eos tokens
    windows = td.token_windows(word_tokenizer, docs, n_samples=12, seq_len=64, seed=3)
    assert windows.shape == (12, 64) and windows.dtype == torch.long
    assert torch.equal(windows, td.token_windows(word_tokenizer, docs, 12, 64, seed=3))
    assert not torch.equal(windows, td.token_windows(word_tokenizer, docs, 12, 64, seed=4))
    stream = td._token_stream(word_tokenizer, docs, "test")
    assert len(stream) == 1009 and (stream == 1).sum() == 9  # EOS between documents only
    position = {int(t): i for i, t in enumerate(stream) if t != 1}  # word ids are unique
    starts = []
    for w in windows:
        j = next(j for j, t in enumerate(w.tolist()) if t != 1)
        starts.append(position[int(w[j])] - j)
        assert torch.equal(stream[starts[-1]:starts[-1] + 64], w)
    starts.sort()
    assert all(b - a >= 64 for a, b in zip(starts, starts[1:]))


def test_token_windows_on_real_text(byte_tokenizer):
    docs = td.load_documents("news", "calib")
    windows = td.token_windows(byte_tokenizer, docs, n_samples=8, seq_len=256, seed=0)
    assert windows.shape == (8, 256) and int(windows.max()) < len(byte_tokenizer)


def test_token_windows_too_short_names_source_and_count(word_tokenizer):
    with pytest.raises(GPruneError, match=r"text source tiny has 3 tokens.*4 windows of 8 tokens"):
        td.token_windows(word_tokenizer, ["w1 w2 w3"], n_samples=4, seq_len=8, source="tiny")
    with pytest.raises(GPruneError, match="empty"):
        td.token_windows(word_tokenizer, ["", "  \n"], n_samples=1, seq_len=1)


def test_eval_windows_are_consecutive(word_tokenizer):
    docs = [" ".join(f"w{i}" for i in range(300))]
    windows = td.eval_windows(word_tokenizer, docs, seq_len=50, max_windows=4)
    assert windows.shape == (4, 50)
    assert torch.equal(windows.flatten(), td._token_stream(word_tokenizer, docs, "t")[:200])
    assert td.eval_windows(word_tokenizer, docs, seq_len=50, max_windows=100).shape == (6, 50)
    with pytest.raises(GPruneError, match="fewer than one window"):
        td.eval_windows(word_tokenizer, docs, seq_len=500, max_windows=1)


def test_bad_names_and_splits():
    with pytest.raises(GPruneError, match="known: wiki, news, science, code, dialogue, boolq"):
        td.load_documents("wikipedia")
    with pytest.raises(GPruneError, match="unknown text split"):
        td.load_documents("news", "test")
    with pytest.raises(GPruneError, match="does not exist"):
        td.load_documents("/nonexistent/corpus.txt")


def test_local_files(tmp_path):
    paragraphs = [f"paragraph {i} line one\nline two of {i}" for i in range(40)]
    txt = tmp_path / "corpus.txt"
    txt.write_text("\n\n".join(paragraphs) + "\n")
    calib, held_out = td.load_documents(str(txt)), td.load_documents(str(txt), "eval")
    assert sorted(calib + held_out) == sorted(paragraphs) and not set(calib) & set(held_out)

    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    assert td.load_documents(str(jsonl)) == calib

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(GPruneError):
        td.load_documents(str(empty))


def test_hub_names(monkeypatch):
    assert td.parse_hub_name("hf:Salesforce/wikitext/wikitext-2-raw-v1:test@text") == (
        "Salesforce/wikitext", "wikitext-2-raw-v1", "test", "text")
    assert td.parse_hub_name("hf:allenai/c4") == ("allenai/c4", None, "train", "text")
    with pytest.raises(GPruneError, match="expected hf:DATASET"):
        td.parse_hub_name("hf:a/b/c/d")
    # the hub is unreachable here; offline mode makes the failure immediate instead of retried
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GPruneError, match="could not load hub text source hf:allenai/c4"):
        td.load_documents("hf:allenai/c4/en:validation@text")
