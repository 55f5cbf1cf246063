"""Layer-at-a-time calibration on CUDA equals the CPU result (tiny model; run where a GPU is).

    PYTHONPATH=.:tests python bench/prune_cuda_check.py"""

import torch
from tiny import random_ids, tiny_model

from edgecore.devices import model_device
from gprune.calibration import CalibConfig, collect

model = tiny_model("llama", layers=3)
ids = random_ids(batch=6, length=32)
cfg = CalibConfig(sources=("x",), n_samples=6, seq_len=32, sample_tokens=64, batch_size=4)
cpu = collect(model, {"x": ids}, cfg, torch.device("cpu"))
gpu = collect(model, {"x": ids}, cfg, torch.device("cuda"))
assert model_device(model).type == "cpu", "layers go back where they were"
worst = max(float(((getattr(g.down, n) - getattr(c.down, n)).abs() / getattr(c.down, n).abs().clamp(min=1)).max())
            for g, c in zip((r[0] for r in gpu.layers), (r[0] for r in cpu.layers)) for n in ("sum", "sumsq"))
print(f"cuda vs cpu: worst relative difference of down_proj sums {worst:.2e}; "
      f"calibration {cpu.timing['calibration_s']} s cpu, {gpu.timing['calibration_s']} s cuda")
assert worst < 1e-3
