"""`gprune-edge recover`: options -> DistillConfig -> gprune.distill.recover."""

from __future__ import annotations

import re

import click

from edgecore.errors import GPruneError
from gprune.distill_config import DEFAULT_DATA, LR_FULL, LR_LORA, DistillConfig

_DEFAULTS = DistillConfig()
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_tokens(text: str, option: str = "--tokens") -> int:
    """A token count: 20000, 20k, 1.5M."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise GPruneError(f"{option} must be a number of tokens such as 20000, 20k or 2M, got {text!r}")
    return round(float(match.group(1)) * _SUFFIX[match.group(2).lower()])


@click.command(epilog="Repeat a run: gprune-edge recover PRUNED_DIR --config OUT/recovery.json --out OUT2")
@click.argument("pruned_dir", type=click.Path())
@click.option("--teacher", "-t", default=None,
              help="Dense model to learn from: built-in name, HF directory, .gguf file or hub id "
                   "[default: the model PRUNED_DIR/recipe.json was pruned from].")
@click.option("--tokens", "-n", default=None,
              help="Token budget: training tokens the student sees (20000, 20k, 2M; rounded up to whole steps). "
                   "On CPU budgets are tens of thousands of tokens (SmolLM2-135M pruned 20% distilled at about "
                   "70 tokens/s on 2 idle CPU cores with the default batch, BENCHMARKS.md); millions need a GPU. "
                   "Required unless --config.")
@click.option("--data", default=None,
              help="Training text, comma-separated: wiki, news, science, code, dialogue, boolq (their calibration "
                   "halves; the evaluation halves stay held out), self (text the teacher generates itself from "
                   "varied prompts: data-free distillation, generated once and cached), "
                   f"hf:DATASET[/CONFIG][:SPLIT][@COLUMN], or .txt/.jsonl files [{','.join(DEFAULT_DATA)}].")
@click.option("--temperature", type=float, default=None,
              help=f"KL temperature; 1 = forward KL(teacher||student) on the logits [{_DEFAULTS.temperature}].")
@click.option("--hidden-weight", type=float, default=None,
              help="Weight of an extra loss matching every decoder layer's output to the teacher's (MSE, "
                   f"normalized by the teacher's mean square per layer); 0 = off [{_DEFAULTS.hidden_weight}].")
@click.option("--lora-rank", type=int, default=None,
              help="0 trains every weight; N > 0 trains rank-N LoRA adapters on the attention and FFN projections "
                   "(less memory for optimizer state), merged into the weights at the end so OUT is plain "
                   f"weights [{_DEFAULTS.lora_rank}].")
@click.option("--lr", type=float, default=None,
              help=f"Peak learning rate (short warmup, cosine decay to a tenth) [{LR_FULL:g}; {LR_LORA:g} with LoRA].")
@click.option("--seq-len", type=int, default=None, help=f"Tokens per training window [{_DEFAULTS.seq_len}].")
@click.option("--batch-size", type=int, default=None,
              help=f"Windows per optimizer step and process [{_DEFAULTS.batch_size}].")
@click.option("--save-steps", type=int, default=None,
              help="Checkpoint every this many steps into OUT.partial/ (for --resume); 0 = none "
                   f"[{_DEFAULTS.save_steps}].")
@click.option("--eval-windows", type=int, default=None,
              help="Held-out windows per source for the KL to the teacher reported before and after; 0 = skip "
                   f"[{_DEFAULTS.eval_windows}].")
@click.option("--seed", type=int, default=None, help=f"Seed for the windows, their order and LoRA [{_DEFAULTS.seed}].")
@click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N [auto].")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Start from a recovery.json (e.g. a previous run's; its teacher too) or a bare config file; "
                   "options given here override it.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from the last checkpoint in OUT.partial/ (same settings needed; "
                   "a fixed-seed resumed run ends with the same weights as an uninterrupted one).")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory for the recovered checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def recover(pruned_dir, teacher, tokens, data, temperature, hidden_weight, lora_rank, lr, seq_len, batch_size,
            save_steps, eval_windows, seed, device, config_file, resume, out, overwrite):
    """Recover a pruned model's quality by distilling it from the dense teacher.

    Trains PRUNED_DIR (the student; widths unchanged) to match the teacher's
    next-token distributions and writes OUT in the same pruned format, with
    recipe.json copied, recovery.json (settings, teacher, tokens seen, loss
    history, held-out KL before and after) and loss_curve.png. Runs
    data-parallel under `accelerate launch` or `torchrun`."""
    from gprune.distill import load_config_file
    from gprune.distill import recover as run_recover

    base, base_teacher = (load_config_file(config_file) if config_file else (None, None))
    base = base.to_dict() if base else {}
    if tokens is None and "tokens" not in base:
        raise GPruneError("give --tokens (the token budget, e.g. 20k) or --config with a previous recovery.json")
    given = dict(tokens=parse_tokens(tokens) if tokens is not None else None,
                 data=data.split(",") if data is not None else None, temperature=temperature,
                 hidden_weight=hidden_weight, lora_rank=lora_rank, lr=lr, seq_len=seq_len, batch_size=batch_size,
                 save_steps=save_steps, eval_windows=eval_windows, seed=seed, device=device)
    cfg = DistillConfig.from_dict({**base, **{k: v for k, v in given.items() if v is not None}})
    result = run_recover(pruned_dir, cfg, out, teacher=teacher or base_teacher, overwrite=overwrite, resume=resume)
    if not result.written:
        return  # another process of a data-parallel run wrote OUT and says so
    history = result.history
    kl = (f"; held-out KL to the teacher {result.kl_before:.4f} -> {result.kl_after:.4f}"
          if result.kl_before is not None else "")
    click.echo(f"distilled {history.tokens_seen:,} tokens ({history.steps} steps) from {result.teacher}{kl}; "
               f"saved to {result.out}")
