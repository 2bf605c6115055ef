"""Batchnorm statistics recomputed at the current weights: eval mode then agrees with training mode."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from iamnn_studio.engine.model import build_model, layout_of
from iamnn_studio.engine.norm_statistics import every_exit, refresh_batches, refresh_images, refresh_norm_statistics
from tiny_models import tiny_config

torch.set_num_threads(1)

EXIT_SETTINGS = [(1, 2, 3, 2), (1, 1, 1, 1), (1, 2, 1, 2)]


def model_with_stale_statistics() -> nn.Module:
    """A model whose weights grew after its statistics were taken, as early training's high learning rate does."""
    torch.manual_seed(0)
    model = build_model(tiny_config())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.mul_(5.0)
    return model


def logits(model: nn.Module, x: torch.Tensor, exits, *, training: bool) -> torch.Tensor:
    """What eval mode gives, or training mode's batch-statistics answer (on a copy: it moves the statistics)."""
    model = copy.deepcopy(model).train(training)
    with torch.no_grad():
        return model(x, exits=exits).logits


def gap(model: nn.Module, x: torch.Tensor, exits) -> float:
    """How far eval mode is from training mode on the same batch, relative to the logits' size."""
    expected = logits(model, x, exits, training=True)
    return float((logits(model, x, exits, training=False) - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("exits", EXIT_SETTINGS)
def test_refreshed_statistics_make_eval_mode_agree_with_training_mode(exits):
    model = model_with_stale_statistics()
    x = torch.randn(64, 1, 16, 16)
    assert gap(model, x, exits) > 100  # stale: eval mode's logits are far off
    refresh_norm_statistics(model, [x], every_exit(model, lambda: exits))
    # what is left: variance with n - 1 against n, compounded over the layers
    assert gap(model, x, exits) < 0.05


def test_every_exit_norm_is_refreshed_whichever_exit_the_next_block_gets():
    model = model_with_stale_statistics()
    norms = [norm for block in model.blocks for norm in block.exit_norm]  # all at their initial 0 and 1
    refresh_norm_statistics(model, [torch.randn(64, 1, 16, 16)], every_exit(model, lambda: (1, 1, 1, 1)))
    assert not any(torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean)) for norm in norms)
    assert not any(torch.equal(norm.running_var, torch.ones_like(norm.running_var)) for norm in norms)


def test_every_exit_runs_the_blocks_in_the_layout_the_model_runs_them_in():
    # the stem's NCHW output made every block run in NCHW: the refresh took twice as long on a CPU
    model = model_with_stale_statistics()
    seen = []
    for block in model.blocks:
        for norm in block.exit_norm:
            norm.register_forward_pre_hook(lambda module, inputs: seen.append(layout_of(inputs[0])))
    refresh_norm_statistics(model, [torch.randn(64, 1, 16, 16)], every_exit(model))
    assert len(seen) == sum(model.caps) and set(seen) == {torch.channels_last}


def test_a_plain_forward_refreshes_what_it_reaches():
    model = model_with_stale_statistics()
    x = torch.randn(64, 1, 16, 16)
    refresh_norm_statistics(model, [x], lambda batch: model(batch, exits=(1, 2, 1, 2)))
    assert gap(model, x, (1, 2, 1, 2)) < 0.05


def test_batchnorms_no_batch_reaches_keep_their_statistics_and_every_count_and_momentum_is_kept():
    model = model_with_stale_statistics()
    model.eval()
    head = model.blocks[0].halting_head.norm[0]  # the anytime pass never runs a halting head
    with torch.no_grad():
        head.running_mean.fill_(0.5)
        head.running_var.fill_(2.0)
        head.num_batches_tracked.fill_(7)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    exit_norm = model.blocks[2].exit_norm[0]
    before = exit_norm.running_var.clone()
    counts = [int(m.num_batches_tracked) for m in norms]

    refreshed = refresh_norm_statistics(model, [torch.randn(64, 1, 16, 16)], every_exit(model))

    assert not torch.equal(exit_norm.running_var, before)  # an early exit's statistics were refreshed
    assert torch.equal(head.running_mean, torch.full_like(head.running_mean, 0.5))
    assert torch.equal(head.running_var, torch.full_like(head.running_var, 2.0))
    assert [int(m.num_batches_tracked) for m in norms] == counts  # training's count, not the refresh's
    assert all(m.momentum == 0.1 for m in norms)
    assert refreshed == len(norms) - sum(len(block.halting_head.norm) for block in model.blocks)
    assert not model.training  # left in the mode it was in


def test_batches_too_small_for_statistics_change_nothing():
    model = model_with_stale_statistics()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [m.running_var.clone() for m in norms]
    assert refresh_norm_statistics(model, [torch.randn(4, 1, 16, 16)], every_exit(model)) == 1  # only the stem's
    assert all(torch.equal(m.running_var, b) for m, b in list(zip(norms, before))[1:])


def test_the_refresh_images_are_a_fixed_mix_that_leaves_the_global_random_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first, second = refresh_images(3000, seed=1), refresh_images(3000, seed=1)
    assert torch.rand(1) == expected
    assert torch.equal(first, second) and len(first) == 1024 == len(set(first.tolist()))
    assert not torch.equal(first, torch.arange(1024))  # mixed: image folders are sorted by class
    assert sorted(refresh_images(10).tolist()) == list(range(10))


def test_every_image_weighs_the_same_however_the_images_are_batched():
    # momentum None averages per batch: a small last batch weighed as much as a full one
    model = model_with_stale_statistics()
    x = torch.randn(64, 1, 16, 16) + torch.linspace(-2, 2, 64).view(-1, 1, 1, 1)  # batches with different means
    stem_norm = model.stem[1]  # its input is linear in the images: its mean over them is exact
    refresh_norm_statistics(model, [x[:56], x[56:]])
    uneven = stem_norm.running_mean.clone()
    refresh_norm_statistics(model, [x])
    torch.testing.assert_close(uneven, stem_norm.running_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("count, batch_size", [(33, 32), (1024, 48), (17, 32), (2, 32)])
def test_refresh_batches_are_near_equal_none_of_one_image_none_above_the_batch_size(count, batch_size):
    batches = refresh_batches(torch.arange(count), batch_size)
    sizes = [len(b) for b in batches]
    assert sum(sizes) == count and torch.equal(torch.cat(batches), torch.arange(count))
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1 and min(sizes) > 1


def test_a_single_image_is_no_refresh_batch():
    assert refresh_batches(torch.arange(1), 32) == []
