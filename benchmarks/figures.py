"""PNG figures of the Table 1 reproduction, drawn with pyqtgraph offscreen.

matplotlib is not a dependency of the project; pyqtgraph (which the app already uses) renders
into an offscreen Qt scene and its ``ImageExporter`` writes the PNG. Where Qt is missing (a GPU
server), ``reproduce.py`` writes the tables alone; draw the figures later on any machine with the
studio installed: ``python benchmarks/reproduce.py --rerender --out FOLDER``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Colours of the app's palette family, readable on white.
ADAPTIVE, FIXED, RESNET, ABLATION, RANDOM = "#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#ff7f0e"
WIDTH, HEIGHT = 900, 560


def _app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["figures"])


def _export(widget, path: Path) -> None:
    import pyqtgraph.exporters

    app = _app()
    widget.show()  # offscreen: lays the items out at the widget's size, so the scene has no margins
    app.processEvents()
    exporter = pyqtgraph.exporters.ImageExporter(widget.scene())
    exporter.parameters()["width"] = WIDTH * 2  # 2x for sharp text in the README
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter.export(str(path))
    widget.close()


def _layout(title: str):
    import pyqtgraph as pg

    _app()
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    layout = pg.GraphicsLayoutWidget()
    layout.resize(WIDTH, HEIGHT)
    layout.addLabel(title, row=0, col=0, colspan=4, size="12pt")
    return layout


def accuracy_vs_macs(path: Path, *, threshold_curve: list[dict], fixed_curve: list[dict],
                     resnet: dict | None, ablation: dict | None, adaptive: dict, random: dict | None,
                     title: str) -> None:
    """Top-1 against mean MACs: the halting-threshold sweep, fixed iteration counts, the ResNet."""
    import pyqtgraph as pg

    layout = _layout(title)
    plot = layout.addPlot(row=1, col=0)
    plot.setLabel("bottom", "mean MACs per image (millions)")
    plot.setLabel("left", "top-1 accuracy (%)")
    plot.showGrid(x=True, y=True, alpha=0.25)
    legend = pg.LegendItem(colCount=2, labelTextSize="10pt")  # below the plot: never hides a point
    layout.addItem(legend, row=2, col=0)

    def xy(points):
        pts = sorted(points, key=lambda p: p["mean_macs"])
        return [p["mean_macs"] / 1e6 for p in pts], [100 * p["top1"] for p in pts]

    x, y = xy(threshold_curve)
    plot.plot(x, y, pen=pg.mkPen(ADAPTIVE, width=2), symbol="o", symbolSize=6, symbolBrush=ADAPTIVE,
              name="IamNN adaptive: halting threshold swept")
    x, y = xy(fixed_curve)
    plot.plot(x, y, pen=pg.mkPen(FIXED, width=2, style=pg.QtCore.Qt.PenStyle.DashLine), symbol="s", symbolSize=6,
              symbolBrush=FIXED, name="IamNN fixed n iterations per block (same weights)")
    plot.plot([adaptive["mean_macs"] / 1e6], [100 * adaptive["top1"]], pen=None, symbol="star", symbolSize=16,
              symbolBrush=ADAPTIVE, name="IamNN at its calibrated threshold")
    if random is not None and random.get("top1") is not None:
        plot.plot([random["mean_macs"] / 1e6], [100 * random["top1"]], pen=None, symbol="x", symbolSize=12,
                  symbolBrush=RANDOM, symbolPen=pg.mkPen(RANDOM, width=2), name="same iterations dealt at random")
    if resnet is not None:
        plot.plot([resnet["mean_macs"] / 1e6], [100 * resnet["top1"]], pen=None, symbol="d", symbolSize=13,
                  symbolBrush=RESNET, name="unshared ResNet, same depth and width")
    if ablation is not None:
        plot.plot([ablation["mean_macs"] / 1e6], [100 * ablation["top1"]], pen=None, symbol="t", symbolSize=12,
                  symbolBrush=ABLATION, name="IamNN trained with 1 iteration per block")
    for item in plot.listDataItems():
        legend.addItem(item, item.name())
    _export(layout, path)


def iterations_histogram(path: Path, histogram: list[list[int]], title: str) -> None:
    """Share of test images per iteration count, one panel per block (the paper's Fig. 2)."""
    import pyqtgraph as pg

    layout = _layout(title)
    total = max(sum(histogram[0]), 1)
    for b, counts in enumerate(histogram):
        plot = layout.addPlot(row=1, col=b)
        plot.setTitle(f"block {b + 1}")
        shares = [100 * c / total for c in counts]
        plot.addItem(pg.BarGraphItem(x=list(range(1, len(counts) + 1)), height=shares, width=0.7, brush=ADAPTIVE))
        plot.setXRange(0.4, len(counts) + 0.6, padding=0)
        plot.setYRange(0, 100, padding=0)
        plot.getAxis("bottom").setTicks([[(n, str(n)) for n in range(1, len(counts) + 1)]])
        plot.setLabel("bottom", "iterations")
        if b == 0:
            plot.setLabel("left", "test images (%)")
    _export(layout, path)


def render_all(out: Path, data: dict[str, Any]) -> list[Path]:
    """Both figures from the data ``reproduce.py`` collects; returns the files written."""
    iamnn = data["iamnn"]
    name = data.get("setting", {}).get("dataset", "fashion-mnist")
    dataset = "Fashion-MNIST" if name == "fashion-mnist" else name
    written = []
    accuracy_path = out / "accuracy_vs_macs.png"
    accuracy_vs_macs(
        accuracy_path,
        threshold_curve=iamnn["sweep"]["threshold"],
        fixed_curve=iamnn["sweep"]["fixed"],
        resnet=data.get("resnet_point"),
        ablation=data.get("ablation_point"),
        adaptive={"mean_macs": iamnn["macs"]["mean"], "top1": iamnn["top1"]},
        random=(iamnn.get("adaptivity") or {}).get("random_allocation"),
        title=f"{dataset} test set: accuracy vs compute ({data['title']})",
    )
    written.append(accuracy_path)
    histogram_path = out / "iterations_histogram.png"
    iterations_histogram(histogram_path, iamnn["iterations"]["histogram"],
                         f"Iterations per block, adaptive IamNN on the 10,000 test images ({data['title']})")
    written.append(histogram_path)
    return written

