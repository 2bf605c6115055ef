"""predict's halting text names the iteration whose cumulative score reached the threshold, as the model
compared it (Prediction.reached), and agrees with --json."""
from __future__ import annotations

import contextlib
import io
import json

from PIL import Image

from iamnn_studio import cli
from iamnn_studio.engine.inference import Prediction
from tiny_models import save_varied_checkpoint


def _prediction(**changes) -> Prediction:
    values = dict(source="a.png", top=[("cat", 0.9), ("dog", 0.1)], iterations=[1, 2], caps=[1, 2],
                  halting=[[], [0.69996]], cumulative=[[], [0.69996]], threshold=0.7, macs=10,
                  macs_range=(5, 20), reached=[None, None])
    values.update(changes)
    return Prediction(**values)


def test_a_score_that_prints_as_the_threshold_but_did_not_reach_it_reads_cap():
    text = cli.format_prediction(_prediction())
    assert "    block 2: 0.700->0.700  (cap)\n" in text  # 0.69996 < 0.7 for the model
    assert "reached" not in text


def test_the_iteration_that_reached_the_threshold_is_named():
    text = cli.format_prediction(_prediction(iterations=[1, 1], halting=[[], [0.7]], cumulative=[[], [0.7]],
                                             reached=[None, 1]))
    assert "    block 1: -  (cap)\n" in text  # a cap of 1 runs no halting head
    assert "    block 2: 0.700->0.700  (reached at iteration 1)\n" in text


def _run(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue()


def test_predict_text_and_json_agree_on_where_each_block_halted(tmp_path):
    checkpoint = tmp_path / "model.pt"
    save_varied_checkpoint(checkpoint)
    images = []
    for i, level in enumerate((10, 128, 250)):
        images.append(tmp_path / f"i{i}.png")
        Image.new("L", (16, 16), level).save(images[-1])
    code, text = _run("predict", checkpoint, *images)
    assert code == 0
    code, out = _run("predict", checkpoint, *images, "--json")
    predictions = json.loads(out)["predictions"]
    blocks = [line.strip() for line in text.splitlines() if line.strip().startswith("block ")]
    expected = []
    for p in predictions:
        for b, (at, n, cap) in enumerate(zip(p["reached"], p["iterations"], p["caps"]), 1):
            assert at is None or at == n  # it halted where the threshold was reached
            expected.append(f"(reached at iteration {at})" if at is not None else "(cap)" if n == cap else "")
    assert any("reached" in e for e in expected) and "(cap)" in expected  # the test sees both endings
    assert [b.endswith(e) for b, e in zip(blocks, expected)] == [True] * len(expected)
    assert len(blocks) == len(expected)
