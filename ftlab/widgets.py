"""ipywidgets panels for the classroom: explore freezing, redraw augmentations.

Each panel keeps its widget in ``self.widget``, shows itself in Jupyter (``_ipython_display_``),
wires events with ``observe`` / ``on_click``, and leaves the work to plain functions
(:func:`ftlab.train_top`) that tests call without a browser. The slider of the FreezeExplorer counts
"how much trains" the one way ftlab does: the top ``k`` layer groups, the head being one of them.
The TrainPanel, which runs strategies side by side, is a lab panel: ``ft.lab.TrainPanel``.
"""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display
from torch import nn

from . import plot
from .freezing import train_top, trainable_summary
from .groups import layer_groups
from .vision.transforms import AUGMENTATIONS

__all__ = ["FreezeExplorer", "AugmentationExplorer", "show_figure"]



def show_figure(out: W.Output, fig) -> None:
    out.clear_output(wait=True)
    out.append_display_data(fig)
    plt.close(fig)


class FreezeExplorer:
    """A slider for how many layer groups train (from the top, the head counted), and a BatchNorm-policy toggle.

    The trainable summary and the ``plot.trainable`` picture update live; the model really is
    frozen that way afterwards (``explorer.model``).
    """

    def __init__(self, model: nn.Module, trainable_groups: int = 1, bn: str = "frozen"):
        self.model = model
        n = len(layer_groups(model))
        self.slider = W.IntSlider(value=trainable_groups, min=0, max=n, description="groups training (from the top)",
                                  continuous_update=False, style={"description_width": "initial"})
        self.bn = W.ToggleButtons(options=["frozen", "train"], value=bn, description="BatchNorm")
        self.summary = W.HTML()
        self.picture = W.Output()
        for control in (self.slider, self.bn):
            control.observe(self._update, names="value")
        self.widget = W.VBox([W.HBox([self.slider, self.bn]), self.summary, self.picture])
        self._update()

    def _update(self, change=None) -> None:
        train_top(self.model, self.slider.value, self.bn.value)
        s = trainable_summary(self.model)
        self.summary.value = (f"<b>{self.slider.value} of {self.slider.max} layer groups training; trainable: "
                              f"{s.trainable:,} of {s.total:,} parameters ({s.percent:.1f}%)</b>" + s._repr_html_())
        show_figure(self.picture, plot.trainable(self.model))

    def _ipython_display_(self) -> None:
        display(self.widget)


class AugmentationExplorer:
    """A preset dropdown and a re-draw button over a grid of augmented views of one image."""

    def __init__(self, dataset, index: int = 0, size: int | None = None, n: int = 7):
        self.dataset, self.size, self.n = dataset, size, n
        self.preset = W.Dropdown(options=AUGMENTATIONS, value="light", description="preset")
        self.index = W.BoundedIntText(value=index, min=0, max=len(dataset) - 1, description="image")
        self.redraw = W.Button(description="Re-draw", icon="refresh")
        self.grid = W.Output()
        self.preset.observe(self._draw, names="value")
        self.index.observe(self._draw, names="value")
        self.redraw.on_click(self._draw)
        self.widget = W.VBox([W.HBox([self.preset, self.index, self.redraw]), self.grid])
        self.draws = 0
        self._draw()

    def _draw(self, *_) -> None:
        self.draws += 1
        show_figure(self.grid, plot.augmentations(self.dataset, self.index.value, self.preset.value, self.n, size=self.size))

    def _ipython_display_(self) -> None:
        display(self.widget)
