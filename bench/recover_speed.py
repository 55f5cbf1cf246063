"""Distillation speed (`gprune-edge recover`'s training loop) for SmolLM2-135M's shape: tokens/s
and peak memory, one JSON line.

    python bench/recover_speed.py [--threads 2 --batch-size 4 --seq-len 256 --steps 6]
    python bench/recover_speed.py --model smollm2-135m   # the real weights and tokenizer
    python bench/recover_speed.py --student-ffn 1024     # a pruned-width student (FFN 1536 -> 1024)
    python bench/recover_speed.py --model smollm2-135m --batch-size 8 --student-ffn 1000 --gradient-checkpointing
    python bench/recover_speed.py --device cuda --batch-size 32 --seq-len 512 --self-batches 3   # + 'self' text speed
    python bench/recover_speed.py --device cuda --batch-size 32 --seq-len 512 --steps 30 --compile  # torch.compile

By default the teacher has random weights of SmolLM2-135M's shape (30 layers, hidden 576, FFN
1536, 9/3 heads, 49152-token vocabulary) and a synthetic tokenizer over random text, so it runs
offline (e.g. on a GPU machine that reaches nothing); the cost per token does not depend on the
weights. The student is the teacher with every FFN cut to --student-ffn neurons (default: same
width). Runs recovery.distill.distill_model itself (Trainer, KD loss, checkpoint-free); tokens/s
is timed from the end of the first step to the end of the last, so start-up and the first
step's allocations are left out. CPU: fp32 on --threads threads; CUDA: bf16 autocast, and the
peak CUDA memory is reported too. With --self-batches N, the teacher first samples N batches of 'self'
text as `recover --data self` does (recovery.data.generate_batch: as many sequences per call as the
device takes or --self-sequences, on the device in the training precision, with its KV cache or
--self-cache), timed after one untimed call (reported as self_first_call_s: it holds the compilation
of a static cache)."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                     tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def synthetic_tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def random_text(path: Path, vocab: int, tokens: int) -> None:
    """Documents of random words, blank-line separated; twice the tokens needed (half is held out)."""
    rnd = random.Random(0)
    docs = [" ".join(f"t{rnd.randrange(3, vocab)}" for _ in range(2000)) for _ in range(2 * tokens // 2000 + 4)]
    path.write_text("\n\n".join(docs))


def self_generation_speed(teacher, tokenizer, device, batches: int) -> dict:
    """Tokens/s of the teacher sampling 'self' text (prompts and continuations), on `device` in the precision
    `recover` trains in; one untimed call first."""
    import copy

    import torch

    from recovery.data import gen_batch, gen_cache, generate_batch

    model = copy.deepcopy(teacher).to(device)
    if device.type == "cuda":
        model.to(torch.bfloat16)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    generate_batch(model, tokenizer, seed=0, batch=0)  # a static cache's compilation happens here
    sync()
    first = time.perf_counter() - start
    start, tokens = time.perf_counter(), 0
    for b in range(1, batches + 1):
        tokens += sum(len(seq) for seq in generate_batch(model, tokenizer, seed=0, batch=b))
    sync()
    seconds = time.perf_counter() - start
    return {"self_sequences_per_call": gen_batch(device), "self_cache": gen_cache(device),
            "self_first_call_s": round(first, 1), "self_tokens_per_s": round(tokens / seconds, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="random", help="random (SmolLM2-135M's shape) or a model spec [random]")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps (the first one is not timed)")
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--hidden-weight", type=float, default=0.0)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the student (recover --compile)")
    ap.add_argument("--student-ffn", type=int, default=0, help="student FFN width (0 = the teacher's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--self-batches", type=int, default=0, help="also time this many 'self' generation calls")
    ap.add_argument("--self-cache", choices=("static", "dynamic"),
                    help="the KV cache 'self' generation uses [default: recover's for the device]")
    ap.add_argument("--self-sequences", type=int,
                    help="sequences per 'self' generation call [default: recover's for the device]")
    ap.add_argument("--glibc-defaults", action="store_true",
                    help="keep glibc's allocator defaults (the command line returns freed memory to the OS)")
    args = ap.parse_args()
    if not args.glibc_defaults:
        from edgecore.allocator import return_freed_memory

        return_freed_memory()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

    from edgecore.families import layer_shapes
    from edgecore.run_context import RunContext
    from gprune.surgery import LayerKeep, resize
    from recovery.config import DistillConfig
    from recovery.distill import distill_model

    context = RunContext(device=args.device, threads=args.threads).resolve()  # sets torch's threads
    device = context.torch_device()
    if args.model == "random":
        torch.manual_seed(0)
        teacher = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)).eval()
        tokenizer = synthetic_tokenizer(SMOLLM2_SHAPE["vocab_size"])
    else:
        from edgecore.loading import load_model

        teacher, tokenizer = load_model(args.model)
    shapes = layer_shapes(teacher.config)
    ffn = args.student_ffn or shapes[0].ffn  # a fresh model even at full width (a copy keeps load-time state)
    student = resize(teacher, [LayerKeep(torch.arange(ffn), torch.arange(s.kv_heads)) for s in shapes])

    from recovery.data import GEN_BATCH, GEN_CACHE

    if args.self_cache:
        GEN_CACHE[device.type] = args.self_cache
    if args.self_sequences:
        GEN_BATCH[device.type] = args.self_sequences
    self_speed = self_generation_speed(teacher, tokenizer, device, args.self_batches) if args.self_batches else {}
    step_times = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter())

    tokens = args.steps * args.batch_size * args.seq_len
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "text.txt"
        if args.model == "random":
            random_text(data, SMOLLM2_SHAPE["vocab_size"], tokens)
            sources = [str(data)]
        else:
            sources = ["code"]
        cfg = DistillConfig(tokens=tokens, seq_len=args.seq_len, batch_size=args.batch_size, data=sources,
                            lora_rank=args.lora_rank, hidden_weight=args.hidden_weight, save_steps=0,
                            gradient_checkpointing=args.gradient_checkpointing, compile=args.compile,
                            eval_windows=0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _, history = distill_model(student, teacher, tokenizer, cfg, callbacks=[Clock()], progress=False,
                                   context=context)
    timed = len(step_times) - 1
    per_s = timed * history.tokens_per_step / (step_times[-1] - step_times[0]) if timed > 0 else None
    result = {
        "model": args.model, "device": str(device), "dtype": history.dtype, "threads": args.threads,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": history.steps, "lora_rank": args.lora_rank,
        "hidden_weight": args.hidden_weight, "gradient_checkpointing": args.gradient_checkpointing,
        "compile": args.compile,
        "learning_rate": history.learning_rate, "glibc_defaults": args.glibc_defaults, "student_ffn": layer_shapes(student.config)[0].ffn,
        "student_params": sum(p.numel() for p in student.parameters()),
        "tokens_per_s": round(per_s, 1) if per_s else None,
        "seconds_per_step": round((step_times[-1] - step_times[0]) / timed, 3) if timed > 0 else None,
        "final_loss": history.loss_history[-1]["loss"] if history.loss_history else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, **self_speed,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() // 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
