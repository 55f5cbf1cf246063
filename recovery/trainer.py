"""The distillation Trainer (transformers.Trainer whose loss is `kd_loss` against a frozen
teacher), its progress bar in tokens and its dataset. Imported when training starts:
transformers.Trainer is slow to import."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback

from recovery.loss import OutputLayerInput, kd_loss


class KDTrainer(Trainer):
    """compute_loss = distillation loss against a frozen teacher. Both models run with logits_to_keep=1
    (through the Trainer's wrappers, so data-parallel gradients still synchronise): the loss computes
    the logits from the recorded hidden states, a chunk of tokens at a time."""

    def __init__(self, *args, teacher, temperature: float, hidden_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.hidden_weight = temperature, hidden_weight
        self.student_output, self.teacher_output = OutputLayerInput(self.model), OutputLayerInput(self.teacher)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs["input_ids"]
        hidden = self.hidden_weight > 0
        with torch.no_grad():
            teacher_out = self.teacher(input_ids=ids, use_cache=False, output_hidden_states=hidden, logits_to_keep=1)
        student_out = model(input_ids=ids, use_cache=False, output_hidden_states=hidden, logits_to_keep=1)
        loss = kd_loss(self.student_output, self.teacher_output, self.temperature, self.hidden_weight,
                       student_out.hidden_states, teacher_out.hidden_states)
        return (loss, student_out) if return_outputs else loss


class TokenProgress(TrainerCallback):
    """A tqdm bar in tokens (rate in tokens/s, ETA) with the latest loss; process 0 only.
    It also skips the Trainer's checkpoint at the last step (the output is written instead)."""

    def __init__(self, tokens_per_step: int, enabled: bool):
        self.tokens_per_step, self.enabled, self.bar = tokens_per_step, enabled, None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps * self.tokens_per_step, unit="tok", unit_scale=True,
                            initial=state.global_step * self.tokens_per_step, desc="distilling",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
        if self.bar is not None:
            self.bar.update(self.tokens_per_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Windows(torch.utils.data.Dataset):
    """Token windows [n, seq_len] as the Trainer's dataset."""

    def __init__(self, windows: torch.Tensor):
        self.windows = windows

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        return {"input_ids": self.windows[i]}
