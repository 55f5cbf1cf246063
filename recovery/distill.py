"""Recovery: knowledge distillation of a pruned student from its dense teacher.

`distill_model` trains in memory; `recover` is the file-to-file call behind
`gprune-edge recover` (PRUNED_DIR -> OUT, same pruned format, widths unchanged).

Training runs on `transformers.Trainer` (a subclass whose `compute_loss` is the distillation
loss; the teacher is frozen, in eval mode, under no_grad), so `accelerate launch` or `torchrun`
runs it data-parallel with no project code for distribution: every process builds the same
windows and the Trainer shards them; only process 0 writes the output. bf16 autocast on CUDA
(the teacher is cast to bf16, the student keeps fp32 master weights), fp32 on CPU.

Checkpoints and resuming. With a checkpoint folder (`recover` uses `OUT.partial/` beside OUT)
the Trainer saves a full checkpoint (weights or LoRA adapters, optimizer, scheduler, RNG,
step) every `save_steps` steps, keeping the latest only; `run.json` there records the
settings and the fingerprints of both models. An interrupted run continues with `resume=True`
(`--resume`) from its last checkpoint: the windows are rebuilt identically (fixed seed, in a
fixed order, sampled sequentially) and the Trainer skips the ones already seen, so a fixed-seed
run that was interrupted and resumed ends with the same weights as an uninterrupted one.
Resuming with other settings or models is refused; a checkpoint folder holding progress is
never silently restarted. `recover` removes OUT.partial once OUT is written."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edgecore import __version__
from edgecore.checkpoint import save_checkpoint
from edgecore.errors import GPruneError
from edgecore.families import family_of
from edgecore.fingerprint import model_fingerprint
from edgecore.loading import load_model
from edgecore.outputs import check_writable, claim_output, write_atomic
from edgecore.run_context import RunContext
from edgecore.typed_config import read_json
from recovery.config import DistillConfig
from recovery.data import check_sources, heldout_windows, training_windows
from recovery.loss import heldout_kl

RECOVERY_FILE = "recovery.json"
CURVE_FILE = "loss_curve.png"
RUN_FILE = "run.json"  # in the checkpoint folder: what the run is, checked on --resume
PARTIAL_SUFFIX = ".partial"  # recover's checkpoint folder: OUT.partial beside OUT
RECIPE_FILE = "recipe.json"  # the pruning recipe saved with every pruned checkpoint; its "model" is the teacher
COPIED_FILES = (RECIPE_FILE, "prune_summary.json", "prune_plot.png")  # from PRUNED_DIR, when present
LORA_ROLES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RESUME_KEYS = ("tokens", "seq_len", "batch_size", "lr", "temperature", "hidden_weight", "data", "weights", "max_passes",
               "lora_rank", "seed")
WARMUP_SHARE = 0.03  # of the steps: linear warmup, then cosine decay to MIN_LR_RATE of the peak
MIN_LR_RATE = 0.1
LOG_POINTS = 200  # about this many loss points in the history, whatever the budget


# ----------------------------------------------------------------------------- held-out KL

def _kl_table(student, teacher, windows: dict[str, torch.Tensor], batch_size: int) -> dict[str, float]:
    table = {name: round(heldout_kl(student, teacher, w, batch_size), 6) for name, w in windows.items()}
    if table:
        table["mean"] = round(sum(table.values()) / len(table), 6)
    return table


# ----------------------------------------------------------------------------- checks

def check_compatible(student, teacher, student_tokenizer, teacher_tokenizer=None, hidden_weight: float = 0.0) -> None:
    """One-line errors when the teacher cannot teach this student: other vocabulary or tokenizer
    (the KL compares distributions over the same tokens), or, for the hidden-state term, other
    layer count or hidden size."""
    sv, tv = student.config.vocab_size, teacher.config.vocab_size
    if sv != tv:
        raise GPruneError(f"the student and the teacher have different vocabularies ({sv} vs {tv} tokens): "
                          "distill from the model the student was pruned from")
    if teacher_tokenizer is not None and (student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab()
                                          or student_tokenizer.eos_token_id != teacher_tokenizer.eos_token_id):
        raise GPruneError("the student's and the teacher's tokenizers differ (other tokens or ids): "
                          "distill from the model the student was pruned from")
    if hidden_weight > 0:
        ss = (student.config.num_hidden_layers, student.config.hidden_size)
        ts = (teacher.config.num_hidden_layers, teacher.config.hidden_size)
        if ss != ts:
            raise GPruneError(f"hidden_weight needs the same layers and hidden size in student and teacher "
                              f"({ss[0]}x{ss[1]} vs {ts[0]}x{ts[1]}); use --hidden-weight 0")


def _lora(student, cfg: DistillConfig):
    from peft import LoraConfig, get_peft_model

    family = family_of(student.config)
    torch.manual_seed(cfg.seed)  # the adapters' initial values
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0, bias="none",
                        target_modules=[family.layout[role] for role in LORA_ROLES])
    with _quiet_peft():
        return get_peft_model(student, config)


@contextlib.contextmanager
def _quiet_peft():
    """peft 0.21 calls a transformers method that transformers 5 marks deprecated: not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _last_checkpoint(ckpt_dir: Path | None) -> Path | None:
    if ckpt_dir is None or not ckpt_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(ckpt_dir))
    return Path(last) if last else None


def _run_identity(student, teacher, cfg: DistillConfig) -> dict:
    settings = {k: v for k, v in cfg.to_dict().items() if k in RESUME_KEYS}
    return {"settings": settings, "student": model_fingerprint(student), "teacher": model_fingerprint(teacher),
            "processes": _world_size()}


def _refuse_unresumed(ckpt_dir: Path) -> None:
    """A checkpoint folder holding progress is never restarted silently."""
    last = _last_checkpoint(ckpt_dir)
    if last is not None:
        raise GPruneError(f"{ckpt_dir} holds an interrupted run (checkpoint at step {_step_of(last)}): pass "
                          "--resume to continue it, or delete that folder to start over")


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def _check_resume(ckpt_dir: Path, identity: dict, resume: bool) -> Path | None:
    """The checkpoint to continue from (None: start afresh), or a one-line refusal."""
    last = _last_checkpoint(ckpt_dir)
    if last is None:
        return None
    if not resume:
        _refuse_unresumed(ckpt_dir)
    try:
        recorded = json.loads((ckpt_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise GPruneError(f"{ckpt_dir}: {RUN_FILE} is missing or damaged, so the run cannot be resumed safely; "
                          "delete that folder to start over") from None
    diffs = []
    for key, value in identity["settings"].items():
        if recorded.get("settings", {}).get(key) != value:
            diffs.append(f"{key} {recorded.get('settings', {}).get(key)!r} there, {value!r} now")
    for key in ("student", "teacher", "processes"):
        if recorded.get(key) != identity[key]:
            diffs.append(f"another {key}" if key != "processes" else
                         f"{recorded.get(key)} processes there, {identity[key]} now")
    if diffs:
        raise GPruneError(f"cannot resume {ckpt_dir}: it was started differently ({'; '.join(diffs)}); "
                          "run with the same settings, or delete that folder to start over")
    return last


# ----------------------------------------------------------------------------- in memory

@dataclass
class DistillHistory:
    steps: int
    tokens_per_step: int
    tokens_seen: int
    learning_rate: float
    processes: int
    device: str
    dtype: str
    resumed_from_step: int = 0
    seconds: float = 0.0
    data: dict = field(default_factory=dict)  # source -> {"windows", "passes"}
    heldout_kl: dict = field(default_factory=dict)  # {"before": {source: kl, "mean": ...}, "after": {...}}
    loss_history: list = field(default_factory=list)  # [{"step", "tokens", "loss", "lr"}]

    def to_dict(self) -> dict:
        return asdict(self)


def distill_model(student, teacher, tokenizer, cfg: DistillConfig, ckpt_dir: str | Path | None = None,
                  resume: bool = False, teacher_tokenizer=None, callbacks=(), progress: bool = True,
                  context: RunContext | None = None):
    """(student, DistillHistory): `student` trained to match `teacher` on cfg.tokens tokens.

    The student is trained in place (with LoRA, adapters are merged into it and the plain model
    is returned) and returned in eval mode; the teacher is moved to the training device (bf16 on
    CUDA) and frozen. With `ckpt_dir`, checkpoints go there every cfg.save_steps steps and
    `resume=True` continues from the last one (see the module docstring). `callbacks` are extra
    transformers TrainerCallbacks. Training runs on `context.device`."""
    from transformers import PrinterCallback, ProgressCallback, TrainingArguments

    device = (context or RunContext()).torch_device()
    check_compatible(student, teacher, tokenizer, teacher_tokenizer, cfg.hidden_weight)
    check_sources(cfg.data)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
    identity = _run_identity(student, teacher, cfg)
    start_from = _check_resume(ckpt_dir, identity, resume) if ckpt_dir is not None else None
    saving = ckpt_dir is not None and cfg.save_steps > 0  # save_steps 0: no checkpoints (a resume still reads one)
    started = time.perf_counter()

    world, batch = _world_size(), cfg.batch_for(device.type)
    tokens_per_step = batch * cfg.seq_len * world
    steps = math.ceil(cfg.tokens / tokens_per_step)
    learning_rate = cfg.learning_rate(tokens_per_step)
    cuda = device.type == "cuda"
    if cuda and device.index is not None:
        torch.cuda.set_device(device)

    with contextlib.ExitStack() as stack:
        output_dir = ckpt_dir if saving else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="gprune-distill-")))
        args = TrainingArguments(
            output_dir=str(output_dir), per_device_train_batch_size=batch, max_steps=steps,
            learning_rate=learning_rate, lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": MIN_LR_RATE}, warmup_steps=int(WARMUP_SHARE * steps),
            activation_checkpointing=cfg.gradient_checkpointing, torch_compile=cfg.compile,
            activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
            weight_decay=0.0, max_grad_norm=1.0, logging_steps=max(1, steps // LOG_POINTS),
            save_strategy="steps" if saving else "no", save_steps=cfg.save_steps or 1,
            save_total_limit=1, save_only_model=False, report_to="none", seed=cfg.seed, data_seed=cfg.seed,
            bf16=cuda, use_cpu=not cuda, ddp_find_unused_parameters=False, remove_unused_columns=False,
            label_names=[], train_sampling_strategy="sequential", dataloader_num_workers=0, disable_tqdm=False)
        train_device = args.device  # sets up the (distributed) devices now
        teacher.to(train_device)
        if cuda:
            teacher.to(torch.bfloat16)
        teacher.eval().requires_grad_(False)

        with args.main_process_first(desc="distillation data"):  # "self" text is generated once, then read
            windows, data_info = training_windows(tokenizer, cfg.data, steps * batch * world, cfg.seq_len,
                                                  cfg.seed, teacher=teacher, progress=progress, weights=cfg.weights,
                                                  max_passes=cfg.max_passes)
            heldout = heldout_windows(tokenizer, cfg.data, cfg.seq_len, cfg.eval_windows)
        student.to(train_device)
        kl_before = _kl_table(student, teacher, heldout, batch)

        model = _lora(student, cfg) if cfg.lora_rank else student
        model.train()
        if saving and _is_main_process():
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(ckpt_dir / RUN_FILE, json.dumps(identity, indent=2) + "\n")
        from recovery.trainer import KDTrainer, TokenProgress, Windows  # transformers.Trainer is slow to import

        trainer = KDTrainer(model=model, args=args, train_dataset=Windows(windows), teacher=teacher,
                            temperature=cfg.temperature, hidden_weight=cfg.hidden_weight,
                            callbacks=[TokenProgress(tokens_per_step, progress), *callbacks])
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.train(resume_from_checkpoint=str(start_from) if start_from else None)

        if cfg.lora_rank:
            student = model.merge_and_unload()
        student.eval()
        kl_after = _kl_table(student, teacher, heldout, batch)
        state = trainer.state

    history = DistillHistory(
        steps=state.global_step, tokens_per_step=tokens_per_step, tokens_seen=state.global_step * tokens_per_step,
        learning_rate=learning_rate, processes=world, device=str(train_device),
        dtype="bfloat16" if cuda else "float32",
        resumed_from_step=_step_of(start_from) if start_from else 0,
        seconds=round(time.perf_counter() - started, 2), data=data_info,
        heldout_kl={"before": kl_before, "after": kl_after} if heldout else {},
        loss_history=[{"step": e["step"], "tokens": e["step"] * tokens_per_step, "loss": e["loss"],
                       "lr": e.get("learning_rate")} for e in state.log_history if "loss" in e])
    return student, history


# ----------------------------------------------------------------------------- on files

@dataclass
class RecoverResult:
    out: Path
    teacher: str
    history: DistillHistory
    written: bool = True  # False in the other processes of a data-parallel run (process 0 writes)

    @property
    def kl_before(self) -> float | None:
        return self.history.heldout_kl.get("before", {}).get("mean")

    @property
    def kl_after(self) -> float | None:
        return self.history.heldout_kl.get("after", {}).get("mean")


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise GPruneError(f"{path}: not a model directory (no such folder)")
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise GPruneError(f"{path}: not a model directory (it needs config.json and .safetensors weights)")


def pruned_from(pruned_dir: Path) -> str:
    """The model PRUNED_DIR/recipe.json says it was pruned from: the default teacher."""
    path = pruned_dir / RECIPE_FILE
    if not path.is_file():
        raise GPruneError(f"{pruned_dir} has no {RECIPE_FILE} naming the model it was pruned from: give --teacher")
    recipe = read_json(path, "recipe")
    model = recipe.get("model") if isinstance(recipe, dict) else None
    if not isinstance(model, str):
        raise GPruneError(f"{path} names no model it was pruned from: give --teacher")
    return model


def render_curve(history: DistillHistory, title: str) -> bytes:
    """Loss against tokens seen, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    points = history.loss_history
    ax.plot([p["tokens"] for p in points], [p["loss"] for p in points], marker="o" if len(points) < 30 else None)
    kl = history.heldout_kl
    if kl.get("before", {}).get("mean") is not None:
        title += f"\nheld-out KL {kl['before']['mean']:.4f} -> {kl['after']['mean']:.4f}"
    ax.set(xlabel="tokens seen", ylabel="distillation loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    return png.getvalue()


def partial_dir(out: Path) -> Path:
    """Where `recover` keeps the checkpoints of a run for `out` until it is written."""
    return out.parent / (out.name + PARTIAL_SUFFIX)


def recover(pruned_dir: str | Path, cfg: DistillConfig, out: str | Path, teacher: str | None = None,
            overwrite: bool = False, resume: bool = False, callbacks=(), progress: bool = True,
            context: RunContext | None = None) -> RecoverResult:
    """Distill the pruned model in `pruned_dir` from `teacher` (default: the model its recipe.json
    names) and write it to `out` in the same format, with recipe.json copied, recovery.json
    (settings, teacher, tokens seen, loss history, held-out KL) and loss_curve.png.
    Checkpoints go to OUT.partial/ every cfg.save_steps steps; `resume` continues from there."""
    context = (context or RunContext()).resolve()  # fail before the slow part
    pruned_dir = Path(pruned_dir).expanduser()
    _check_model_dir(pruned_dir)
    teacher = teacher or pruned_from(pruned_dir)
    check_sources(cfg.data)
    inputs = [pruned_dir, teacher]
    main = _is_main_process()
    claim = claim_output(out, overwrite, inputs) if main else contextlib.nullcontext(
        check_writable(out, overwrite, inputs))
    with claim as out:
        partial = partial_dir(out)
        if main and partial.exists() and not partial.is_dir():
            raise GPruneError(f"{partial} is in the way of the checkpoint folder: move it")
        if main and not resume:
            _refuse_unresumed(partial)
        started = time.perf_counter()
        student, tokenizer = load_model(str(pruned_dir))
        teacher_model, teacher_tokenizer = load_model(teacher, trust_remote_code=context.trust_remote_code)
        student, history = distill_model(student, teacher_model, tokenizer, cfg, ckpt_dir=partial, resume=resume,
                                         teacher_tokenizer=teacher_tokenizer, callbacks=callbacks, progress=progress,
                                         context=context)
        history.seconds = round(time.perf_counter() - started, 2)
        if main:
            record = {"config": cfg.to_dict(), "teacher": teacher, "student": str(pruned_dir), **history.to_dict(),
                      "gprune_edge_version": __version__}
            extra = {name: (pruned_dir / name).read_bytes() for name in COPIED_FILES if (pruned_dir / name).is_file()}
            extra[RECOVERY_FILE] = json.dumps(record, indent=2) + "\n"
            extra[CURVE_FILE] = render_curve(history, f"{pruned_dir.name} distilled from {Path(teacher).name}")
            save_checkpoint(student.cpu(), tokenizer, out, overwrite, extra_files=extra)
            shutil.rmtree(partial, ignore_errors=True)
    return RecoverResult(Path(out), teacher, history, written=main)


def load_config_file(path: str | Path) -> tuple[DistillConfig, str | None]:
    """(config, teacher or None) from a recovery.json (its "config" and "teacher") or a bare config file."""
    from edgecore.typed_config import read_json

    data = read_json(path, "recovery config")
    if isinstance(data, dict) and "config" in data:
        return DistillConfig.from_dict(data["config"], f"recovery config {path}"), data.get("teacher")
    return DistillConfig.from_dict(data, f"recovery config {path}"), None
