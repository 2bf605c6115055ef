"""GPU (or CPU and RAM) load while training: the engine's ``SystemMonitor`` polled once a second.

NVML and psutil readings take microseconds, so a 1 Hz timer on the UI thread is enough; the
plots show the last two minutes. Without an NVIDIA GPU the panel says so and plots CPU and RAM.
"""
from __future__ import annotations

import time
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .widgets.elided_label import ElidedLabel
from .plots import BufferedCurve, RoomyAxis, add_curve, add_level_line, fit_title, style_plot
from .style import COLORS, SERIES, configure_pyqtgraph, set_role

POLL_MS = 1000
WINDOW_S = 120.0
GB = 1024**3


class SystemPanel(QWidget):
    """Live hardware plots; ``start()`` once the engine is loaded, ``stop()`` when closing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        title = QLabel("System")
        title.setObjectName("CardTitle")
        layout.addWidget(title)
        # one line, shortened with "…" (whole in its tooltip): wrapped in a narrow panel it took the plots' height
        self.message = set_role(ElidedLabel("Waiting for the engine…"), "muted")
        layout.addWidget(self.message)
        self.plots_widget = pg.GraphicsLayoutWidget()
        self.plots_widget.ci.layout.setContentsMargins(2, 2, 2, 2)
        self.plots_widget.ci.layout.setHorizontalSpacing(6)
        layout.addWidget(self.plots_widget, 1)
        self.monitor: Any = None
        self.curves: dict[str, BufferedCurve] = {}
        self._plots: list[pg.PlotItem] = []
        self._totals: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    @property
    def gpu_available(self) -> bool:
        return bool(self.monitor is not None and self.monitor.gpu_available)

    def start(self) -> None:
        if self.monitor is not None:
            return
        try:
            from iamnn_studio.engine.system import SystemMonitor

            self.monitor = SystemMonitor()
        except Exception as error:  # no psutil or a broken NVML: the rest of the app still works
            self.message.setText(f"System statistics are unavailable: {error}")
            return
        self._build_plots()
        self.poll()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        if self.monitor is not None:
            self.monitor.close()

    def _build_plots(self) -> None:
        if self.gpu_available:
            self.message.setText(f"{self.monitor.gpu_message}")
            specs = (("gpu_util", ("GPU (%)", "GPU %")), ("gpu_mem", ("GPU memory (GB)", "Memory (GB)", "GB")),
                     ("gpu_temp", ("Temperature (°C)", "Temp. (°C)", "°C")), ("gpu_power", ("Power (W)", "W")))
        else:
            self.message.setText(self.monitor.gpu_message)  # "No NVIDIA GPU found: showing CPU and RAM"
            specs = (("cpu_util", ("CPU (%)", "CPU %")), ("ram", ("RAM (GB)", "GB")))
        for column, (key, titles) in enumerate(specs):
            # Small plots (a 1024 x 640 window): value labels with room between them, shorter titles where needed.
            plot = self.plots_widget.addPlot(row=0, col=column, axisItems={"left": RoomyAxis("left")},
                                             enableMenu=False)
            plot = style_plot(plot, titles[0])
            fit_title(plot, titles)
            plot.getAxis("bottom").setStyle(showValues=False)
            if key.endswith("util"):
                plot.setYRange(0, 100, padding=0.04)  # a busy 100 % stays visible under the frame
            self.curves[key] = add_curve(plot, SERIES["train"])
            if key in ("gpu_mem", "ram"):
                self._totals[key] = add_level_line(plot, 0, COLORS["text_faint"])
            self._plots.append(plot)

    @Slot()
    def poll(self) -> None:
        if self.monitor is None:
            return
        sample = self.monitor.sample()
        t = time.monotonic() - self._t0
        values = {
            "gpu_util": sample.get("gpu_util"),
            "gpu_mem": _gb(sample.get("gpu_mem_used")),
            "gpu_temp": sample.get("gpu_temp"),
            "gpu_power": sample.get("gpu_power"),
            "cpu_util": sample.get("cpu_util"),
            "ram": _gb(sample.get("ram_used")),
        }
        totals = {"gpu_mem": _gb(sample.get("gpu_mem_total")), "ram": _gb(sample.get("ram_total"))}
        for key, curve in self.curves.items():
            curve.append(t, values[key])
            curve.drop_before(t - WINDOW_S)  # only the visible window is kept: the app may run for days
            curve.flush()
            if key in self._totals and totals[key]:
                self._totals[key].setValue(totals[key])
        for plot in self._plots:
            plot.setXRange(max(0.0, t - WINDOW_S), max(t, 10.0), padding=0)
        for key, total in totals.items():
            if key in self._totals and total:
                plot = self._totals[key].getViewBox()
                if plot is not None:
                    plot.setYRange(0, total * 1.05, padding=0)
        self.message.setText(self._readout(values, totals))

    def _readout(self, values: dict[str, Any], totals: dict[str, Any]) -> str:
        def fmt(value: Any, unit: str, digits: int = 0) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}{unit}"

        if self.gpu_available:
            memory = f"{fmt(values['gpu_mem'], '', 1)} / {fmt(totals['gpu_mem'], ' GB', 0)}"
            return (f"{self.monitor.gpu_message} · {fmt(values['gpu_util'], ' %')} · {memory} · "
                    f"{fmt(values['gpu_temp'], ' °C')} · {fmt(values['gpu_power'], ' W')}")
        # the readings first: in a narrow panel the line is shortened from its end
        return (f"CPU {fmt(values['cpu_util'], ' %')} · RAM {fmt(values['ram'], '', 1)} / "
                f"{fmt(totals['ram'], ' GB', 0)} · {self.monitor.gpu_message}")


def _gb(value: Any) -> float | None:
    return None if value is None else float(value) / GB
