"""CPU inference split over single-threaded workers: same results as one pass, used only where it helps."""
from __future__ import annotations

import os
import threading

import pytest
import torch

from iamnn_studio.engine import split_forward
from iamnn_studio.engine.data.augment import normalize
from tiny_models import MEAN, STD, varied_halting_model, varied_images


@pytest.fixture
def two_threads(monkeypatch):
    """Passive OpenMP (as the app runs) and two intra-op threads; the thread count is put back."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model_and_images():
    model = varied_halting_model()
    return model, normalize(varied_images().images, MEAN, STD)


def threads_running(model) -> set[str]:
    """Names of the threads that run the model's classifier (filled on every forward)."""
    names: set[str] = set()
    model.fc.register_forward_hook(lambda *_: names.add(threading.current_thread().name))
    return names


def passes_of(model) -> list[tuple[str, int]]:
    """(thread name, images) of each pass of the model's classifier (filled on every forward)."""
    passes: list[tuple[str, int]] = []
    model.fc.register_forward_hook(lambda _m, inputs, _o: passes.append((threading.current_thread().name,
                                                                          inputs[0].shape[0])))
    return passes


@pytest.mark.parametrize("mode", ["adaptive", "max", "fixed:2"])
def test_the_split_pass_gives_each_image_what_one_pass_gives_it(two_threads, model_and_images, mode):
    model, x = model_and_images
    model.set_mode(mode)
    with torch.no_grad():
        whole = model(x)
    passes = passes_of(model)
    split = split_forward.forward(model, x)

    assert split_forward.workers_for(model, x) == 2
    # two halves in the pool's threads (which thread takes which half is the scheduler's: one can take both)
    assert sorted(n for _, n in passes) == [len(x) // 2] * 2
    assert all(name.startswith("iamnn-split-forward") for name, _ in passes)
    assert torch.allclose(split.logits, whole.logits, atol=1e-5)
    assert torch.equal(split.iterations, whole.iterations) and torch.equal(split.macs, whole.macs)
    for got, expected in zip(split.halting, whole.halting):
        assert torch.allclose(got, expected, atol=1e-6, equal_nan=True)
    assert torch.allclose(split.ponder_cost, whole.ponder_cost, atol=1e-5)
    if mode == "adaptive":  # the test means something only if the images halt differently
        assert len(set(whole.macs.tolist())) > 1


def test_forced_exits_are_passed_to_every_worker(two_threads, model_and_images):
    model, x = model_and_images
    split = split_forward.forward(model, x, exits=(1, 1, 1, 1))
    assert split.iterations.eq(1).all()


def test_the_callers_thread_count_and_grad_mode_are_left_alone(two_threads, model_and_images):
    model, x = model_and_images
    assert torch.is_grad_enabled()
    out = split_forward.forward(model, x)
    assert torch.get_num_threads() == 2 and torch.is_grad_enabled()
    assert not out.logits.requires_grad


@pytest.mark.parametrize("case", ["spinning openmp", "one thread", "small batch"])
def test_one_ordinary_pass_where_a_split_would_not_help(two_threads, model_and_images, monkeypatch, case):
    model, x = model_and_images
    if case == "spinning openmp":
        monkeypatch.delenv("OMP_WAIT_POLICY")
    elif case == "one thread":
        torch.set_num_threads(1)
    else:
        x = x[: 2 * split_forward.MIN_IMAGES_PER_WORKER - 1]
    names = threads_running(model)
    split_forward.forward(model, x)
    assert split_forward.workers_for(model, x) == 1
    assert names == {threading.current_thread().name}


@pytest.mark.parametrize("threads", [4, 2])
def test_threads_started_after_a_split_pass_keep_the_callers_thread_count(two_threads, model_and_images, threads):
    """torch.set_num_threads in a worker also sets the count every later thread starts with: a training
    or evaluation thread the app started after a prediction ran on one core."""
    model, x = model_and_images
    torch.set_num_threads(threads)  # 4: half-teams of 2, so the workers set their count on this call
    split_forward.forward(model, x)
    assert split_forward.workers_for(model, x) == 2
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [threads]


def test_a_model_in_training_mode_runs_in_one_pass(two_threads, model_and_images):
    model, x = model_and_images
    model.train()  # batchnorm on batch statistics: two halves would not give one pass's answers
    assert split_forward.workers_for(model, x) == 1


def test_a_worker_that_raises_leaves_the_thread_count_as_it_was(two_threads, model_and_images, monkeypatch):
    """A failing half (out of memory) skipped the restore: threads started later kept one core."""
    model, x = model_and_images
    monkeypatch.setattr(model.fc, "forward", lambda *_: (_ for _ in ()).throw(MemoryError("no room")))
    with pytest.raises(MemoryError):
        split_forward.forward(model, x)
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert torch.get_num_threads() == 2 and seen == [2]


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_the_pools_threads_take_the_normal_policy_whoever_starts_them(two_threads, model_and_images, monkeypatch):
    """The app's training thread runs as SCHED_BATCH; its final evaluation may split the first batch, and the
    pool's threads then inherited batch scheduling for every later prediction of the Use tab."""
    import concurrent.futures

    model, x = model_and_images
    monkeypatch.setattr(split_forward, "_pool", None)  # a pool the batch thread below starts
    policies = []
    model.fc.register_forward_hook(lambda *_: policies.append(os.sched_getscheduler(0)))

    def batch_caller() -> None:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        split_forward.forward(model, x)

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as caller:
            caller.submit(batch_caller).result()
        assert policies and set(policies) == {os.SCHED_OTHER}
    finally:
        split_forward._pool.shutdown()
