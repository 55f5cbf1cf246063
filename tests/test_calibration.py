"""Calibration statistics: exact merging, layer-at-a-time == whole-model hooks, caching."""

import torch
from tiny import random_ids, tiny_model, tiny_tokenizer

from gprune.calibration import CalibConfig, calibrate, collect
from gprune.stats import ChannelStats


def dyadic(shape, seed):
    """Values k/4: every sum below is exact in float64, so merging can be compared with equality."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-8, 9, shape, generator=g).float() / 4


def test_two_shards_merge_to_one_pass():
    x = dyadic((2, 10, 6), 0)
    whole, a, b = ChannelStats.zeros(6), ChannelStats.zeros(6), ChannelStats.zeros(6)
    whole.update(x)
    a.update(x[:, :3])
    b.update(x[:, 3:])
    merged = a.merge(b)
    for name in ("sum", "sumsq", "sumabs", "active", "count"):
        assert torch.equal(getattr(merged, name), getattr(whole, name)), name


def test_stats_values_on_a_hand_made_case():
    s = ChannelStats.zeros(2)
    s.update(torch.tensor([[1.0, 0.0], [3.0, -2.0]]))
    assert s.mean.tolist() == [2.0, -1.0]
    assert s.variance.tolist() == [2.0, 2.0]
    assert s.l2.tolist() == [10 ** 0.5, 2.0]
    assert s.frequency.tolist() == [1.0, 0.5]


def whole_model_stats(model, ids):
    """Reference: hooks on every layer's down_proj / o_proj during one ordinary forward."""
    layers = model.model.layers
    down = [ChannelStats.zeros(l.mlp.down_proj.in_features) for l in layers]
    o = [ChannelStats.zeros(l.self_attn.o_proj.in_features) for l in layers]
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(lambda m, a, i=i: down[i].update(a[0])))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(lambda m, a, i=i: o[i].update(a[0])))
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return down, o


def test_layer_at_a_time_matches_whole_model_forward():
    model = tiny_model("llama", layers=3)
    ids = random_ids(batch=5, length=16)
    cfg = CalibConfig(sources=("x",), n_samples=5, seq_len=16, sample_tokens=80, batch_size=2)
    calib = collect(model, {"x": ids}, cfg, torch.device("cpu"))  # same device as the reference forward
    down, o = whole_model_stats(model, ids)
    for i in range(3):
        got = calib.layers[i][0]
        for ref, mine in ((down[i], got.down), (o[i], got.o)):
            for name in ("sum", "sumsq", "sumabs", "count"):
                torch.testing.assert_close(getattr(mine, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
        assert got.down_sample.shape == (80, 96)  # all tokens sampled: compare against the hooks' mean
        torch.testing.assert_close(got.down_sample.double().mean(0), down[i].mean, rtol=1e-4, atol=1e-5)


def test_qwen2_layers_process_too():
    model = tiny_model("qwen2", layers=2)
    cfg = CalibConfig(sources=("x",), n_samples=2, seq_len=8, sample_tokens=4, batch_size=2)
    calib = collect(model, {"x": random_ids(batch=2, length=8)}, cfg)
    down, _ = whole_model_stats(model, random_ids(batch=2, length=8))
    torch.testing.assert_close(calib.layers[1][0].down.sum, down[1].sum, rtol=1e-5, atol=1e-6)


def test_cache_returns_the_same_statistics(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join("".join(chr(33 + (i * 7 + j) % 90) for j in range(300)) for i in range(40)))
    model, tok = tiny_model("llama"), tiny_tokenizer()
    cfg = CalibConfig(sources=(str(text),), n_samples=4, seq_len=32, sample_tokens=16)
    first = calibrate(model, tok, cfg, cache=tmp_path / "cache")
    second = calibrate(model, tok, cfg, cache=tmp_path / "cache")
    assert second.timing.get("cached") and not first.timing.get("cached")
    assert torch.equal(first.layers[2][0].down.sumsq, second.layers[2][0].down.sumsq)
    assert torch.equal(first.layers[0][0].o_sample, second.layers[0][0].o_sample)
