"""The confusion matrix as a colour image: rows = true class, columns = predicted class."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF

from . import theme

#: Cells are annotated with their counts up to this many classes (beyond, text would not fit).
ANNOTATE_UP_TO = 12


class ConfusionMatrix(pg.PlotWidget):
    """Row-normalised colours (the share of each true class), counts written in the cells.

    The y axis names the true classes ("3 Dress"); the x axis numbers the predicted ones with
    the same numbers, which keeps ten names readable in a square chart.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, background=theme.PLOT_BACKGROUND, enableMenu=False)
        self.setMouseEnabled(False, False)
        plot = self.getPlotItem()
        theme.style_plot(plot, left="true class", bottom="predicted class")
        plot.invertY(True)
        plot.setAspectLocked(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get(theme.COLORMAP))
        plot.addItem(self.image)
        self.cell_labels: list[pg.TextItem] = []
        self.matrix = np.zeros((0, 0))
        self.classes: list[str] = []
        self.scene().sigMouseMoved.connect(self._hover)

    def set_matrix(self, confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> None:
        matrix = np.asarray(confusion, dtype=np.float64)
        self.matrix, self.classes = matrix, list(classes)
        k = len(matrix)
        totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        self.image.setImage(shares, levels=(0.0, 1.0))
        self.image.setRect(-0.5, -0.5, k, k)
        plot = self.getPlotItem()
        plot.getAxis("left").setTicks([[(i, f"{name}  {i}") for i, name in enumerate(self.classes)]])
        plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(k)]])
        plot.setXRange(-0.5, k - 0.5, padding=0)
        plot.setYRange(-0.5, k - 0.5, padding=0)
        for label in self.cell_labels:
            plot.removeItem(label)
        self.cell_labels = []
        if k <= ANNOTATE_UP_TO:
            for row in range(k):
                for column in range(k):
                    count = int(matrix[row, column])
                    if count == 0:
                        continue
                    bright = shares[row, column] > 0.55  # viridis turns yellow: dark text reads better
                    label = pg.TextItem(str(count), color="#1f2328" if bright else "#ffffff", anchor=(0.5, 0.5))
                    label.setPos(column, row)
                    plot.addItem(label)
                    self.cell_labels.append(label)

    def _hover(self, position: QPointF) -> None:
        if not self.classes:
            return
        point = self.getPlotItem().vb.mapSceneToView(position)
        row, column = int(round(point.y())), int(round(point.x()))
        k = len(self.classes)
        if 0 <= row < k and 0 <= column < k:
            count = int(self.matrix[row, column])
            total = int(self.matrix[row].sum())
            share = f" ({100 * count / total:.1f} % of {self.classes[row]})" if total else ""
            self.setToolTip(f"true {self.classes[row]} → predicted {self.classes[column]}: {count}{share}")
        else:
            self.setToolTip("")
