"""Tokenizer metadata for GGUF: the vocabulary, token types, BPE merges (or
SentencePiece scores), special tokens, chat template and the llama.cpp
pre-tokenizer name, so that llama.cpp splits text exactly as the Hugging Face
tokenizer does."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import gguf

from edgecore.errors import GPruneError

log = logging.getLogger(__name__)

# Pre-tokenizer regexes from tokenizer.json that llama.cpp implements under a name.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _steps(pre: dict | None) -> list[dict]:
    if not pre:
        return []
    return pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]


def _is_gpt2_bytelevel(step: dict) -> bool:
    return step.get("type") == "ByteLevel" and step.get("use_regex", True) and not step.get("add_prefix_space")


def _digits_stand_alone(tokenizer_json: dict) -> bool:
    """No vocabulary entry joins a digit 0-9 to anything: every number is tokenized digit by digit. (Byte-level
    tokens spell the digits as themselves; str.isdigit would also match the byte symbols ² and ³.)"""
    vocab = tokenizer_json["model"].get("vocab", {})
    return bool(vocab) and not any(len(t) > 1 and any(c in "0123456789" for c in t) for t in vocab)


def _split_pattern(step: dict) -> str | None:
    if step.get("type") != "Split":
        return None
    return step.get("pattern", {}).get("Regex")


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the pre-tokenizer described in tokenizer.json.

    Matched by structure rather than by llama.cpp's hash of sample tokenizations:
    - ByteLevel with GPT-2's regex                   -> "gpt-2", or "smollm" when no token holds a digit
      beside another character (SmolLM2 as transformers rebuilds it from a GGUF): llama.cpp's smollm splits
      every digit apart first, which then gives the same tokens, and keeps spaces as written on decoding
      (gpt-2 "cleans" them, unlike the model's own tokenizer)
    - Digits(individual) then GPT-2 ByteLevel         -> "smollm" (SmolLM/SmolLM2's tokenizer.json)
    - Split on Qwen2's regex, ByteLevel without regex -> "qwen2"
    - Split on Llama 3's regex, ByteLevel w/o regex   -> "llama-bpe"
    """
    steps = _steps(tokenizer_json.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and _is_gpt2_bytelevel(steps[0]):
        return "smollm" if _digits_stand_alone(tokenizer_json) else "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and _is_gpt2_bytelevel(steps[1]):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = _split_pattern(steps[0])
        if pattern == QWEN2_PATTERN:
            return "qwen2"
        if pattern == LLAMA3_PATTERN:
            return "llama-bpe"
    raise GPruneError(f"pre-tokenizer {json.dumps(tokenizer_json.get('pre_tokenizer'))[:200]} has no known llama.cpp "
                      "equivalent; llama.cpp would split text differently from transformers")


def _token_types(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows beyond the tokenizer (padding to a round size)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _merges(tokenizer_json: dict) -> list[str]:
    merges = tokenizer_json["model"].get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _is_sentencepiece(tokenizer_json: dict) -> bool:
    """A SentencePiece vocabulary as transformers holds it (Gemma, Llama 2, Mistral v0.1): BPE over
    "▁"-marked words that falls back to byte tokens for what the vocabulary lacks."""
    model = tokenizer_json["model"]
    return model["type"] == "BPE" and bool(model.get("byte_fallback"))


def _prepends_space(tokenizer_json: dict) -> bool:
    """Whether the normalizer puts "▁" before the text (SentencePiece's add_dummy_prefix)."""
    norm = tokenizer_json.get("normalizer") or {}
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    return any(step.get("type") == "Prepend" for step in steps)


def _sentencepiece_vocab(tokens: list[str], types: list[int]) -> tuple[list[int], list[float]]:
    """llama.cpp's SentencePiece tokenizer merges the pair whose joined piece scores highest;
    SentencePiece numbers its pieces by falling score, so -id orders them as the model did.
    Byte pieces (<0x41>) are typed BYTE, as llama.cpp's byte fallback looks them up."""
    types = [gguf.TokenType.BYTE if t == gguf.TokenType.NORMAL and len(tok) == 6 and tok.startswith("<0x")
             and tok.endswith(">") else t for tok, t in zip(tokens, types)]
    scores = [-float(i) if t == gguf.TokenType.NORMAL else (0.0 if t == gguf.TokenType.BYTE else -1000.0)
              for i, t in enumerate(types)]
    return types, scores


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer, vocab_size: int) -> str:
    """Write the tokenizer's metadata; returns the pre-tokenizer name used."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)  # one on-disk layout whatever the tokenizer's origin
        tokenizer_json = json.loads((Path(tmp) / "tokenizer.json").read_text())
        model_kind = tokenizer_json["model"]["type"]
        sentencepiece = _is_sentencepiece(tokenizer_json)
        if sentencepiece:
            pre = "default"
        elif model_kind == "BPE":
            pre = pre_tokenizer_name(tokenizer_json)
        else:
            # No llama.cpp tokenizer reproduces e.g. WordLevel; the ids (what parity feeds) still match.
            log.warning("tokenizer model %s has no llama.cpp equivalent: the GGUF holds the vocabulary as "
                        "gpt2/BPE without merges, so llama.cpp's own text tokenization will differ", model_kind)
            pre = "default"
        special = gguf.SpecialVocab(tmp, load_merges=False, n_vocab=vocab_size)
        special.merges = [] if sentencepiece else _merges(tokenizer_json)
        if special.chat_template is None and getattr(tokenizer, "chat_template", None):
            special.chat_template = tokenizer.chat_template
    tokens, types = _token_types(tokenizer, vocab_size)
    if sentencepiece:
        types, scores = _sentencepiece_vocab(tokens, types)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_add_space_prefix(_prepends_space(tokenizer_json))
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        if not special.merges:
            special.merges = [f"{tokens[t]} {tokens[t]}" for t in range(len(types))
                              if types[t] == gguf.TokenType.NORMAL][:1]
            # llama.cpp refuses a gpt2 vocabulary without merges; one (whose result is no token) is inert
    special.add_to_gguf(writer, quiet=True)
    add_bos, add_eos = _adds_special_tokens(tokenizer)
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(add_bos)
    if "eos" not in special.add_special_token:
        writer.add_add_eos_token(add_eos)
    return pre


def _adds_special_tokens(tokenizer) -> tuple[bool, bool]:
    """Whether transformers puts BOS/EOS around plain text: llama.cpp must do the same."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return (bos is not None and len(full) > len(plain) and full[0] == bos,
            eos is not None and len(full) > len(plain) and full[-1] == eos)
