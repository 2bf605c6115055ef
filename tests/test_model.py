"""The IamNN model: structure, compaction, halting semantics, gradients, MACs, validation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from iamnn_studio.engine import ModelConfig, build_baseline, build_model
from iamnn_studio.engine.layers import MIN_BATCH_FOR_STATS


def tiny(**overrides) -> ModelConfig:
    cfg = dict(depth=50, iterations=(2, 3, 3, 2), width=4, in_channels=1, image_size=16, num_classes=5)
    cfg.update(overrides)
    return ModelConfig(**cfg)


def randomise_batchnorms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every batchnorm non-trivial affine parameters and statistics fitted to real activations,
    so eval outputs differ per iteration and per sample (as in a trained model)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.momentum = None  # cumulative average over the calibration passes
    mode, threshold = model.config.mode, model.config.threshold
    size, channels = model.config.image_size, model.config.in_channels
    model.train()
    with torch.no_grad():
        x = torch.randn(64, channels, size, size, generator=g)
        model.set_threshold(1.0)  # every head runs on the whole batch at every iteration
        model(x)
    model.config.mode, model.config.threshold = mode, threshold
    model.eval()


def spread_halting(model, seed: int = 0) -> None:
    """Make halting heads give widely varying scores, so samples halt at different iterations."""
    g = torch.Generator().manual_seed(seed)
    for block in model.blocks:
        head = block.halting_head
        for lin in (head.fc1, head.fc2, head.out):
            lin.weight.data.copy_(torch.randn(lin.weight.shape, generator=g) * 2.0 / lin.in_features**0.5)
        head.out.bias.data.fill_(0.0)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------- structure
def test_depth_sets_iteration_caps():
    assert ModelConfig(depth=18).caps == (2, 2, 2, 2)
    assert ModelConfig(depth=50).caps == (3, 4, 6, 3)
    assert ModelConfig(depth=101).caps == (3, 4, 23, 3)
    assert ModelConfig(depth=152).caps == (3, 8, 36, 3)
    assert build_model(tiny()).caps == (2, 3, 3, 2)


def test_parameters_grow_with_cap_only_by_per_iteration_batchnorms():
    small = build_model(tiny(iterations=(2, 3, 3, 2)))
    large = build_model(tiny(iterations=(2, 3, 9, 2)))
    block = large.blocks[2]
    bn_params_per_iteration = sum(
        n_params(norms[0])
        for norms in (block.process.bn1, block.process.bn2, block.process.bn3, block.exit_norm, block.halting_head.norm)
    )
    assert n_params(large) - n_params(small) == 6 * bn_params_per_iteration
    # and the convolutions really are shared: one conv1 per block, whatever the cap
    convs = [m for m in large.blocks[2].modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3


def test_forward_output_shapes_and_types():
    model = build_model(tiny()).eval()
    out = model(torch.randn(7, 1, 16, 16))
    assert out.logits.shape == (7, 5)
    assert out.iterations.shape == (7, 4) and out.iterations.dtype == torch.long
    assert [h.shape for h in out.halting] == [(7, 2), (7, 3), (7, 3), (7, 2)]
    assert out.ponder_cost.shape == (7,)
    assert out.macs.shape == (7,) and out.macs.dtype == torch.long


ON_CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
@pytest.mark.parametrize("halting", ["act", "calibrated"])
def test_compacted_execution_equals_masked_execution(halting, device, monkeypatch):
    torch.manual_seed(0)
    model = build_model(tiny(halting=halting, threshold=0.6)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    model.to(device)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exact float32 convolutions on a GPU too
    x = torch.randn(40, 1, 16, 16).to(device)
    with torch.no_grad():
        compact = model(x)
        masked = model(x, compact=False)
    assert len(set(map(tuple, compact.iterations.tolist()))) > 3, "test needs samples halting at different points"
    assert torch.equal(compact.iterations, masked.iterations)
    # float32 reassociation only: inference pools the hidden layer and applies the last (linear)
    # convolution to the average, ACT's exit weights are continuous in those scores
    assert torch.allclose(compact.logits, masked.logits, atol=5e-5)
    assert torch.allclose(compact.ponder_cost, masked.ponder_cost, atol=1e-5)
    for a, b in zip(compact.halting, masked.halting):
        assert torch.allclose(a, b, atol=1e-5, equal_nan=True)
    assert torch.equal(compact.macs, masked.macs)


def test_eval_results_do_not_depend_on_batch_size():
    model = build_model(tiny(threshold=0.5)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(24, 1, 16, 16)
    with torch.no_grad():
        together = model(x)
        alone = [model(x[i:i + 1]) for i in range(len(x))]
    assert torch.equal(together.iterations, torch.cat([o.iterations for o in alone]))
    assert torch.allclose(together.logits, torch.cat([o.logits for o in alone]), atol=1e-5)


@pytest.fixture
def strict_compaction(monkeypatch):
    """Halted samples leave the batch at once (eval mode otherwise lets a few ride along unused)."""
    monkeypatch.setattr("iamnn_studio.engine.model.LAZY_COMPACTION", 0.0)


def test_halted_samples_run_no_further_convolutions(strict_compaction):
    """Compaction: a sample that halts early costs fewer convolution MACs, measured by the flop counter."""
    model = build_model(tiny(threshold=0.5)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(32, 1, 16, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as adaptive:
        out = model(x)
    model.set_mode("max")
    with torch.no_grad(), FlopCounterMode(display=False) as full:
        model(x)
    assert out.iterations.sum() < 32 * sum(model.caps)
    assert adaptive.get_total_flops() < full.get_total_flops()
    assert adaptive.get_total_flops() // 2 == int(out.macs.sum())


def test_lazy_compaction_gives_the_same_answers_for_a_bounded_extra_cost(monkeypatch):
    """Eval mode keeps halted samples in the batch until they are LAZY_COMPACTION of it: same outputs,
    and the convolutions run on them cost less than that share of the work."""
    from iamnn_studio.engine.model import LAZY_COMPACTION

    model = build_model(tiny(threshold=0.5)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(64, 1, 16, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as lazy_count:
        lazy = model(x)
    monkeypatch.setattr("iamnn_studio.engine.model.LAZY_COMPACTION", 0.0)
    with torch.no_grad(), FlopCounterMode(display=False) as strict_count:
        strict = model(x)
    assert torch.allclose(lazy.logits, strict.logits, atol=1e-5)
    assert torch.equal(lazy.iterations, strict.iterations) and torch.equal(lazy.macs, strict.macs)
    for a, b in zip(lazy.halting, strict.halting):
        assert torch.allclose(a, b, atol=1e-6, equal_nan=True)
    extra = lazy_count.get_total_flops() / strict_count.get_total_flops() - 1
    assert 0 <= extra < LAZY_COMPACTION


# ------------------------------------------------------------------------ halting
def test_act_halting_rule_cumulative_scores_remainder_and_weights():
    from iamnn_studio.engine.halting import act_step

    threshold = 0.99
    scores = [torch.tensor([0.3, 0.6, 0.995]), torch.tensor([0.5, 0.3, 0.1]), None]
    cumulative = torch.zeros(3)
    running = torch.ones(3, dtype=torch.bool)
    weights = torch.zeros(3, 3)
    halted_at = torch.zeros(3, dtype=torch.long)
    for n, h in enumerate(scores):
        halt, weight, cumulative_new = act_step(cumulative, h, threshold)
        weights[:, n] = torch.where(running, weight, torch.zeros_like(weight))
        halted_at = torch.where(running & halt, torch.full_like(halted_at, n + 1), halted_at)
        cumulative = torch.where(running, cumulative_new, cumulative)
        running = running & ~halt
    # sample 0: 0.3 + 0.5 = 0.8 < 0.99 -> forced halt at the cap (3) with remainder 0.2
    # sample 1: 0.6 + 0.3 = 0.9 -> cap, remainder 0.1; sample 2: 0.995 >= 0.99 -> halts at 1, R = 1
    assert halted_at.tolist() == [3, 3, 1]
    assert torch.allclose(weights[0], torch.tensor([0.3, 0.5, 0.2]))
    assert torch.allclose(weights[1], torch.tensor([0.6, 0.3, 0.1]))
    assert torch.allclose(weights[2], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(weights.sum(1), torch.ones(3))


def test_act_block_output_is_weighted_mean_and_ponder_is_n_plus_r():
    model = build_model(tiny(halting="act", threshold=0.7)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    block = model.blocks[1]
    x0 = torch.randn(16, block.in_channels, 8, 8)
    with torch.no_grad():
        result = block(x0, rule="act", threshold=0.7)
        # reference: run every iteration, weights by hand
        state = torch.zeros(16, block.channels, 8, 8)
        cumulative = torch.zeros(16)
        output = torch.zeros_like(state)
        halted = torch.zeros(16, dtype=torch.bool)
        ponder = torch.zeros(16)
        for n in range(block.cap):
            out = block.process(torch.cat([x0, state], 1), n)
            state = torch.where(halted.view(-1, 1, 1, 1), state, state + out)
            h = block.halting_head(state, x0, out, n) if n < block.cap - 1 else torch.ones(16)
            last = (cumulative + h >= 0.7) | (n == block.cap - 1)
            w = torch.where(last, 1 - cumulative, h)
            w = torch.where(halted, torch.zeros_like(w), w)
            output += w.view(-1, 1, 1, 1) * block.exit_norm[n](state)
            ponder = torch.where(~halted & last, n + 1 + (1 - cumulative), ponder)
            cumulative = torch.where(halted, cumulative, cumulative + h)
            halted |= last
    assert torch.allclose(result.output, output, atol=1e-5)
    assert torch.allclose(result.ponder_cost, ponder, atol=1e-5)
    assert ((result.ponder_cost >= result.iterations) & (result.ponder_cost <= result.iterations + 1)).all()


def test_cap_forces_halt_and_no_score_is_computed_at_the_cap():
    model = build_model(tiny(threshold=1.0)).eval()  # cumulative never reaches 1.0 -> always the cap
    out = model(torch.randn(5, 1, 16, 16))
    assert out.iterations.tolist() == [list(model.caps)] * 5
    for h, cap in zip(out.halting, model.caps):
        assert not torch.isnan(h[:, : cap - 1]).any()
        assert torch.isnan(h[:, cap - 1]).all()


def test_fixed_and_max_modes_run_exact_iteration_counts():
    model = build_model(tiny(mode="fixed:1")).eval()
    assert model(torch.randn(3, 1, 16, 16)).iterations.tolist() == [[1, 1, 1, 1]] * 3
    model.set_mode("fixed:3")  # capped at each block's maximum
    assert model(torch.randn(3, 1, 16, 16)).iterations.tolist() == [[2, 3, 3, 2]] * 3
    model.set_mode("max")
    out = model(torch.randn(3, 1, 16, 16))
    assert out.iterations.tolist() == [[2, 3, 3, 2]] * 3
    assert all(torch.isnan(h).all() for h in out.halting)  # no head evaluated without halting


def test_threshold_is_a_compute_knob_on_a_trained_model():
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(64, 1, 16, 16)
    macs = []
    for t in (0.2, 0.6, 0.95):
        model.set_threshold(t)
        macs.append(float(model(x).macs.float().mean()))
    assert macs[0] < macs[1] < macs[2]
    with pytest.raises(ValueError, match="threshold"):
        model.set_threshold(1.5)


# ---------------------------------------------------------------------- gradients
def test_gradients_reach_halting_head_and_ponder_cost_in_act_training():
    torch.manual_seed(0)
    model = build_model(tiny(halting="act", width=4)).train()
    spread_halting(model)
    x = torch.randn(2 * MIN_BATCH_FOR_STATS, 1, 16, 16)
    out = model(x)
    out.ponder_cost.mean().backward(retain_graph=True)
    head_grads = [b.halting_head.out.weight.grad for b in model.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grads)
    model.zero_grad()
    torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 5, (len(x),))).backward()
    assert any(b.halting_head.fc1.weight.grad is not None and b.halting_head.fc1.weight.grad.abs().sum() > 0
               for b in model.blocks)
    assert model.blocks[0].process.conv1.weight.grad.abs().sum() > 0


def test_anytime_training_with_forced_exits():
    model = build_model(tiny()).train()
    out = model(torch.randn(20, 1, 16, 16), exits=(1, 2, 3, 1))
    assert out.iterations.tolist() == [[1, 2, 3, 1]] * 20
    out.logits.sum().backward()
    assert model.blocks[2].process.bn1[2].weight.grad is not None  # iteration 3's own batchnorm trained
    assert model.blocks[2].process.bn1[0].weight.grad is not None


def test_tiny_training_subsets_keep_running_statistics_and_stay_bounded():
    model = build_model(tiny()).train()
    bn = model.blocks[0].process.bn1[0]
    before = bn.running_mean.clone()
    model(torch.randn(MIN_BATCH_FOR_STATS - 1, 1, 16, 16), exits=(1, 1, 1, 1))
    assert torch.equal(bn.running_mean, before)
    far = 100 + 50 * torch.randn(MIN_BATCH_FOR_STATS - 1, bn.num_features, 4, 4)  # unlike the running stats
    assert bn(far).abs().max() < 10  # normalised by its own statistics, not by unsettled running ones
    model(torch.randn(MIN_BATCH_FOR_STATS, 1, 16, 16), exits=(1, 1, 1, 1))
    assert not torch.equal(bn.running_mean, before)
    single = model.blocks[0].halting_head.norm[0]
    assert single(torch.randn(1, single.num_features)).shape == (1, single.num_features)  # one sample works


# ---------------------------------------------------------------------------- MACs
@pytest.mark.parametrize("stem_size", [16, 80])  # small 3x3 stem and the ImageNet 7x7/2 stem
@pytest.mark.parametrize("mode", ["adaptive", "fixed:1", "max"])
def test_mac_accounting_equals_flop_counter(mode, stem_size, strict_compaction):
    model = build_model(tiny(image_size=stem_size, mode=mode, threshold=0.5, in_channels=3)).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(12, 3, stem_size, stem_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert counter.get_total_flops() == 2 * int(out.macs.sum())  # the counter counts 2 FLOPs per MAC


def test_macs_range_spans_one_iteration_to_the_caps():
    model = build_model(tiny())
    low, high = model.macs_range()
    costs = model.unit_costs()
    # cheapest: one iteration and one head evaluation per block; dearest: every iteration, heads at all but the cap
    fixed = costs["stem"] + sum(costs["input"]) + costs["classifier"]
    cheapest = fixed + sum(first + hd for first, hd in zip(costs["first_iteration"], costs["head"]))
    dearest = fixed + sum(
        first + (cap - 1) * (it + hd)
        for cap, first, it, hd in zip(model.caps, costs["first_iteration"], costs["iteration"], costs["head"]))
    assert (low, high) == (cheapest, dearest)


def test_research_unit_costs_for_width_16_fashion_mnist():
    """adaptivity.md: conv MACs per iteration 3.61 / 3.81 / 3.81 / 2.80 M at width 16, 28x28 when the
    whole concat(x0, state) is convolved. The x0 part of the first convolution runs once per block, and
    the first iteration skips the state part (the state is still zero)."""
    model = build_model(ModelConfig(depth=50, width=16, in_channels=1, image_size=28, num_classes=10))
    costs = model.unit_costs()
    paper_form = [i + it for i, it in zip(costs["input"], costs["iteration"])]
    assert [round(c / 1e6, 2) for c in paper_form] == [3.61, 3.81, 3.81, 2.80]
    assert all(it < whole for it, whole in zip(costs["iteration"], paper_form))
    for block, (h, w), first, it in zip(model.blocks, model._spatial, costs["first_iteration"], costs["iteration"]):
        assert it - first == h * w * block.channels * block.process.width  # the skipped 1x1 over the state


def test_split_first_convolution_equals_convolving_the_concatenation():
    """prepare/step (x0 part once) computes exactly what the paper's concat form computes."""
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    process = model.blocks[1].process
    x0 = torch.randn(6, model.blocks[1].in_channels, 8, 8)
    state = torch.randn(6, model.blocks[1].channels, 8, 8)
    with torch.no_grad():
        split = process.step(process.prepare(x0), state, 2)
        concatenated = process(torch.cat([x0, state], 1), 2)
    assert torch.allclose(split, concatenated, atol=1e-5)


def test_baseline_is_torchvision_resnet_with_same_output_type():
    from torchvision.models.resnet import Bottleneck, ResNet

    cfg = ModelConfig(depth=50, width=8, in_channels=1, image_size=28, num_classes=10)
    base = build_baseline(cfg).eval()
    assert isinstance(base.resnet, ResNet)
    assert isinstance(base.resnet.layer3[0], Bottleneck) and len(base.resnet.layer3) == 6
    out = base(torch.randn(3, 1, 28, 28))
    assert out.logits.shape == (3, 10)
    assert out.iterations.tolist() == [[3, 4, 6, 3]] * 3
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        base.resnet(torch.randn(1, 1, 28, 28))
    assert int(out.macs[0]) == counter.get_total_flops() // 2


@pytest.mark.parametrize("depth,minimum_ratio", [(50, 2.0), (101, 3.5), (152, 4.5)])
def test_unshared_resnet_has_several_times_the_parameters(depth, minimum_ratio):
    """Ratios at width 16 are 2.4x (50), 4.0x (101), 5.2x (152); see README for why not 10x."""
    cfg = ModelConfig(depth=depth, width=16, in_channels=1, image_size=28, num_classes=10)
    ratio = n_params(build_baseline(cfg)) / n_params(build_model(cfg))
    assert ratio >= minimum_ratio


# ----------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"depth": 7}, "depth"),
        ({"width": 0}, "width"),
        ({"tau": -0.1}, "tau"),
        ({"eps": 1.0}, "eps"),
        ({"eps": 1.5}, "eps"),
        ({"num_classes": 0}, "num_classes"),
        ({"mode": "fixed:0"}, "mode"),
        ({"mode": "sometimes"}, "mode"),
        ({"iterations": (1, 2, 3)}, "iterations"),
        ({"halting": "magic"}, "halting"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_bad_model_configs_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        build_model(ModelConfig(**overrides))


def test_a_threshold_that_is_0_in_float32_is_refused_and_the_smallest_accepted_one_halts_nothing_at_once(tmp_path):
    """1e-300 passed "(0, 1]", but the model compares in float32, where it is 0: every cumulative score
    reached it and every block stopped at its first iteration."""
    from iamnn_studio.engine.config import MIN_THRESHOLD, RunConfig

    model = build_model(tiny(threshold=0.5)).eval()
    model.config.threshold = 1e-300  # what validation used to let through
    assert model(torch.randn(4, 1, 16, 16)).iterations.tolist() == [[1, 1, 1, 1]] * 4  # the fault it caused
    model.config.threshold = 0.5
    said = (r"^threshold: must be at least 1e-45, got 1e-300 \(0 in the model's float32 arithmetic: "
            r"every block would stop at its first iteration\)$")
    with pytest.raises(ValueError, match=said):
        model.set_threshold(1e-300)
    with pytest.raises(ValueError, match=said):
        ModelConfig(threshold=1e-300).validate()
    (tmp_path / "run.toml").write_text("[model]\nthreshold = 1e-300\n")
    with pytest.raises(ValueError, match=said):
        RunConfig.load(tmp_path / "run.toml").validate()
    assert ModelConfig(threshold=MIN_THRESHOLD).validate().threshold == MIN_THRESHOLD
    assert not bool(torch.zeros(1) >= MIN_THRESHOLD)  # a score of 0 has not reached the smallest one


def test_model_config_round_trips_through_dict():
    from iamnn_studio.engine import ModelConfig

    cfg = tiny(mode="fixed:2", threshold=0.4)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="model.colour"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})
    assert math.isclose(ModelConfig(eps=0.05).halting_threshold, 0.95)


def test_calibration_stopped_early_returns_without_touching_the_threshold():
    from iamnn_studio.engine.calibration import fit_halting
    from iamnn_studio.engine.data import ImageTensors

    model = build_model(tiny(threshold=0.42))
    data = ImageTensors(torch.randint(0, 255, (40, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 5, (40,)))
    summary = fit_halting(model, data, mean=(0.5,), std=(0.25,), should_stop=lambda: True)
    assert summary["stopped"] and model.config.threshold == 0.42
    assert all(p.requires_grad for p in model.parameters())


def test_calibration_fits_heads_and_picks_a_threshold_from_the_curve(monkeypatch):
    import iamnn_studio.engine.calibration as calibration
    from iamnn_studio.engine.calibration import fit_halting
    from iamnn_studio.engine.data import ImageTensors

    # random data makes any depth the "most accurate": take the full depth, so every head has work
    monkeypatch.setattr(calibration, "reference_setting", lambda points, images: tuple(points[-1]["iterations"]))
    torch.manual_seed(0)
    model = build_model(tiny())
    randomise_batchnorms(model)
    data = ImageTensors(torch.randint(0, 255, (60, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 5, (60,)))
    head_before = model.blocks[1].halting_head.fc1.weight.clone()
    conv_before = model.blocks[1].process.conv1.weight.clone()
    summary = fit_halting(model, data, mean=(0.5,), std=(0.25,), head_epochs=3)
    assert summary["threshold"] in [p["threshold"] for p in summary["curve"]]
    assert model.config.threshold == summary["threshold"] and model.config.mode == "adaptive"
    assert not torch.equal(model.blocks[1].halting_head.fc1.weight, head_before)  # heads trained
    assert torch.equal(model.blocks[1].process.conv1.weight, conv_before)  # backbone frozen
    chosen = next(p for p in summary["curve"] if p["threshold"] == summary["threshold"])
    cheaper_and_good = [p for p in summary["curve"]
                        if p["mean_macs"] < chosen["mean_macs"] and p["agreement"] >= summary["required_agreement"]]
    assert not cheaper_and_good
    assert summary["required_agreement"] >= summary["target_agreement"]


def test_calibration_limits_the_halting_to_the_most_accurate_fixed_setting():
    from iamnn_studio.engine.calibration import fit_halting, reference_setting
    from iamnn_studio.engine.data import ImageTensors

    torch.manual_seed(1)
    model = build_model(tiny())
    randomise_batchnorms(model)
    data = ImageTensors(torch.randint(0, 255, (60, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 5, (60,)))
    summary = fit_halting(model, data, mean=(0.5,), std=(0.25,), head_epochs=2)

    settings = summary["fixed_settings"]
    assert [p["iterations"][0] for p in settings] == [1, 2, 2]  # n per block, capped at (2, 3, 3, 2)
    limits = tuple(summary["halting_caps"])
    assert limits == reference_setting(settings, 30) and model.adaptive_caps == limits
    assert model.config.halting_caps == (None if limits == model.caps else limits)
    with torch.no_grad():
        out = model(torch.randn(32, 1, 16, 16))
    assert (out.iterations <= torch.tensor(limits)).all()
    assert model.macs_range()[1] == int(model.macs_for(torch.tensor([limits]), torch.tensor([limits]) - 1))


def test_the_reference_is_the_most_accurate_setting_and_a_one_image_tie_goes_to_the_cheaper():
    from iamnn_studio.engine.calibration import reference_setting

    points = [{"iterations": [n] * 4, "accuracy": a, "mean_macs": 10.0 * n}
              for n, a in ((1, 0.90), (2, 0.931), (3, 0.932), (4, 0.925))]
    assert reference_setting(points, 100_000) == (3, 3, 3, 3)
    assert reference_setting(points, 1_000) == (2, 2, 2, 2)  # 0.932 vs 0.931: one image in 1,000


@pytest.mark.parametrize("compact", [True, False])
def test_halting_caps_stop_every_image_there_and_count_no_head_at_the_limit(compact):
    torch.manual_seed(0)
    model = build_model(tiny(threshold=0.999)).eval()  # the heads alone would run nearly every image to the cap
    randomise_batchnorms(model)
    x = torch.randn(24, 1, 16, 16)
    model.set_halting_caps((1, 2, 1, 2))
    with torch.no_grad():
        out = model(x, compact=compact)
    assert (out.iterations <= torch.tensor([1, 2, 1, 2])).all()
    assert [h.shape[1] for h in out.halting] == [2, 3, 3, 2]  # shaped by the caps, NaN past the limit
    assert torch.isnan(out.halting[2][:, 1:]).all()
    with torch.no_grad():
        fixed = model(x, exits=(1, 2, 1, 2))
    at_limit = (out.iterations == torch.tensor([1, 2, 1, 2])).all(1)
    assert at_limit.any()
    assert torch.allclose(out.logits[at_limit], fixed.logits[at_limit], atol=1e-4)
    assert out.macs.max() <= model.macs_range()[1]
    with pytest.raises(ValueError, match="halting_caps"):
        model.set_halting_caps((3, 1, 1, 1))  # above block 1's cap of 2
    assert model.config.halting_caps == (1, 2, 1, 2)
    model.set_halting_caps(None)
    assert model.adaptive_caps == model.caps


def _curve(*points):
    return [{"threshold": t, "agreement": a, "mean_macs": m} for t, a, m in points]


def test_threshold_choice_keeps_the_fixed_target_when_the_cheapest_setting_is_far_from_it():
    from iamnn_studio.engine.calibration import choose_threshold

    # the width-8 run's shape: one iteration agrees on 94 %, so the 0.97 target decides
    curve = _curve((0.3, 0.937, 3.7), (0.9, 0.952, 4.9), (0.97, 0.974, 7.5), (0.99, 0.990, 10.3))
    assert choose_threshold(curve, 0.97) == 0.97


def test_threshold_choice_does_not_collapse_when_the_cheapest_setting_meets_the_target():
    from iamnn_studio.engine.calibration import choose_threshold, required_agreement

    # the width-16 run's shape: one iteration already agrees on 97 %; halving its 3 % of changed
    # answers needs 98.5 %, first reached at 0.99 (not 0.7, which stopped 98 % of images at once)
    curve = _curve((0.3, 0.9697, 11.33), (0.7, 0.9703, 11.41), (0.98, 0.980, 21.4), (0.99, 0.9883, 25.5),
                   (0.999, 0.994, 37.9))
    assert required_agreement(curve, 0.97) == pytest.approx(0.98485)
    assert choose_threshold(curve, 0.97) == 0.99
    # nothing reaches it: the best agreement, the cheaper of equals
    assert choose_threshold(_curve((0.3, 0.99, 1.0), (0.9, 0.992, 2.0)), 0.97) == 0.9


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (2, 3), (6, 4)])
def test_fast_max_pool_equals_pytorch_max_pool(size, layout):
    from iamnn_studio.engine.model import MaxPool2x2

    x = torch.randn(3, 5, *size)
    x[0, 0, 0, 0] = math.nan  # NaN propagates as in PyTorch's kernel
    x[1, 2, -1, -2] = math.nan
    x = x.contiguous(memory_format=layout)  # channels_last, even sizes: maxima over contiguous halves
    with torch.no_grad():
        fast = MaxPool2x2()(x)
    reference = nn.MaxPool2d(2)(x)
    assert fast.shape == reference.shape
    assert torch.equal(fast.nan_to_num(-1.0), reference.nan_to_num(-1.0))
    assert fast[0, 0].isnan().any() == reference[0, 0].isnan().any()


@pytest.mark.parametrize("first", [True, False])
def test_eval_step_with_folded_batchnorms_equals_conv_then_batchnorm(first):
    """Eval mode folds each batchnorm into the convolution before it: same values as running them."""
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    process = model.blocks[1].process
    x0 = torch.randn(6, model.blocks[1].in_channels, 8, 8)
    state = None if first else torch.randn(6, model.blocks[1].channels, 8, 8)
    with torch.no_grad():
        prepared = process.prepare(x0)
        folded = process.step(prepared, state, 1)
        reference = process._rest(prepared if first else prepared + torch.nn.functional.conv2d(
            state, process.conv1.weight[:, process.in_channels:]), 1)
    assert torch.allclose(folded, reference, atol=1e-5)
    assert not torch.allclose(reference, process._rest(prepared, 0), atol=1e-3)  # the iteration's own statistics


def test_training_time_estimate_follows_the_recipe_and_the_images():
    from iamnn_studio.engine.estimate import estimate_training_seconds, expected_training_macs

    model = build_model(tiny())
    low, high = model.macs_range()
    costs = model.unit_costs()
    calibrated = expected_training_macs(model, "calibrated")
    without_heads = low - sum(min(1, cap - 1) * hd for cap, hd in zip(model.caps, costs["head"]))
    assert without_heads < calibrated < high  # sampled exits: between one iteration and full depth
    assert expected_training_macs(model, "act") == (low + high) / 2
    assert expected_training_macs(model, "plain") == model.macs_for(torch.tensor([model.caps]), torch.zeros(1, 4))[0]
    assert estimate_training_seconds(1e6, 2000, 1e9) == pytest.approx(2 * estimate_training_seconds(1e6, 1000, 1e9))


@pytest.mark.parametrize("reduce", ["pool", "gap"])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_inference_exit_reduces_before_the_batchnorm_only_where_that_is_exact(reduce, signs):
    """An exit's batchnorm may run after the max-pool only with positive scales (a negative scale
    turns a max into a min); after the global average always. Either way, the same values."""
    from iamnn_studio.engine.model import reduce_features

    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    block = model.blocks[1]
    norm = block.exit_norm[1]
    if signs == "mixed":
        with torch.no_grad():
            norm.weight[::2] *= -1.0
    state = torch.randn(6, block.channels, 7, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = block._exit(state, 1, reduce)
        reference = reduce_features(norm(state), reduce)
    assert fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=1e-6)
    # the cached affine map follows the batchnorm when its parameters change
    with torch.no_grad():
        norm.bias.add_(1.0)
        assert torch.allclose(block._exit(state, 1, reduce), reduce_features(norm(state), reduce), atol=1e-6)


class _AtenLog:
    """Records the aten ops (and their first argument's shape) run inside it."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        log = self.ops = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                first = args[0] if args else None
                log.append((str(func.overloadpacket), tuple(first.shape) if isinstance(first, torch.Tensor) else None))
                return func(*args, **(kwargs or {}))

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


def test_inference_halting_head_runs_a_few_bare_ops_and_scores_the_same():
    """Without autograd, in eval mode, a head evaluation is its batchnorm as one multiply-add and three
    bare matrix products: no batchnorm op, a handful of calls, the same scores (to float32 rounding:
    rsqrt against the batchnorm kernel's 1/sqrt); the cached batchnorm follows a change of its statistics."""
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    head = model.blocks[2].halting_head
    features = torch.randn(9, head.features) * 2 + 0.5

    def reference():
        z = torch.relu(head.fc1(head.norm[1](features)))
        return torch.sigmoid(head.out(torch.relu(head.fc2(z)))).squeeze(1)

    with torch.no_grad():
        head.score(features, 1)  # the first call folds and caches
        with _AtenLog() as log:
            score = head.score(features, 1)
        assert torch.allclose(score, reference(), rtol=1e-5, atol=1e-7)
        assert not any("batch_norm" in op for op, _ in log.ops)
        assert len(log.ops) <= 8, log.ops
        head.norm[1].running_mean.add_(0.5)
        assert torch.allclose(head.score(features, 1), reference(), rtol=1e-5, atol=1e-7)
    with torch.enable_grad():  # training keeps the modules (gradients reach the batchnorm)
        assert torch.allclose(head.score(features, 1), reference())


def gathers_of_rows(monkeypatch) -> list[tuple[tuple[int, ...], int]]:
    """(shape gathered from, rows taken) of every gather of running images from now on."""
    from iamnn_studio.engine import model as model_code

    gathered: list[tuple[tuple[int, ...], int]] = []
    take_rows = model_code.take_rows
    monkeypatch.setattr(model_code, "take_rows",
                        lambda x, index: gathered.append((tuple(x.shape), len(index))) or take_rows(x, index))
    return gathered


def test_exits_of_most_running_rows_are_gathered_after_the_reduction_not_from_the_state(monkeypatch):
    """Inference: when at least half the running rows leave at a later iteration, the block reduces every
    row's exit (max-pool or average; rows do not mix in eval mode) and gathers the leavers from that,
    4x or H*W x smaller, instead of gathering their full states. Same answers as masked execution."""
    model = build_model(tiny(threshold=0.5)).eval()
    randomise_batchnorms(model)
    block = model.blocks[1]  # cap 3

    def score(features, n):  # nobody leaves at the first iteration; 6 of the 8 rows at the second
        leave = torch.zeros(features.shape[0])
        if n == 1:
            leave[: features.shape[0] - 2] = 1.0
        return leave * 0.9

    monkeypatch.setattr(block.halting_head, "score", score)
    gathered = gathers_of_rows(monkeypatch)
    x0 = torch.randn(8, block.in_channels, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        compact = block(x0, rule="hazard", threshold=0.5, reduce="pool")
        gathered_states = [taken for shape, taken in gathered if shape == (8, block.channels, 8, 8)]
        masked = block(x0, rule="hazard", threshold=0.5, compact=False)
    assert compact.iterations.tolist() == [2] * 6 + [3] * 2
    assert gathered_states == [2]  # the two stayers' states; the six leavers' are not gathered
    assert torch.allclose(compact.output, reduce_features_of(masked.output), atol=1e-6)
    assert torch.equal(compact.ponder_cost, masked.ponder_cost)
    assert torch.allclose(compact.halting, masked.halting, equal_nan=True)


def test_take_rows_gathers_with_the_values_and_layout_of_plain_indexing():
    """``take_rows`` is ``x[index]`` along the batch: same values and memory layout for channels_last maps,
    contiguous maps and vectors, in any order and with repeats."""
    from iamnn_studio.engine.model import take_rows

    index = torch.tensor([5, 0, 3, 3])
    maps = torch.randn(6, 4, 5, 3)
    for x in (maps.contiguous(memory_format=torch.channels_last), maps, torch.randn(6, 7), torch.randn(6)):
        taken = take_rows(x, index)
        assert torch.equal(taken, x[index])
        assert taken.stride() == x[index].stride()


def test_a_compacted_training_step_has_the_gradients_of_plain_indexing(monkeypatch):
    """Training gathers the running images as ``x[index]`` does, bit for bit: a gather whose backward lays the
    gradient out otherwise moved training gradients by ~1e-11."""
    from iamnn_studio.engine import model as model_code

    def gradients() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        model = build_model(tiny(halting="act", width=4)).train()
        spread_halting(model)
        x = torch.randn(2 * MIN_BATCH_FOR_STATS, 1, 16, 16)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 5, (len(x),)))
        (loss + out.ponder_cost.mean()).backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}, out.iterations

    compacted, iterations = gradients()
    monkeypatch.setattr(model_code, "take_rows", lambda x, index: x[index])
    plain, plain_iterations = gradients()
    assert len(set(map(tuple, iterations.tolist()))) > 3, "test needs images leaving at different points"
    assert torch.equal(iterations, plain_iterations) and compacted.keys() == plain.keys()
    assert [name for name in compacted if not torch.equal(compacted[name], plain[name])] == []


def reduce_features_of(x):
    from iamnn_studio.engine.model import reduce_features

    return reduce_features(x, "pool")


def test_inference_caches_follow_a_training_forward_that_re_estimates_the_statistics():
    """A training-mode forward rewrites the batchnorms' running statistics in place without bumping their
    versions, so the folded-weight and halting-head caches served the old statistics: a model re-estimated
    this way (no optimiser step, e.g. after the data changed) answered as before the re-estimate."""
    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    x = torch.randn(24, 1, 16, 16)
    with torch.no_grad():
        model(x)  # fills the caches
        model.train()
        model(x * 3 + 1)  # running statistics move; no weight changes
        model.eval()
        cached = model(x)
    with torch.enable_grad():  # computed from the modules, no cache
        reference = model(x)
    assert torch.allclose(cached.logits, reference.logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(cached.iterations, reference.iterations)


def test_a_pruned_layer_runs_through_its_own_module():
    """Pruning (or any parametrization) moves a layer's weight out of its parameters into a hook: the
    inference fast paths raised KeyError('weight'); they now take the modules' path, pruned weights and all."""
    from torch.nn.utils import prune

    model = build_model(tiny()).eval()
    randomise_batchnorms(model)
    spread_halting(model)
    block = model.blocks[1]
    prune.l1_unstructured(block.halting_head.fc1, "weight", 0.5)
    prune.l1_unstructured(block.process.conv2, "weight", 0.5)
    x = torch.randn(12, 1, 16, 16)
    with torch.no_grad():
        fast = model(x)
    with torch.enable_grad():
        reference = model(x)
    assert torch.allclose(fast.logits, reference.logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast.iterations, reference.iterations)
