"""Export dense and magnitude-pruned SmolLM2-135M to every GGUF/ONNX type the issue
asks for; record export time, size, parity, greedy-generation agreement and the
decode bytes bound. Usage:

    python bench/export_smollm2.py --model dense=<dir> --model p30=<dir> ... --out bench/results/export.json
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
import gguf
import onnx

from edgecore.onnx_names import MODEL_FILE
from exporters import RUNTIMES, load_source
from exporters.onnx_export import export_onnx
from gprune_edge.export import export
from runtime_checks.backends import load_backend
from runtime_checks.backends.torch_backend import TorchBackend
from runtime_checks.export_parity import check_export

ARTIFACTS = [("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m"),
             ("onnx", "fp32"), ("onnx", "int8"), ("onnx", "int4")]
PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "Once upon a time, in a small village,"]
NEW_TOKENS = 24


def gguf_bytes_per_token(path: Path) -> int:
    """Weight bytes read to decode one token: every tensor, except that the embedding lookup reads one
    row; the output layer (token_embd itself when tied) is read in full."""
    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
    if "output.weight" in tensors:  # untied: the embedding table is only looked up (one row)
        return sum(tensors.values()) - tensors["token_embd.weight"]
    return sum(tensors.values())  # tied: token_embd is read in full as the output layer


def onnx_bytes_per_token(model_dir: Path) -> int:
    """Initializer bytes minus the embedding table (a Gather reads one row per token)."""
    model = onnx.load(str(model_dir / MODEL_FILE), load_external_data=False)
    sizes = {}
    for init in model.graph.initializer:
        length = next((int(e.value) for e in init.external_data if e.key == "length"), None)
        sizes[init.name] = length if length is not None else len(init.raw_data)
    gathered = {n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in sizes}
    return sum(v for k, v in sizes.items() if k not in gathered)


def generation_agreement(artifact: Path, runtime: str, reference: TorchBackend, tokenizer) -> list[bool]:
    with load_backend(runtime, artifact, 2) as backend:
        return [backend.generate(tokenizer(p)["input_ids"], NEW_TOKENS).tokens
                == reference.generate(tokenizer(p)["input_ids"], NEW_TOKENS).tokens for p in PROMPTS]


@click.command()
@click.option("--model", "models", multiple=True, required=True, help="label=checkpoint dir")
@click.option("--work", type=click.Path(), default="/tmp/gprune-export-bench")
@click.option("--out", type=click.Path(), required=True)
@click.option("--compare-exporters", is_flag=True,
              help="Only time TorchScript tracing against torch.onnx's dynamo exporter on the first model (fp32).")
def main(models, work, out, compare_exporters):
    if compare_exporters:
        label, path = models[0].split("=", 1)
        source, rows = load_source(path), []
        for dynamo in (False, True):
            target = Path(work) / f"{label}-fp32-{'dynamo' if dynamo else 'torchscript'}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            start = time.perf_counter()
            # the graph alone, by either torch.onnx exporter (write_artifact always traces with TorchScript)
            export_onnx(source, target / MODEL_FILE, dynamo=dynamo)
            row = {"model": label, "exporter": "dynamo" if dynamo else "torchscript",
                   "export_s": time.perf_counter() - start}
            checked = check_export(target, RUNTIMES["onnx"], source.model, source.tokenizer, "fp32", 2)
            row.update(parity=checked.parity.to_dict(), greedy_match=checked.generation_matches,
                       size_bytes=sum(f.stat().st_size for f in target.iterdir()))
            rows.append(row)
            print(json.dumps(row), flush=True)
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")
        return
    rows = []
    for spec in models:
        label, path = spec.split("=", 1)
        source = load_source(path)
        reference = TorchBackend.from_model(source.model, source.tokenizer, label=path)
        for fmt, dtype in ARTIFACTS:
            target = Path(work) / f"{label}-{dtype}{'.gguf' if fmt == 'gguf' else ''}"
            start = time.perf_counter()
            result = export(path, fmt, dtype, target, overwrite=True, parity="warn", threads=2)
            wall = time.perf_counter() - start
            gen = (generation_agreement(target, result.runtime, reference, source.tokenizer)
                   if dtype in ("f16", "fp32") else [])
            bpt = gguf_bytes_per_token(target) if fmt == "gguf" else onnx_bytes_per_token(target)
            row = dict(model=label, format=fmt, dtype=dtype, arch=result.architecture, export_s=result.export_s,
                       total_s=wall, size_bytes=result.size_bytes, bytes_per_token=bpt, parity=result.parity,
                       greedy_match=gen, fallbacks=len(result.fallbacks), tensor_types=result.tensor_types)
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
