"""The Study tab reads a run's curves once while its metrics.jsonl is unchanged: re-opening a long run
re-parsed the whole file every time (seconds at 200,000 steps)."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest

pytest.importorskip("PySide6")


def _run(tmp_path, steps: int = 8):
    folder = tmp_path / "run"
    folder.mkdir()
    events = [{"event": "started", "steps_per_epoch": 4, "parameters": 123},
              *({"event": "step", "step": s, "loss": 2.0 - 0.1 * s, "accuracy": 0.1 * s} for s in range(1, steps + 1))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


@pytest.fixture
def parses(monkeypatch):
    """How many times the Study tab parsed a metrics file."""
    from iamnn_studio.engine import runs
    from iamnn_studio.gui import analysis_view

    monkeypatch.setattr(analysis_view, "_series_cache", OrderedDict(), raising=False)  # cold, whatever ran before
    calls = []
    original = runs.iter_history

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(runs, "iter_history", counted)
    return calls


def test_reopening_an_unchanged_run_does_not_parse_its_metrics_again(tmp_path, parses):
    from iamnn_studio.gui.analysis_view import read_run

    folder = _run(tmp_path)
    first = read_run(folder)
    second = read_run(folder)
    assert len(parses) == 1
    assert first.parameters == second.parameters == 123
    xs, losses = second.series["train_loss"]
    assert list(xs) == [s / 4 for s in range(1, 9)] and list(first.series["train_loss"][1]) == list(losses)
    losses[:] = 0  # a caller's arrays are its own
    assert read_run(folder).series["train_loss"][1][0] == pytest.approx(1.9)


def test_a_metrics_file_written_since_is_read_afresh(tmp_path, parses):
    from iamnn_studio.gui.analysis_view import read_run

    folder = _run(tmp_path)
    read_run(folder)
    with (folder / "metrics.jsonl").open("a") as fh:  # the run went on
        fh.write(json.dumps({"event": "step", "step": 9, "loss": 0.5, "accuracy": 0.9}) + "\n")
    xs, losses = read_run(folder).series["train_loss"]
    assert len(parses) == 2
    assert xs[-1] == pytest.approx(9 / 4) and losses[-1] == pytest.approx(0.5)


def test_a_run_without_metrics_has_no_curves(tmp_path, parses):
    from iamnn_studio.gui.analysis_view import read_run

    folder = tmp_path / "empty"
    folder.mkdir()
    assert read_run(folder).series == {}
