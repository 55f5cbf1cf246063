"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: the distillation loss's gradients
when the student's decoder layers and root are sharded by torch's FSDP2 (`fully_shard`, gloo), each process
on half the batch, against one unsharded process on the whole batch. Exits non-zero on a mismatch.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_kd_worker.py tie|untie"""

import copy
import sys

import torch
import torch.distributed as dist
from tiny import tiny_model
from torch.distributed.fsdp import fully_shard

from recovery.loss import OutputLayerInput, kd_loss


def backward(student, teacher, ids) -> None:
    s_out, t_out = OutputLayerInput(student), OutputLayerInput(teacher)
    with torch.no_grad():
        teacher(input_ids=ids, use_cache=False, logits_to_keep=1)
    student(input_ids=ids, use_cache=False, logits_to_keep=1)
    kd_loss(s_out, t_out, temperature=2.0).backward()
    s_out.remove(), t_out.remove()


def main() -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    tie = sys.argv[1] == "tie"
    teacher = tiny_model(seed=0, tie=tie).requires_grad_(False)
    student = tiny_model(seed=1, tie=tie, intermediate_size=64)
    whole = copy.deepcopy(student)
    ids = torch.randint(3, 60, (4, 16), generator=torch.Generator().manual_seed(0))
    backward(whole, teacher, ids)

    for layer in student.model.layers:
        fully_shard(layer)
    fully_shard(student)  # the root: embedding, final norm, output layer
    backward(student, teacher, ids.chunk(dist.get_world_size())[dist.get_rank()])
    worst = max(float((p.grad.full_tensor() - q.grad).abs().max())
                for p, q in zip(student.parameters(), whole.parameters()))
    scale = max(float(q.grad.abs().max()) for q in whole.parameters())
    dist.destroy_process_group()
    print(f"largest gradient difference {worst:.3g} (largest gradient {scale:.3g})")
    sys.exit(0 if worst <= 1e-6 * scale else 1)


if __name__ == "__main__":
    main()
