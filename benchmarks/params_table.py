"""Parameters of IamNN against its unshared ResNet across depths and widths (no training needed).

The paper's "about 10x fewer parameters" is for ResNet-101/152 at the standard width 64: the
deeper the ResNet, the more units one shared module replaces, and the wider the network, the less
the per-iteration batchnorms and halting heads weigh. Table 1 on Fashion-MNIST is trained at depth
50, width 16 (what 2 CPU cores can train in an hour), where sharing cannot reach 0.15. This prints
where it does. Models are built on PyTorch's "meta" device: shapes only, no memory, instant.

    python benchmarks/params_table.py            # Markdown table on stdout
    python benchmarks/params_table.py --json results/params.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json  # noqa: E402 (common puts the checkout on sys.path)

DEPTHS = (50, 101, 152)
WIDTHS = (8, 16, 32, 64)
TARGET = 0.15


def parameter_counts(depth: int, width: int, *, in_channels: int = 1, num_classes: int = 10,
                     image_size: int = 28) -> dict[str, int]:
    """Parameters of IamNN and of its unshared ResNet (same depth, width, input and classes)."""
    from iamnn_studio.engine import ModelConfig
    from iamnn_studio.engine.estimate import count_parameters  # sized on the meta device: no memory

    return {architecture: count_parameters(ModelConfig(depth=depth, width=width, in_channels=in_channels,
                                                       num_classes=num_classes, image_size=image_size,
                                                       architecture=architecture))
            for architecture in ("iamnn", "resnet")}


def table(depths=DEPTHS, widths=WIDTHS) -> list[dict]:
    rows = []
    for depth in depths:
        for width in widths:
            counts = parameter_counts(depth, width)
            rows.append({"depth": depth, "width": width, **counts, "ratio": counts["iamnn"] / counts["resnet"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| ResNet depth | width | IamNN params | ResNet params | ratio (target <= 0.15) |", "|---|---|---|---|---|"]
    for r in rows:
        mark = " (met)" if r["ratio"] <= TARGET else ""
        lines.append(f"| {r['depth']} | {r['width']} | {r['iamnn'] / 1e6:.2f} M | {r['resnet'] / 1e6:.2f} M | "
                     f"{r['ratio']:.3f}{mark} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = table()
    print("Fashion-MNIST input (1x28x28, 10 classes); IamNN = shared blocks + per-iteration batchnorms + halting heads\n")
    print(markdown(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
