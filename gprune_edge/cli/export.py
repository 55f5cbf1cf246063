"""`gprune-edge export`: options -> gprune_edge.export.export (write, check on the runtime, rename)."""

from __future__ import annotations

import json
import logging

import click

from exporters import GGUF_DTYPES, ONNX_DTYPES
from gprune_edge.export import PARITY_MODES


@click.command()
@click.argument("pruned_dir", type=click.Path())
@click.option("--format", "fmt", required=True, help="gguf (llama.cpp) or onnx (onnxruntime).")
@click.option("--dtype", required=True,
              help=f"gguf: {', '.join(GGUF_DTYPES)}; onnx: {', '.join(ONNX_DTYPES)} "
                   "(int8/int4: weight-only MatMulNBits, fast in native onnxruntime; int8-dq/int4-dq: the same "
                   "blocks dequantized to fp32 when the session loads, fast in onnxruntime-web's WASM; a tied "
                   "embedding is stored once).")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output .gguf file, or output directory for onnx.")
@click.option("--strict", is_flag=True,
              help="Fail instead of letting llama.cpp store a tensor whose row length does not fit the "
                   "quant block in a fallback type.")
@click.option("--parity", "parity_mode", type=click.Choice(PARITY_MODES), default="fail", show_default=True,
              help="Reload the artifact and compare it with torch: fail beyond the dtype's tolerance, only warn, "
                   "or skip.")
@click.option("--threads", type=int, default=None, help="Threads for quantization and verification.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(pruned_dir, fmt, dtype, out, strict, parity_mode, threads, overwrite, as_json):
    """Export PRUNED_DIR to GGUF or ONNX, reload it in its runtime and check parity
    with the torch model (top-1 agreement, KL, logit difference, perplexity ratio).

    Nothing is left at OUT when the export or its parity check fails."""
    from gprune_edge.export import export as run_export

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    result = run_export(pruned_dir, fmt, dtype, out, strict=strict, overwrite=overwrite, parity=parity_mode,
                        threads=threads)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"wrote {result.path} ({result.format} {result.dtype}, {result.architecture}, "
               f"{result.size_bytes / 1e6:.1f} MB) in {result.export_s:.1f} s")
    if result.parity:
        p = result.parity
        click.echo(f"parity vs torch: top-1 {p['top1_agreement']:.3f}, mean KL {p['kl_mean']:.2e}, "
                   f"max |dlogit| {p['max_abs_logit_diff']:.3f}, ppl ratio {p['ppl_ratio']:.4f}, "
                   f"greedy generation {'matches' if result.generation_matches else 'differs'}")
    if result.fallbacks:
        click.echo(f"{len(result.fallbacks)} tensors stored in a fallback type (see warnings)")
