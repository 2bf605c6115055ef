"""Start-up: time to the app's first painted window / time of a bare ``python -c "import torch"``.

Both are fresh processes launched from this one with the same interpreter, measured from just
before the launch: the app (``startup_probe.py``, which runs ``python -m iamnn_studio`` as is) until
its main window first paints, offscreen; the bare interpreter until it has imported torch and
exited. Launches alternate, each waits for the previous process to end, medians are compared.
The app shows its window before importing torch (torch loads afterwards, in the background),
so the ratio says how much of torch's import time the user no longer waits for.

Each app launch gets an empty temporary config folder (``XDG_CONFIG_HOME``), so remembered
settings neither help nor hinder, and none are written.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, REPO_ROOT, bench_arguments, finish, hardware, median, verdict  # noqa: E402

TARGET = 0.5
PROBE = BENCH_DIR / "startup_probe.py"


def child_environment(config_home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", OMP_WAIT_POLICY="PASSIVE", XDG_CONFIG_HOME=config_home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def time_app(timeout: float = 120.0) -> float:
    """Seconds from launch to the first paint of the app's main window."""
    with tempfile.TemporaryDirectory(prefix="iamnn-startup-") as config_home:
        start = time.monotonic()  # CLOCK_MONOTONIC: the same clock in the child on Linux
        done = subprocess.run(
            [sys.executable, str(PROBE)], cwd=REPO_ROOT, env=child_environment(config_home),
            capture_output=True, text=True, timeout=timeout,
        )
    for line in done.stdout.splitlines():
        if line.startswith("first-paint "):
            return float(line.split()[1]) - start
    raise RuntimeError(f"the app did not report a first paint (exit {done.returncode}): "
                       f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")


def time_import_torch(timeout: float = 120.0) -> float:
    """Seconds for ``python -c "import torch"`` from launch to exit."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=timeout,
                   env=child_environment(tempfile.gettempdir()))
    return time.monotonic() - start


def measure_startup(*, repeats: int = 5, warm_up: bool = True) -> dict[str, Any]:
    """Alternate app and torch-import launches; ratio of medians."""
    if warm_up:  # fill the file cache for both: the first launch of anything reads from disk
        time_import_torch()
        time_app()
    app_seconds, torch_seconds = [], []
    for round_ in range(repeats):
        order = (time_app, time_import_torch) if round_ % 2 == 0 else (time_import_torch, time_app)
        for fn in order:
            (app_seconds if fn is time_app else torch_seconds).append(fn())
    app, torch = median(app_seconds), median(torch_seconds)
    ratio = app / torch
    return {
        "value": ratio,
        "target": TARGET,
        "verdict": verdict(ratio, TARGET, higher_is_better=False),
        "app_first_paint_s": app,
        "import_torch_s": torch,
        "raw_seconds": {"app": app_seconds, "import_torch": torch_seconds},
        "method": "python benchmarks/startup_probe.py (runs `python -m iamnn_studio` unchanged, reports the main "
                  "window's first paint event, offscreen) vs python -c 'import torch'; alternating launches, medians",
        "setting": {"repeats": repeats, "platform": "offscreen"},
        "hardware": hardware(),
    }


def describe(result: dict[str, Any]) -> list[str]:
    return [
        "start-up",
        f"  first window painted after {result['app_first_paint_s']:.2f} s; `import torch` alone takes "
        f"{result['import_torch_s']:.2f} s (medians of {result['setting']['repeats']})",
        f"  ratio {result['value']:.3f} (target <= {result['target']}: {result['verdict']})",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench_arguments(__doc__.splitlines()[0]).parse_args(argv)
    result = measure_startup(repeats=1 if args.quick else 5)
    finish(result, args.json, describe(result))
    return result


if __name__ == "__main__":
    main()
