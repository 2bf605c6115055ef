"""Reproduce the IamNN paper's Table 1 on Fashion-MNIST with the studio's own engine.

Three networks, trained with the same budget (epochs, batch, optimiser, schedule) and seed by
the engine's ``Trainer``, each evaluated by the engine on the 10,000 test images:

* IamNN, adaptive, the default calibrated recipe (anytime backbone + fitted halting heads);
* the unshared ResNet of the same depth and width (``ModelConfig(architecture="resnet")``);
* the 1-iteration ablation (``mode="fixed:1"``: trained and run with one iteration per block).

Writes to ``--out`` (default ``benchmarks/results``): ``table1.md`` (ready to paste),
``table1.json`` (every figure and where it came from), ``accuracy_vs_macs.png`` (threshold sweep
vs fixed iteration counts vs the ResNet) and ``iterations_histogram.png`` (the paper's Fig. 2).
Runs go to ``<out>/runs/`` (not committed). ``--quick`` writes to ``<out>/quick/`` instead, so a
first look never overwrites the full results.

    python benchmarks/reproduce.py --quick          # width 8, 1 epoch: a first look (< 20 min, 2 cores)
    python benchmarks/reproduce.py                  # width 16, depth 50, 12 epochs: the README's table
                                                    # (about an hour on 2 CPU cores)
    python benchmarks/reproduce.py --epochs 30 --device cuda --parallel   # on a GPU, the three at once
    python benchmarks/reproduce.py --rerender --out benchmarks/results    # table and figures from table1.json
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, hardware, write_json  # noqa: E402

#: Paper targets (Table 1 claims) and what we compare them with.
TARGET_PARAMS_RATIO = 0.15
TARGET_MACS_RATIO = 0.5
TARGET_ACCURACY_GAP_PT = 0.5
TARGET_MAX_OVER_MIN = 2.5

NETWORKS = {
    "iamnn": {"label": "IamNN (adaptive, calibrated halting)", "architecture": "iamnn", "mode": "adaptive"},
    "resnet": {"label": "ResNet (unshared, same depth and width)", "architecture": "resnet", "mode": "adaptive"},
    "fixed1": {"label": "IamNN, 1 iteration per block (ablation)", "architecture": "iamnn", "mode": "fixed:1"},
}


#: The full mode's budget: what the README reports, and what 2 CPU cores train in about an hour.
FULL_EPOCHS = 12


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 8, 1 epoch: a first look in < 20 min on 2 cores")
    parser.add_argument("--epochs", type=int, help="training epochs of every network (default 12; quick 1)")
    parser.add_argument("--width", type=int, help="stem width (default 16; quick 8)")
    parser.add_argument("--depth", type=int, default=50, help="ResNet depth = IamNN iteration caps (default 50)")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="any dataset of the studio (default fashion-mnist, the paper comparison's)")
    parser.add_argument("--augment", metavar="STEPS",
                        help="training augmentation of every network, e.g. crop-flip-erase (default: the dataset's own)")
    parser.add_argument("--data-option", metavar="KEY=VALUE", action="append", default=[],
                        help="an option of the dataset, e.g. train_size=200 for a smaller synthetic set (smoke "
                             "tests); repeatable")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-steps", type=int, help="cap the optimiser steps of every run (quick tries)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results, quick: .../quick)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip training a network whose finished run (with eval.json) is already in <out>/runs")
    parser.add_argument("--rerender", action="store_true",
                        help="rebuild <out>/table1.md and the figures from <out>/table1.json (no training)")
    parser.add_argument("--parallel", action="store_true",
                        help="train the three networks at once, each in its own process (a GPU that one small "
                             "network leaves mostly idle)")
    args = parser.parse_args(argv)
    if args.epochs is None:  # None, not 0: "--epochs 0" is refused below, not taken for the default
        args.epochs = 1 if args.quick else FULL_EPOCHS
    if args.width is None:
        args.width = 8 if args.quick else 16
    args.data_options = {}
    for option in args.data_option:
        key, equals, value = option.partition("=")
        if not key or not equals:
            parser.error(f"--data-option: expected KEY=VALUE, got {option!r}")
        args.data_options[key] = _option_value(value)
    args.standard_augment = None
    if not args.rerender:
        try:
            from iamnn_studio.engine.data import default_augment

            args.standard_augment = default_augment(args.dataset)
        except (KeyError, ValueError) as exc:
            parser.error(f"dataset: {exc}")
    args.out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    if not args.rerender:
        try:  # every setting checked by the engine's own rules before an hour of training starts
            for key in NETWORKS:
                run_config(key, args)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def _option_value(text: str) -> Any:
    """A dataset option's value as a settings file would give it: a number where it reads as one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_config(key: str, args: argparse.Namespace):
    from iamnn_studio.engine import DataConfig, ModelConfig, RunConfig

    spec = NETWORKS[key]
    augment = args.augment or args.standard_augment
    # The dataset's usual augmentation keeps the names of earlier runs (--reuse finds them); another is named.
    suffix = "" if augment == args.standard_augment else f"-{augment}"
    # so are runs on a dataset of other options (--reuse must not take a smoke test's run for a full one)
    suffix += "".join(f"-{name}{value}" for name, value in args.data_options.items())
    return RunConfig(
        name=f"table1-{key}-w{args.width}-d{args.depth}-e{args.epochs}-s{args.seed}{suffix}",
        data=DataConfig(name=args.dataset, augment=augment, options=dict(args.data_options)),
        model=ModelConfig(width=args.width, depth=args.depth, architecture=spec["architecture"], mode=spec["mode"]),
        batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps,
        seed=args.seed, device=args.device,
    ).validate()


class Progress:
    """A trainer listener printing one line per epoch and per phase."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, event) -> None:
        d = event.data
        if event.kind == "started":
            print(f"  [{self.key}] {d['total_steps']} step{'' if d['total_steps'] == 1 else 's'} on {d['device']}, {d['parameters']:,} parameters",
                  flush=True)
        elif event.kind == "epoch":
            val = d.get("val_accuracy")
            print(f"  [{self.key}] epoch {d['epoch']}/{d.get('total_epochs')}: train {d['train_accuracy']:.2%}, "
                  f"val {val if val is None else f'{val:.2%}'}, {d['images_per_s']:.0f} img/s", flush=True)
        elif event.kind in ("calibrated", "evaluated", "failed", "finished"):
            detail = {"calibrated": lambda: f"threshold {d.get('threshold')}",
                      "evaluated": lambda: f"top-1 {d.get('top1', float('nan')):.2%}",
                      "failed": lambda: d.get("reason"), "finished": lambda: d.get("reason")}[event.kind]()
            print(f"  [{self.key}] {event.kind}: {detail}", flush=True)


def reusable_run(key: str, args: argparse.Namespace) -> Path | None:
    """The finished run (completed, with eval.json) of network ``key`` in ``<out>/runs`` that ``--reuse``
    takes instead of training, or None: the folder named after the settings (``run_config``)."""
    from iamnn_studio.engine.runs import RunDirectory

    existing = args.out / "runs" / run_config(key, args).name
    if not (existing / "eval.json").exists():
        return None
    status = RunDirectory(existing).read_status() or {}
    return existing if status.get("state") == "completed" else None


def missing_runs(args: argparse.Namespace) -> list[Path]:
    """The run folders that ``--reuse`` looks for and does not find finished."""
    return [args.out / "runs" / run_config(key, args).name for key in NETWORKS if reusable_run(key, args) is None]


def train(key: str, args: argparse.Namespace) -> Path:
    """Train (or, with ``--reuse``, find) one network's run; returns its folder."""
    from iamnn_studio.engine.trainer import Trainer

    config = run_config(key, args)
    runs = args.out / "runs"
    existing = reusable_run(key, args) if args.reuse else None
    if existing is not None:
        print(f"  [{key}] reusing {existing}", flush=True)
        return existing
    if args.reuse:
        print(f"  [{key}] no finished run {runs / config.name} to reuse: training it", flush=True)
    result = Trainer(config, runs_dir=runs, listeners=(Progress(key),)).run()
    if not result.ok or result.run_dir is None:  # None: stopped before its data arrived
        raise SystemExit(f"error: training {key} failed: {result.message or result.reason}")
    return Path(result.run_dir)


def train_all(args: argparse.Namespace) -> dict[str, Path]:
    """Every network's finished run folder: one after the other, or with ``--parallel`` at once."""
    if not args.parallel:
        run_dirs = {}
        for key in NETWORKS:
            print(f"- {NETWORKS[key]['label']}", flush=True)
            run_dirs[key] = train(key, args)
        return run_dirs
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    print("- " + "; ".join(spec["label"] for spec in NETWORKS.values()) + ": at once", flush=True)
    # spawn: a forked child cannot use CUDA once the parent has touched it
    with ProcessPoolExecutor(len(NETWORKS), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(_train_in_child, key, args) for key in NETWORKS}
        outcomes = {key: future.result() for key, future in futures.items()}
    failed = {key: outcome for key, outcome in outcomes.items() if not isinstance(outcome, Path)}
    if failed:
        raise SystemExit("\n".join(failed.values()))
    return outcomes


def _train_in_child(key: str, args: argparse.Namespace) -> Path | str:
    """``train`` in a worker process: the run folder, or why it failed (a sentence, not an exception)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return train(key, args)
    except SystemExit as exc:
        return str(exc.code)
    except Exception as exc:  # noqa: BLE001  (reported by the parent, one line per network)
        return f"error: training {key} failed: {type(exc).__name__}: {exc}"


def load_run(run_dir: Path) -> dict[str, Any]:
    """eval.json, the parameter count and the training time of a finished run."""
    import json

    from iamnn_studio.engine.checkpoint import load_checkpoint
    from iamnn_studio.engine.runs import read_metrics

    evaluation = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    events = read_metrics(run_dir)
    times = [e["time"] for e in events if "time" in e]
    epochs = [e for e in events if e.get("event") == "epoch"]
    # the last one: a threshold may have been re-chosen later from the recorded curve ("rechosen")
    calibrated = next((e for e in reversed(events) if e.get("event") == "calibrated"), None)
    return {
        "run_dir": str(run_dir),
        "eval": evaluation,
        "parameters": sum(p.numel() for p in checkpoint.model.parameters()),
        "model_config": checkpoint.model_config.to_dict(),
        "seconds": (max(times) - min(times)) if times else None,
        "best_val_accuracy": max((e.get("val_accuracy") or 0.0 for e in epochs), default=None),
        "threshold": None if calibrated is None else calibrated.get("threshold"),
        "threshold_note": None if calibrated is None else calibrated.get("rechosen"),
        "train_images_per_s": [e.get("images_per_s") for e in epochs],
    }


# --------------------------------------------------------------------------- comparisons
def compare(runs: dict[str, dict]) -> dict[str, Any]:
    """The ratios and controls Table 1 and adaptivity.md section 6 ask for."""
    from iamnn_studio.engine.tradeoff import halting_tradeoff, interpolate_top1

    iamnn, resnet = runs["iamnn"]["eval"], runs["resnet"]["eval"]
    macs = iamnn["macs"]
    adaptivity = iamnn.get("adaptivity") or {}
    random = adaptivity.get("random_allocation") or {}
    fixed = (iamnn.get("sweep") or {}).get("fixed", [])
    cheaper_fixed = [p for p in fixed if p["mean_macs"] <= macs["mean"] * 1.0001]
    best_fixed = max(cheaper_fixed, key=lambda p: p["top1"]) if cheaper_fixed else None
    fixed_at_equal = interpolate_top1(fixed, macs["mean"])
    result = {
        "params_ratio": runs["iamnn"]["parameters"] / runs["resnet"]["parameters"],
        "macs_ratio": macs["mean"] / resnet["macs"]["mean"],
        "accuracy_gap_pt": 100 * (resnet["top1"] - iamnn["top1"]),
        "max_over_min": macs.get("max_over_min"),
        "p90_over_p10": macs.get("p90_over_p10"),
        "random_allocation_top1": random.get("top1"),
        "adaptive_minus_random_pt": None if random.get("top1") is None else 100 * (iamnn["top1"] - random["top1"]),
        "fixed_top1_at_equal_macs": fixed_at_equal,
        "adaptive_minus_fixed_at_equal_macs_pt": None if fixed_at_equal is None
        else 100 * (iamnn["top1"] - fixed_at_equal),
        "best_fixed_within_macs": best_fixed,
        "adaptive_minus_best_fixed_pt": None if best_fixed is None else 100 * (iamnn["top1"] - best_fixed["top1"]),
        "collapse": adaptivity.get("collapse"),
        "spearman_macs_vs_loss": adaptivity.get("spearman_macs_vs_loss"),
        "macs_wrong_vs_right": [adaptivity.get("macs_wrong"), adaptivity.get("macs_right")],
        "halting_verdict": (halting_tradeoff(iamnn) or {}).get("verdict"),
    }
    result["targets"] = {
        "params_ratio": {"target": f"<= {TARGET_PARAMS_RATIO}", "met": result["params_ratio"] <= TARGET_PARAMS_RATIO},
        "macs_ratio": {"target": f"<= {TARGET_MACS_RATIO}", "met": result["macs_ratio"] <= TARGET_MACS_RATIO},
        "accuracy_gap_pt": {"target": f"<= {TARGET_ACCURACY_GAP_PT}",
                            "met": result["accuracy_gap_pt"] <= TARGET_ACCURACY_GAP_PT},
        "max_over_min": {"target": f">= {TARGET_MAX_OVER_MIN}",
                         "met": (result["max_over_min"] or 0) >= TARGET_MAX_OVER_MIN},
    }
    return result


# --------------------------------------------------------------------------- markdown
def millions(value: float) -> str:
    return f"{value / 1e6:.2f} M" if value < 1e9 else f"{value / 1e9:.2f} G"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def signed_pt(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f} pt"


def _step_cap(setting: dict[str, Any]) -> str:
    """" capped at 30 optimiser steps" when --max-steps cut the epochs short, else ""."""
    cap = setting.get("max_steps")
    return f" capped at {cap:,} optimiser step{'' if cap == 1 else 's'}" if cap else ""


def markdown(data: dict[str, Any]) -> str:
    runs, cmp = data["runs"], data["comparison"]
    setting = data["setting"]
    lines = [
        f"### Table 1 on {_dataset_label(setting.get('dataset', 'fashion-mnist'))} ({data['title']})",
        "",
        "| Network | Params | MACs avg (min–max) | Top-1 / Top-5 |",
        "|---|---|---|---|",
    ]
    for key, spec in NETWORKS.items():
        run = runs[key]
        ev = run["eval"]
        m = ev["macs"]
        spread = millions(m["mean"]) if m["min"] == m["max"] else f"{millions(m['mean'])} ({millions(m['min'])}–{millions(m['max'])})"
        lines.append(f"| {spec['label']} | {run['parameters'] / 1e6:.3f} M | {spread} | "
                     f"{pct(ev['top1'])} / {pct(ev.get('top5'))} |")
    t = cmp["targets"]

    def met(name: str) -> str:
        return "met" if t[name]["met"] else "**missed**"

    best = cmp["best_fixed_within_macs"]
    lines += [
        "",
        "| Claim (paper) | Target | Achieved | |",
        "|---|---|---|---|",
        f"| IamNN params / ResNet params | {t['params_ratio']['target']} | {cmp['params_ratio']:.3f} | {met('params_ratio')} |",
        f"| IamNN mean MACs / ResNet MACs | {t['macs_ratio']['target']} | {cmp['macs_ratio']:.3f} | {met('macs_ratio')} |",
        f"| IamNN top-1 against the ResNet's | at most {TARGET_ACCURACY_GAP_PT} pt behind | "
        f"{_behind(cmp['accuracy_gap_pt'])} | {met('accuracy_gap_pt')} |",
        f"| per-image MACs max / min | {t['max_over_min']['target']} | {cmp['max_over_min']:.2f} (p90/p10 {cmp['p90_over_p10']:.2f}) | {met('max_over_min')} |",
        "",
        f"Is the adaptivity worth anything? (same trained IamNN, same {runs['iamnn']['eval']['images']:,} test images)",
        "",
        "| Control | Top-1 | Adaptive minus control |",
        "|---|---|---|",
        f"| adaptive (calibrated threshold {runs['iamnn'].get('threshold')}{_limit(runs['iamnn']['eval'])}) | "
        f"{pct(runs['iamnn']['eval']['top1'])} | – |",
        f"| same iteration vectors dealt to the images at random | {pct(cmp['random_allocation_top1'])} | {signed_pt(cmp['adaptive_minus_random_pt'])} |",
        f"| fixed iteration counts, interpolated at the adaptive mean MACs | {pct(cmp['fixed_top1_at_equal_macs'])} | {signed_pt(cmp['adaptive_minus_fixed_at_equal_macs_pt'])} |",
        (f"| best fixed setting costing no more ({best['iterations']}, {millions(best['mean_macs'])}) | {pct(best['top1'])} | "
         f"{signed_pt(cmp['adaptive_minus_best_fixed_pt'])} |") if best else "| best fixed setting costing no more | – | – |",
        "",
        *([f"Verdict: {cmp['halting_verdict']}", ""] if cmp.get("halting_verdict") else []),
        f"Setting: width {setting['width']}, depth {setting['depth']} (caps {setting['caps']}), {_plural(setting['epochs'], 'epoch')}"
        f"{_step_cap(setting)}, "
        f"batch {setting['batch_size']}, SGD one-cycle lr {setting['lr']}, seed {setting['seed']}, "
        f"augment {setting.get('augment', 'crop-flip')}, "
        f"{setting['train_images']:,} training / {setting['val_images']:,} held-out images, evaluated on the "
        f"{runs['iamnn']['eval']['images']:,} test images. Hardware: {data['hardware']['cpu']}, "
        f"{data['hardware']['cores']} cores, GPU {data['hardware'].get('gpu') or 'none'}; training, calibration and "
        f"evaluation of the three took {_duration(data)}.",
        "",
        "Notes:",
        f"- Params ratio: the paper's 0.15 is for ResNet-152, whose 50 residual units IamNN replaces with 4 shared "
        f"blocks. At depth {setting['depth']} the ResNet has only {sum(setting['caps'])} units, so sharing can save at "
        f"most a factor of about {sum(setting['caps'])}/4 on the block weights, and IamNN's per-iteration batchnorms, "
        f"exit batchnorms and halting heads are extra (relatively more at small widths): {cmp['params_ratio']:.2f} is "
        f"what sharing gives at this depth and width.",
        f"- Spearman correlation of per-image MACs with the full-depth loss: {_fmt(cmp['spearman_macs_vs_loss'], '.3f')}; "
        f"mean MACs of misclassified vs correct images: {_fmt_macs(cmp['macs_wrong_vs_right'])}.",
    ]
    collapse = cmp.get("collapse") or {}
    if collapse.get("alarm"):
        lines.append(f"- Collapse alarm: {'; '.join(collapse.get('reasons', []))}.")
    if runs["iamnn"].get("threshold_note"):
        lines.append(f"- Threshold {runs['iamnn']['threshold']}: {runs['iamnn']['threshold_note']}.")
    lines += [f"- {note}" for note in data.get("notes", [])]
    return "\n".join(lines) + "\n"


def _limit(evaluation: dict[str, Any]) -> str:
    """", at most 3-3-3-3 iterations" where calibration limited the halting below the caps."""
    limits = evaluation.get("halting_caps")
    if not limits or list(limits) == list(evaluation.get("caps") or []):
        return ""
    return f", at most {'-'.join(map(str, limits))} iterations"


def _dataset_label(name: str) -> str:
    return {"fashion-mnist": "Fashion-MNIST"}.get(name, name)


def _duration(data: dict[str, Any]) -> str:
    if data.get("runs_wall_seconds"):  # trained at once: the longest is the wall time
        return (f"{data['runs_wall_seconds'] / 60:.0f} min, trained at once in three processes "
                f"({data['runs_seconds'] / 60:.0f} min added up)")
    return f"{data['runs_seconds'] / 60:.0f} min"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _fmt_macs(pair: list[float | None]) -> str:
    return " vs ".join("–" if v is None else millions(v) for v in pair)


# --------------------------------------------------------------------------- main
def _behind(gap_pt: float) -> str:
    """ResNet top-1 minus IamNN's, in words: "0.91 pt behind", "0.42 pt ahead" (a bare sign was read both ways)."""
    if abs(gap_pt) < 0.005:
        return "level"
    return f"{abs(gap_pt):.2f} pt {'behind' if gap_pt > 0 else 'ahead'}"


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse_args(argv)
    if args.rerender:
        return rerender(args.out)
    started = time.monotonic()
    title = (f"{'quick: ' if args.quick else ''}width {args.width}, depth {args.depth}, "
             f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
             f"{f', at most {args.max_steps:,} step' + ('' if args.max_steps == 1 else 's') if args.max_steps else ''}")
    if args.reuse:
        missing = missing_runs(args)
        if len(missing) == len(NETWORKS):  # nothing to reuse: do not start hours of training unasked
            print(f"error: --reuse: no earlier runs to reuse; missing (each a completed run with eval.json): "
                  f"{', '.join(str(path) for path in missing)}; check that --out (or --quick), --width, --depth, "
                  "--epochs, --seed and --augment are those of the earlier runs, or drop --reuse to train them",
                  file=sys.stderr, flush=True)
            return 2
    print(f"Table 1 reproduction ({title}) -> {args.out}", flush=True)
    run_dirs = train_all(args)
    runs = {key: load_run(path) for key, path in run_dirs.items()}

    from iamnn_studio.engine import DEPTH_ITERATIONS
    from iamnn_studio.engine.config import DataConfig
    from iamnn_studio.engine.data import load_dataset

    bundle = load_dataset(DataConfig(name=args.dataset, options=dict(args.data_options)), seed=args.seed)
    data: dict[str, Any] = {
        "title": title,
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "setting": {"dataset": args.dataset, "width": args.width, "depth": args.depth, "caps": list(DEPTH_ITERATIONS[args.depth]),
                    "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                    "augment": args.augment or args.standard_augment,
                    "max_steps": args.max_steps, "device": args.device, "quick": args.quick,
                    "parallel": args.parallel, "data_options": args.data_options,
                    "train_images": len(bundle.train), "val_images": len(bundle.val)},
        "runs": runs,
        "comparison": compare(runs),
        "hardware": hardware(),
        "total_seconds": time.monotonic() - started,  # this invocation (small with --reuse)
        "runs_seconds": sum(run["seconds"] or 0.0 for run in runs.values()),
        "runs_wall_seconds": max(run["seconds"] or 0.0 for run in runs.values()) if args.parallel else None,
        "notes": [],
    }
    if args.quick:
        data["notes"].append("Quick mode: a first look, far from converged; the full run "
                             "(`python benchmarks/reproduce.py`) is what the README reports.")
    publish(args.out, data)
    return 0


def publish(out: Path, data: dict[str, Any]) -> None:
    """Write table1.md, table1.json and (where Qt is installed) the two figures into ``out``."""
    from figures import render_all

    runs = data["runs"]
    points = {"iamnn": runs["iamnn"]["eval"],
              "resnet_point": {"mean_macs": runs["resnet"]["eval"]["macs"]["mean"], "top1": runs["resnet"]["eval"]["top1"]},
              "ablation_point": {"mean_macs": runs["fixed1"]["eval"]["macs"]["mean"], "top1": runs["fixed1"]["eval"]["top1"]}}
    data.update({k: v for k, v in points.items() if k != "iamnn"})
    out.mkdir(parents=True, exist_ok=True)
    try:
        figures = render_all(out, {**data, **points})
    except ImportError as exc:  # a GPU server without Qt: the tables still count
        figures = []
        print(f"note: no figures ({exc}); draw them later where Qt is installed with "
              f"`{shlex.join(['python', 'benchmarks/reproduce.py', '--rerender', '--out', str(out)])}`", flush=True)
    text = markdown(data)
    (out / "table1.md").write_text(text, encoding="utf-8")
    write_json(out / "table1.json", data)
    print("\n" + text, flush=True)
    print("wrote " + ", ".join(str(p) for p in [out / "table1.md", out / "table1.json", *figures]))


def rerender(out: Path) -> int:
    """Rebuild ``out``'s table and figures from its table1.json, the comparison recomputed (no training)."""
    import json

    try:
        data = json.loads((out / "table1.json").read_text(encoding="utf-8"))
        data["comparison"] = compare(data["runs"])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: cannot re-render {out / 'table1.json'}: {exc}") from None
    publish(out, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
