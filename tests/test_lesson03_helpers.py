"""Lesson 03's figure helpers: range tests overlaid (head alone vs after unfreezing), bad inputs."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from ftlab import plot
from ftlab.errors import UsageError
from ftlab.plot.style import PALETTE
from ftlab.recipes import LRFinderResult

HEAD = LRFinderResult([1e-5, 1e-4, 1e-3, 1e-2], [0.50, 0.45, 0.40, 2.0], 1e-4)
TOP3 = LRFinderResult([1e-5, 1e-4, 1e-3], [0.80, 0.60, 0.55], 1e-3)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def dashed_x(ax):
    return [ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--"]


def test_two_results_overlaid_with_their_labels_and_colours():
    ax = plot.lr_find([HEAD, TOP3], labels=["head only", "top 3"]).axes[0]
    curves = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    assert len(curves) == 2
    np.testing.assert_allclose(curves[1].get_xdata(), TOP3.lrs)
    np.testing.assert_allclose(curves[1].get_ydata(), TOP3.losses)
    assert dashed_x(ax) == [1e-4, 1e-3]
    assert [to_hex(ln.get_color()) for ln in curves] == [to_hex(PALETTE[0]), to_hex(PALETTE[1])]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["head only: smoothed loss", "head only: suggestion 1.0e-04",
                     "top 3: smoothed loss", "top 3: suggestion 1.0e-03"]


def test_y_axis_spans_every_curve_and_clips_the_blow_up():
    low, high = plot.lr_find([HEAD, TOP3], labels=["a", "b"]).axes[0].get_ylim()
    assert low < 0.40 and high >= 0.80          # the lowest loss of one curve, the first loss of the other
    assert high < 2.0                           # the blow-up to 2.0 (twice the fall from 0.8 is 0.8) is cut


def test_one_result_is_drawn_as_before():
    ax = plot.lr_find(HEAD).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["smoothed loss", "suggestion 1.0e-04"]
    assert to_hex(ax.lines[1].get_color()) == to_hex(PALETTE[3])


def test_default_labels_for_several_results():
    texts = [t.get_text() for t in plot.lr_find([HEAD, TOP3]).axes[0].get_legend().get_texts()]
    assert texts[0] == "run 1: smoothed loss" and texts[2] == "run 2: smoothed loss"


@pytest.mark.parametrize("result, labels", [([], None), ([HEAD, TOP3], ["only one"]), ([HEAD], "head"),
                                            ([HEAD, "not a result"], None)])
def test_bad_inputs_say_what_to_pass(result, labels):
    with pytest.raises(UsageError, match="lr_find"):
        plot.lr_find(result, labels=labels)
