"""FLAP's scaling of attention against the FFN, pinned on a hand-made case: two layers, and in
layer 0 a block of FFN neurons that carry nothing, costing exactly as much as one KV group.
Both KV groups of every layer are clearly important, with the same spread of channel scores
(one group 1% stronger). FLAP must take the dead FFN block, not a KV group."""

import torch

from gprune.calibration import Calibration, LayerCalib
from gprune.methods.configs import FlapConfig
from gprune.prune import prune_model
from gprune.recipe import PruneRecipe
from gprune.stats import ChannelStats
from tiny import tiny_model, tiny_tokenizer

HIDDEN, FFN, HEADS, KV = 64, 96, 4, 2  # tiny_model's shapes: a KV group = 2 heads x 16 = 32 o_proj channels
DEAD = torch.arange(32)  # 32 neurons x 3 x 64 = one KV group's 64 x 16 x 6 parameters


def stats_with_variance(variance: torch.Tensor) -> ChannelStats:
    """Two tokens per channel, mean 0: the sample variance is `variance`."""
    v = variance.double()
    return ChannelStats(torch.zeros_like(v), v, v.sqrt() * 2, torch.full_like(v, 2), torch.tensor(2.0, dtype=torch.float64))


def ffn_variance(layer: int) -> torch.Tensor:
    v = torch.ones(FFN)
    v[-6:] = 30.0  # a few massive-activation neurons, as in real models
    if layer == 0:
        v[DEAD] = 0.01
    return v


def o_variance() -> torch.Tensor:
    one_group = torch.arange(1, 33, dtype=torch.float64)  # varied channels inside a group
    return torch.cat([one_group, one_group * 1.01])


def hand_made():
    model = tiny_model("llama", layers=2)
    with torch.no_grad():  # unit columns: FLAP's metric is then the channel variance itself
        for layer in model.model.layers:
            for proj in (layer.mlp.down_proj, layer.self_attn.o_proj):
                proj.weight /= proj.weight.norm(dim=0, keepdim=True)
    empty = torch.zeros(0)
    layers = [[LayerCalib(stats_with_variance(ffn_variance(i)), stats_with_variance(o_variance()), empty, empty,
                          empty, empty)] for i in range(2)]
    return model, Calibration(["hand-made"], layers)


def test_flap_takes_the_dead_ffn_block_and_keeps_the_important_heads():
    model, calib = hand_made()
    _, plan = prune_model(model, tiny_tokenizer(), PruneRecipe(method=FlapConfig(), sparsity=0.1, align=1), calib)
    assert [len(k.kv_groups) for k in plan.keep] == [KV, KV]
    kept = set(plan.keep[0].ffn.tolist())
    assert not kept & set(DEAD.tolist()) and len(kept) == FFN - len(DEAD)
    assert len(plan.keep[1].ffn) == FFN


def test_group_sum_scaling_drops_a_head_instead():
    # gprune-edge 0.1's scaling, kept behind attention="group-sum" to reproduce old results:
    # standardizing 2 summed group scores per layer gives the weaker one z = -0.71 however strong it is
    model, calib = hand_made()
    recipe = PruneRecipe(method=FlapConfig(attention="group-sum"), sparsity=0.1, align=1)
    _, plan = prune_model(model, tiny_tokenizer(), recipe, calib)
    assert sorted(len(k.kv_groups) for k in plan.keep) == [1, KV]
