"""SIGTERM and Ctrl-C reach a Qt app waiting in its event loop, and end it through the given callback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from iamnn_studio.gui.quit_signals import quit_on_signals  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_calls_quit_from_the_event_loop(qtbot, qapp, sent):
    calls = []
    before = signal.getsignal(sent)
    undo = quit_on_signals(qapp, lambda: calls.append("quit"))
    try:
        os.kill(os.getpid(), sent)  # the process survives: the handler asks the app to quit instead
        qtbot.waitUntil(lambda: calls == ["quit"], timeout=5_000)
    finally:
        undo()
    assert signal.getsignal(sent) is before


TRAINING_APP = """
import sys
sys.argv = ["iamnn-studio"]
from iamnn_studio.gui.app import main
from iamnn_studio.gui import main_window

# start a tiny run as soon as the engine is ready, and say so on stdout
original = main_window.MainWindow._on_engine_ready
def ready(self, info):
    original(self, info)
    form = self.training.form
    values = form.values()
    values["data"].update({{"name": "synthetic", "options": {{"train_size": 4000, "test_size": 100}}}})
    values["model"].update({{"width": 4, "depth": 50}})
    values.update({{"epochs": 50, "name": "sigterm"}})
    form.set_values(values)
    self.training.run_started.connect(lambda *a: print("TRAINING", flush=True))
    from PySide6.QtCore import QTimer
    QTimer.singleShot(3000, self.training.header.start.click)
main_window.MainWindow._on_engine_ready = ready
sys.exit(main(["--runs-dir", {runs!r}]))
"""


@pytest.mark.timeout(240)
def test_sigterm_while_training_stops_the_run_with_a_checkpoint_and_exits(tmp_path):
    import json

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": str(ROOT)}
    script = textwrap.dedent(TRAINING_APP.format(runs=str(tmp_path / "runs")))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        app = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", script], stdout=subprocess.PIPE,
                               stderr=stderr, text=True, env=env, cwd=ROOT)
        try:
            assert app.stdout.readline().strip() == "TRAINING"
            app.send_signal(signal.SIGTERM)
            code = app.wait(timeout=120)
        finally:
            app.kill()
    assert code == 0, log.read_text()[-3000:]  # ended by its own event loop, not killed by the signal
    status = json.loads((tmp_path / "runs" / "sigterm" / "status.json").read_text())
    assert status["state"] == "stopped", status
    assert (tmp_path / "runs" / "sigterm" / "checkpoints" / "last.pt").is_file()
