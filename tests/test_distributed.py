"""Scale-out: two gloo processes on the CPU train one run, written once, with identical weights."""
from __future__ import annotations

import copy
import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

from iamnn_studio.engine.checkpoint import load_checkpoint
from iamnn_studio.engine.config import RunConfig
from iamnn_studio.engine.distributed import launch, started_by_torchrun
from iamnn_studio.engine.runs import read_metrics
from iamnn_studio.engine.trainer import usable_cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REPO = Path(__file__).resolve().parents[1]
#: train refuses more processes than the cores it may use (``check_process_count``): a run of 2 needs 2
needs_two_cores = pytest.mark.skipif(
    usable_cores() < 2, reason="trains 2 processes; train refuses more processes than this machine's usable cores")


def two_process_training(folder: Path, runs: Path, head: str, train_size: int) -> list[str]:
    """``iamnn-studio train`` on 2 processes of a tiny synthetic run whose settings file starts with ``head``."""
    settings = folder / "run.toml"
    settings.write_text(head + textwrap.dedent(f"""
        batch_size = 16
        device = "cpu"
        calibrate_halting = false
        [data]
        name = "synthetic"
        options = {{train_size = {train_size}, test_size = 20}}
        [model]
        iterations = [1, 2, 2, 1]
        width = 4
    """))
    return [sys.executable, "-m", "iamnn_studio", "train", "--config", str(settings), "--runs-dir", str(runs),
            "--nproc-per-node", "2", "--master-port", str(free_port())]


def tiny_config() -> RunConfig:
    config = RunConfig(name="ddp", epochs=2, batch_size=16, lr=0.05, device="cpu", max_steps=6, seed=1)
    config.data.name = "synthetic"
    config.data.options = {"train_size": 160, "test_size": 40}
    config.data.val_fraction = 0.25
    config.model.iterations = (1, 2, 2, 1)  # calibrated recipe: anytime exits, unused halting heads
    config.model.width = 4
    config.calibrate_halting = False
    return config


@needs_two_cores
@pytest.mark.timeout(180)
def test_two_processes_train_one_run_with_identical_weights(tmp_runs):
    events = []
    result = launch(tiny_config(), 2, runs_dir=tmp_runs, master_port=free_port(), listeners=[events.append])

    assert result.state == "completed" and result.reason == "max_steps", result.reason
    assert [p.name for p in tmp_runs.iterdir()] == ["ddp"]  # one folder, written by rank 0 only
    # torch's launcher installs its own signal handlers: ours (Ctrl-C as usual) are back afterwards
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    run = tmp_runs / "ddp"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint.training_state["world_size"] == 2 and checkpoint.training_state["step"] == 6
    assert checkpoint.training_state["processes_per_node"] == 2  # one machine: a resume says --nproc-per-node 2

    records = read_metrics(run)
    kinds = [r["event"] for r in records]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1 and kinds.count("evaluated") == 1
    epochs = [r["epoch"] for r in records if r["event"] == "epoch"]
    assert epochs == sorted(set(epochs))  # no epoch reported twice
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    started = records[0]
    assert started["world_size"] == 2
    # 120 training images, 16 per batch, 2 processes: 4 steps per epoch on each
    assert started["steps_per_epoch"] == 4

    assert set(result.parameter_digests) == {0, 1}
    assert len(set(result.parameter_digests.values())) == 1  # both ranks ended with the same weights
    # the launcher's listeners saw rank 0's events, as a single process's do: the recorded ones and the
    # transient progress of the evaluation, which metrics.jsonl does not keep
    assert [e.kind for e in events if e.kind != "phase_progress"] == kinds
    assert all(e.data["phase"] == "evaluating" for e in events if e.kind == "phase_progress")


def _worker_whose_run_folder_turns_read_only(*args):
    """``_worker`` in a process where the run folder turns read-only before the test evaluation, as a disk can
    (module level: the launcher's spawned processes import it from here)."""
    from test_trainer import ReadOnly

    from iamnn_studio.engine import distributed
    from iamnn_studio.engine.trainer import Trainer

    with pytest.MonkeyPatch.context() as monkeypatch:
        read_only, real_evaluate = ReadOnly(monkeypatch), Trainer._evaluate

        def evaluate_in_a_read_only_folder(self):
            read_only(self.run_dir.path)
            real_evaluate(self)

        monkeypatch.setattr(Trainer, "_evaluate", evaluate_in_a_read_only_folder)
        return distributed._worker(*args)


@needs_two_cores
@pytest.mark.timeout(180)
def test_warnings_of_a_run_folder_turned_read_only_reach_the_terminal_of_a_run_of_several_processes(
        tmp_path, monkeypatch):
    """The launcher showed what rank 0 wrote to metrics.jsonl, and a read-only run folder takes nothing: the
    single-process CLI said "warning: could not save the test evaluation ...", two processes said nothing."""
    import contextlib
    import io

    from iamnn_studio.cli import main
    from iamnn_studio.engine import distributed

    monkeypatch.setattr(distributed, "_worker", _worker_whose_run_folder_turns_read_only)
    argv = two_process_training(tmp_path, tmp_path / "runs", 'name = "locked"\nmax_steps = 2', train_size=64)
    out, err = io.StringIO(), io.StringIO()
    run = tmp_path / "runs" / "locked"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv[3:])  # the arguments after "python -m iamnn_studio"
    finally:
        for path in [run, *run.rglob("*")] if run.exists() else []:  # writable again, for the temp cleanup
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert code == 0, err.getvalue()[-3000:]
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning: ")]
    assert (f"warning: could not save the test evaluation to {run / 'eval.json'}: you have no permission to write "
            "in the run folder; the numbers are in this log only") in warnings
    assert any(line.startswith("warning: could not save the training events to ") for line in warnings)
    assert len(warnings) == len(set(warnings))  # each said once
    assert out.getvalue().splitlines()[0] == f"run: {run} · completed (step limit)"


def test_a_process_started_by_torchrun_trains_in_place(tmp_runs, monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    assert started_by_torchrun()
    config = tiny_config()
    config.max_steps = 2
    result = launch(config, 4, runs_dir=tmp_runs)  # nproc_per_node is torchrun's business here
    assert result.state == "completed", result.reason
    assert not dist.is_initialized()  # the worker left the process group behind it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # its stop-on-Ctrl-C handler is gone
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt").training_state["world_size"] == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"nproc_per_node": 0}, "nproc_per_node"),
    ({"nnodes": 2, "node_rank": 2}, "node_rank"),
    ({"resume": True}, "run_dir"),
    ({"nnodes": 2, "master_addr": "no such host"}, "master_addr"),  # unresolvable: at once, not after retries
    ({"nnodes": 2, "master_port": 70000}, "master_port"),
])
def test_launch_settings_are_checked_naming_the_field(tmp_runs, kwargs, field):
    kwargs = {"nproc_per_node": 2, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field}:"):
        launch(tiny_config(), kwargs.pop("nproc_per_node"), runs_dir=tmp_runs, **kwargs)


def test_a_missing_start_checkpoint_is_said_once_before_any_process_starts(tmp_runs):
    config = tiny_config()
    config.init_from = str(tmp_runs / "nope.pt")
    with pytest.raises(ValueError, match=r"^init_from: no such checkpoint: .*nope.pt"):
        launch(config, 2, runs_dir=tmp_runs, nnodes=2, node_rank=0, master_port=free_port())
    assert list(tmp_runs.iterdir()) == []


@pytest.mark.parametrize(("field", "value", "said"), [
    ("width", 8, "width 8, this run builds width 4"),
    ("iterations", (2, 2, 2, 2), "caps 2·2·2·2, this run builds caps 1·2·2·1"),  # not Python's "(2, 2, 2, 2)"
])
def test_a_start_checkpoint_of_another_network_is_said_once_before_any_process_starts(
        tmp_runs, tmp_path, field, value, said):
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    config = tiny_config()
    other = copy.deepcopy(config.model)
    setattr(other, field, value)
    save_checkpoint(tmp_path / "other.pt", build_model(other), classes=[str(i) for i in range(other.num_classes)],
                    mean=[0.5] * other.in_channels, std=[0.25] * other.in_channels)
    config.init_from = str(tmp_path / "other.pt")
    with pytest.raises(ValueError, match=rf"^init_from: .*other.pt holds a network of {said}; "):
        launch(config, 2, runs_dir=tmp_runs, master_port=free_port())
    assert list(tmp_runs.iterdir()) == []


@pytest.mark.parametrize(("field", "value", "said"), [
    ("in_channels", 3, "images of 3 channels and 10 classes, this run's dataset synthetic has 1 channel and 10 classes"),
    ("num_classes", 4, "images of 1 channel and 4 classes, this run's dataset synthetic has 1 channel and 10 classes"),
])
def test_a_start_checkpoint_of_other_channels_or_classes_is_said_once_before_any_process_starts(
        tmp_runs, tmp_path, field, value, said):
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    config = tiny_config()  # synthetic: 1 channel, 10 classes
    other = copy.deepcopy(config.model)
    setattr(other, field, value)
    save_checkpoint(tmp_path / "other.pt", build_model(other), classes=[str(i) for i in range(other.num_classes)],
                    mean=[0.5] * other.in_channels, std=[0.25] * other.in_channels)
    config.init_from = str(tmp_path / "other.pt")
    with pytest.raises(ValueError, match=rf"^init_from: .*other.pt holds a network for {said}; choose a dataset"):
        launch(config, 2, runs_dir=tmp_runs, master_port=free_port())
    assert list(tmp_runs.iterdir()) == []


@needs_two_cores
@pytest.mark.timeout(180)
def test_the_cli_says_a_start_checkpoint_of_other_channels_in_one_line_without_worker_tracebacks(tmp_path):
    """It used to print torch elastic's tracebacks of every worker before the error line."""
    import os
    import subprocess

    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    config = tiny_config()
    other = copy.deepcopy(config.model)
    other.in_channels = 3
    save_checkpoint(tmp_path / "rgb.pt", build_model(other), classes=[str(i) for i in range(other.num_classes)],
                    mean=[0.5] * 3, std=[0.25] * 3)
    runs = tmp_path / "runs"
    command = two_process_training(tmp_path, runs, 'name = "gray"\nmax_steps = 2', train_size=100)
    done = subprocess.run(command + ["--init-from", str(tmp_path / "rgb.pt")], cwd=REPO, capture_output=True,
                          text=True, timeout=170, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        f"error: init_from: {tmp_path / 'rgb.pt'} holds a network for images of 3 channels and 10 classes, this run's "
        "dataset synthetic has 1 channel and 10 classes; choose a dataset of the same channels and class count"]
    assert not runs.exists() or list(runs.iterdir()) == []


def image_folder_run(folder: Path, mode: str, checkpoint_channels: int, checkpoint_classes: int) -> RunConfig:
    """A run on a two-class folder of 8 px ``mode`` PNGs the test writes, starting from a checkpoint of the same
    network for other images (an image folder declares no shape before it is loaded)."""
    from PIL import Image

    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    for index, name in enumerate(("cats", "dogs")):
        (folder / "images" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 200 * index, 90)).convert(mode).save(folder / "images" / name / f"{i}.png")
    config = tiny_config()
    config.data.name, config.data.root, config.data.options = "imagefolder", str(folder / "images"), {}
    config.data.image_size = 8
    other = copy.deepcopy(config.model)
    other.in_channels, other.num_classes, other.image_size = checkpoint_channels, checkpoint_classes, 8
    save_checkpoint(folder / "other.pt", build_model(other), classes=[str(i) for i in range(checkpoint_classes)],
                    mean=[0.5] * checkpoint_channels, std=[0.25] * checkpoint_channels)
    config.init_from = str(folder / "other.pt")
    return config


@pytest.mark.parametrize(("mode", "channels", "classes", "said"), [
    ("L", 1, 3, "images of 1 channel and 3 classes, this run's dataset imagefolder has 2 classes"),
    ("RGB", 1, 2, "images of 1 channel and 2 classes, this run's dataset imagefolder has 3 channels and 2 classes"),
])
def test_an_image_folder_of_other_classes_or_colour_images_is_said_once_before_any_process_starts(
        tmp_runs, tmp_path, mode, channels, classes, said):
    """Its class folders and first image tell; it used to be said by every worker, with tracebacks."""
    config = image_folder_run(tmp_path, mode, channels, classes)
    with pytest.raises(ValueError, match=rf"^init_from: .*other.pt holds a network for {said}; choose a dataset"):
        launch(config, 2, runs_dir=tmp_runs, master_port=free_port())
    assert list(tmp_runs.iterdir()) == []


@needs_two_cores
@pytest.mark.timeout(180)
def test_an_image_folder_mismatch_only_the_workers_can_tell_is_one_line_without_tracebacks(tmp_path, capfd,
                                                                                          monkeypatch):
    """Grey images and a colour checkpoint: one colour image anywhere would make the set colour, so the workers
    load the folder and refuse; torch's launcher used to print each failed worker's traceback. The command runs
    in this process (its spawned workers write to the same captured stderr file descriptor): the CLI's own process
    is tested by the other multi-process CLI tests here."""
    from iamnn_studio.cli import main

    import logging

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the workers' torch reads it, as a command line's would
    # the CLI's note handler, added once per process, is this test's own (on capfd's stderr) and goes with it
    monkeypatch.setattr(logging.getLogger("iamnn_studio"), "handlers", [])
    config = image_folder_run(tmp_path, "L", 3, 2)
    config.save(tmp_path / "run.toml")
    runs = tmp_path / "runs"
    capfd.readouterr()
    code = main(["train", "--config", str(tmp_path / "run.toml"), "--runs-dir", str(runs), "--nproc-per-node", "2",
                 "--master-port", str(free_port())])
    err = capfd.readouterr().err
    assert code == 2, err[-3000:]
    (line,) = err.splitlines()
    assert line.startswith(f"error: init_from: {tmp_path / 'other.pt'} holds an IamNN (caps 1·2·2·1) of width 4 on "
                           "3x8x8 images for 2 classes; this run builds an IamNN (caps 1·2·2·1) of width 4 on "
                           "1x8x8 images for 2 classes"), line
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_multi_node_launch_says_what_it_waits_for(tmp_runs, monkeypatch):
    import iamnn_studio.engine.distributed as distributed

    def no_other_node(*args):
        raise RuntimeError("rendezvous timed out")

    monkeypatch.setattr(distributed, "_elastic_launch", no_other_node)
    events = []
    result = launch(tiny_config(), 1, runs_dir=tmp_runs, nnodes=2, node_rank=1, master_addr="127.0.0.1",
                    master_port=29511, listeners=[events.append])
    assert result.state == "failed" and "rendezvous timed out" in result.reason
    (waiting,) = [e.data["message"] for e in events if e.kind == "log"]
    assert waiting.startswith("node 1 of 2: waiting for the other nodes at 127.0.0.1:29511")


WAITING_NODE = """
import sys, threading
sys.path.insert(0, {tests!r})
import iamnn_studio.engine.distributed as distributed
from test_distributed import tiny_config

def wait_forever(*args):  # the rendezvous: blocked, out of reach of Python's Ctrl-C handler
    threading.Event().wait()

distributed._elastic_launch = wait_forever
def say(event):
    print(event.data.get("message", ""), flush=True)
distributed.launch(tiny_config(), 1, runs_dir={runs!r}, nnodes=2, node_rank=0, master_addr="127.0.0.1",
                   master_port=29512, listeners=[say])
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_waiting_for_other_nodes_quits_at_once_and_leaves_no_empty_run_folder(tmp_runs, sent):
    import subprocess

    script = WAITING_NODE.format(tests=str(Path(__file__).parent), runs=str(tmp_runs))
    node = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert "waiting for the other nodes" in node.stdout.readline()
        assert [p.name for p in tmp_runs.iterdir()] == ["ddp"]  # the folder reserved for the job
        node.send_signal(sent)
        assert node.wait(timeout=30) == 128 + sent  # the signal's usual status: 130 for Ctrl-C, 143 for SIGTERM
    finally:
        node.kill()
    assert list(tmp_runs.iterdir()) == []  # nothing was written to it: gone


NODE_WITH_WORKERS = """
import multiprocessing, os, signal, time
from iamnn_studio.engine.distributed import _interruptible_rendezvous

with _interruptible_rendezvous(2):
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(2,))  # saving its checkpoint
    worker.start()
    os.kill(os.getpid(), signal.{sent})
    worker.join()
print("the launcher waited for its workers", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM"])
def test_ctrl_c_on_a_multi_node_job_that_trains_leaves_its_workers_time_to_save(sent):
    """Review: the rendezvous watcher ended the launcher at once even after its workers had started; as the
    workers end with their launcher (parent-death signal), they were killed before saving their checkpoint.
    Once workers run, the launcher's own handlers stop them and it waits for them."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", NODE_WITH_WORKERS.format(sent=sent)], capture_output=True,
                          text=True, timeout=50, cwd=REPO)
    assert done.returncode == 0 and "the launcher waited for its workers" in done.stdout, done.stderr[-2000:]


@needs_two_cores
@pytest.mark.timeout(180)
def test_ctrl_c_on_a_run_of_several_processes_stops_with_a_checkpoint_exit_130_and_no_launcher_noise(tmp_path):
    """Ctrl-C reaches the whole process group; it used to end with exit 0 after torch's launcher warnings."""
    import os
    import subprocess
    import time

    runs = tmp_path / "runs"
    # 64 images: the first step comes soon after the workers start (2000 took ~10 s to draw and refresh); 5000 epochs
    # of 2 steps keep the run going long after the Ctrl-C
    job = subprocess.Popen(two_process_training(tmp_path, runs, 'name = "long"\nepochs = 5000', train_size=64),
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        metrics = runs / "long" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and '"event": "step"' in metrics.read_text()) and time.monotonic() < deadline:
            assert job.poll() is None, job.communicate()[1][-3000:]
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130, err[-3000:]
    assert f"run: {runs / 'long'} · stopped" in out
    assert "death signal" not in err and "Closing process" not in err, err[-3000:]
    assert load_checkpoint(runs / "long" / "checkpoints" / "last.pt").training_state["step"] > 0


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_a_launcher_stopped_before_the_run_wrote_its_status_reads_stopped_not_failed(tmp_runs, sent):
    """Ctrl-C while the dataset downloads: no status.json yet, and the workers the launcher shut down fail; the
    job used to end "failed" (the CLI: "error: ...", exit 2 instead of the stop's 130)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from iamnn_studio.engine import distributed
    from iamnn_studio.engine.runs import RunDirectory

    reserved = RunDirectory.create(tmp_runs, "ddp").path
    result = distributed._result_after_error(SignalException(f"Process got signal: {sent}", sent), reserved, False)

    assert result.state == "stopped" and result.reason == "stopped"
    assert result.message == distributed.STOPPED_BEFORE_TRAINING
    assert result.run_dir is None and not reserved.exists()  # the empty folder reserved for the job is gone


def test_a_signal_after_the_run_wrote_its_status_is_not_called_a_stop_before_training(tmp_runs):
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from iamnn_studio.engine import distributed
    from iamnn_studio.engine.runs import RunDirectory

    run = RunDirectory.create(tmp_runs, "ddp")
    run.write_status("running", epochs_done=0, total_epochs=2, step=3)
    result = distributed._result_after_error(SignalException("got signal 15", signal.SIGTERM), run.path, False,
                                             message="the download of X was stopped")
    assert result.message != distributed.STOPPED_BEFORE_TRAINING and "download" not in result.message
    assert result.run_dir == run.path  # kept: it holds the run


def test_a_worker_failure_without_a_signal_still_fails_the_job(tmp_runs):
    from iamnn_studio.engine import distributed
    from iamnn_studio.engine.runs import RunDirectory

    reserved = RunDirectory.create(tmp_runs, "ddp").path
    result = distributed._result_after_error(RuntimeError("worker 1 exited with code 1"), reserved, False)
    assert result.state == "failed" and "worker 1 exited" in result.reason


def test_a_second_ctrl_c_that_lands_inside_the_first_ones_handler_is_not_left_waiting():
    """Ctrl-C reaches a worker twice (the terminal's, then the launcher's as it shuts down). In CI the second
    landed while the first handler held a lock and waited on it forever: the launcher killed the worker 30 s later,
    and a stopped download's sentence was never said (exit 130, nothing printed)."""
    import os
    import threading
    import time

    from iamnn_studio.engine import distributed

    held = threading.Lock()  # as inside Event.set() or the trainer's state lock: not re-entrant
    stops = []

    class Trainer:
        def stop(self) -> None:
            assert held.acquire(timeout=2), "the second handler waited on a lock the first one holds"
            try:
                stops.append(len(stops))
                if len(stops) == 1:
                    os.kill(os.getpid(), signal.SIGINT)  # the launcher's Ctrl-C, while this one is handled
                    time.sleep(0.05)  # the handler runs here, inside the first
            finally:
                held.release()

    signalled = threading.Event()
    with distributed._stop_on_signals(Trainer(), signalled):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stops == [0] and signalled.is_set()
        os.kill(os.getpid(), signal.SIGINT)  # a later Ctrl-C, once the first is handled, still stops
        time.sleep(0.05)
    assert stops == [0, 1]


def test_a_ctrl_c_that_reaches_a_worker_before_its_run_handles_it_ends_it_quietly(monkeypatch):
    """A worker still joining the group or building its trainer when Ctrl-C came printed a KeyboardInterrupt
    traceback ("Process SpawnProcess-1: Traceback ...") under the launcher's own line; it now exits with 130."""
    from iamnn_studio.engine import distributed

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "_train_in_this_process", interrupted)
    with pytest.raises(SystemExit) as ended:
        distributed._worker(None, "runs", None, False, True, None)
    assert ended.value.code == 130 and ended.value.__suppress_context__


@pytest.mark.parametrize(("gpus", "device", "limit_words"), [
    (0, "cpu", "(one per core; it has 1 CPU core), got 3"),
    (2, "auto", "(one per GPU; it has 2 visible GPUs), got 3"),
    (2, "cpu", "(one per core; it has 1 CPU core), got 3"),  # CPU workers on a GPU machine: its cores count
])
def test_more_processes_than_the_machine_runs_are_refused_before_any_starts(tmp_runs, monkeypatch, gpus, device,
                                                                           limit_words):
    """``--nproc-per-node 1000`` on a 2-core machine started ~300 MB workers until the memory was gone."""
    import torch

    from iamnn_studio.engine import distributed

    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(distributed, "_elastic_launch", lambda *a, **k: pytest.fail("processes were started"))
    config = tiny_config()
    config.device = device
    with pytest.raises(ValueError) as refused:
        launch(config, 3, runs_dir=tmp_runs)
    assert str(refused.value).startswith("nproc_per_node: this machine runs at most")
    assert str(refused.value).endswith(limit_words)
    assert not tmp_runs.exists() or list(tmp_runs.iterdir()) == []  # no run folder reserved either


def test_workers_the_launcher_lost_track_of_are_ended_with_it(monkeypatch):
    """Torch's launcher shuts down only the workers it recorded; a signal while it was still starting them
    (one by one) left those started so far running, waiting for peers that never came."""
    import multiprocessing
    import time

    from torch.distributed.elastic.multiprocessing.api import SignalException

    from iamnn_studio.engine import distributed

    started = []

    def interrupted_while_starting(launch_config, entrypoint):
        def run(*args):
            worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,))
            worker.start()
            started.append(worker)
            raise SignalException("Process got signal: 15", signal.SIGTERM)
        return run

    monkeypatch.setattr("torch.distributed.launcher.api.elastic_launch", interrupted_while_starting)
    monkeypatch.setattr(distributed, "LEFT_WORKERS_GRACE", 2.0)
    try:
        with pytest.raises(SignalException):
            distributed._elastic_launch(None, tiny_config(), "runs", None, False)
        (worker,) = started
        assert not worker.is_alive() and worker.exitcode is not None
    finally:
        for worker in started:
            worker.kill()


ORPHANED_WORKER = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
from iamnn_studio.engine import distributed

launcher = os.getpid()
worker = os.fork()
if worker == 0:
    try:
        distributed._end_with_launcher(launcher)
    finally:  # alive until killed, whatever happened
        time.sleep(600)
        os._exit(0)
print(worker, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_worker_ends_when_its_launcher_is_killed():
    """A launcher killed outright (SIGKILL, out of memory) runs no shutdown: its workers must not live on."""
    import os
    import subprocess
    import time

    launcher = subprocess.Popen([sys.executable, "-c", ORPHANED_WORKER.format(repo=str(REPO))],
                                stdout=subprocess.PIPE, text=True)
    worker = int(launcher.stdout.readline())
    try:
        time.sleep(0.5)  # the worker has asked the kernel by now
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        launcher.kill()
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, reaped by init soon, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
