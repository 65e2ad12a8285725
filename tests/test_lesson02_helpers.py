"""Lesson 02's Grad-CAM helpers: the grid a map really resolves, true labels in the titles, bad inputs."""
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import to_hex
from torch import nn

from ftlab import plot
from ftlab.errors import UsageError
from ftlab.plot.style import WRONG


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class Strided(nn.Module):
    """Two stride-2 convolutions: a 16 px input gives an 8 x 8 map after ``stem``, 4 x 4 after ``body``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


@pytest.fixture()
def model_and_images():
    torch.manual_seed(0)
    return Strided().eval(), torch.randn(6, 3, 16, 16)


def _titled(fig):
    return [a for a in fig.axes if a.images]


def test_gradcam_reports_the_grid_of_its_layer(model_and_images):
    model, x = model_and_images
    fig = plot.gradcam(model, x, classes=["a", "b", "c"])
    assert fig.grid == (4, 4) and fig.layer == "body.0"              # default: the last Conv2d
    assert fig.maps.shape == (6, 16, 16)                              # upsampled to the image size
    assert "body.0: 4x4 grid" in fig.axes[-1].get_ylabel()           # the colour bar says it
    early = plot.gradcam(model, x, target_layer="stem.0")
    assert early.grid == (8, 8) and early.layer == "stem.0"
    assert plot.gradcam(model, x, target_layer=model.stem[0]).layer == "stem.0"   # a module: its path


def test_gradcam_titles_say_true_and_predicted_class_and_mark_wrong_ones(model_and_images):
    model, x = model_and_images
    with torch.no_grad():
        pred = model(x).argmax(1)
    labels = torch.cat([pred[:3], (pred[3:] + 1) % 3])                # first three right, last three wrong
    fig = plot.gradcam(model, x, classes=["a", "b", "c"], labels=labels)
    titles = _titled(fig)
    assert [a.get_title().split("\n")[0] for a in titles] == [f"true: {'abc'[int(t)]}" for t in labels]
    assert all(f"pred: {'abc'[int(p)]} (" in a.get_title() for a, p in zip(titles, pred))
    colours = [to_hex(a.title.get_color()) for a in titles]
    assert colours == [to_hex("black")] * 3 + [to_hex(WRONG)] * 3
    assert all(a.get_title().startswith("pred: ") for a in _titled(plot.gradcam(model, x)))   # no labels: no "true"


def test_gradcam_explains_one_class_for_all_images(model_and_images):
    model, x = model_and_images
    fig = plot.gradcam(model, x, classes=["a", "b", "c"], targets=2)
    assert fig.axes[-1].get_ylabel().startswith("Grad-CAM for c")      # said once, on the colour bar
    assert not any("CAM for" in a.get_title() for a in _titled(fig))
    torch.testing.assert_close(fig.maps, plot.gradcam_maps(model, x, targets=[2] * 6))
    _, axs = plt.subplots(2, 3)
    into = plot.gradcam(model, x, classes=["a", "b", "c"], targets=2, ax=axs)   # no colour bar: titles say it
    assert all("\nCAM for c" in a.get_title() for a in _titled(into))


def test_gradcam_targets_per_image_match_one_image_at_a_time(model_and_images):
    model, x = model_and_images
    targets = [0, 1, 2, 0, 1, 2]
    maps = plot.gradcam_maps(model, x, targets=targets)
    for i, t in enumerate(targets):
        torch.testing.assert_close(maps[i], plot.gradcam_maps(model, x[i:i + 1], targets=t)[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": [0, 1, 2]}, "labels needs one class index or one per image: got 3 for 6"),
    ({"targets": [0, 1]}, "targets needs one class index or one per image: got 2 for 6"),
    ({"targets": 3}, r"targets must be class indices 0\.\.2"),
    ({"targets": -1}, r"targets must be class indices 0\.\.2"),
])
def test_gradcam_rejects_labels_and_targets_that_do_not_fit(model_and_images, kwargs, message):
    model, x = model_and_images
    with pytest.raises(UsageError, match=message):
        plot.gradcam(model, x, **kwargs)


def test_gradcam_needs_a_batch(model_and_images):
    model, x = model_and_images
    with pytest.raises(UsageError, match=r"batch of images \[N, C, H, W\].*x\[None\]"):
        plot.gradcam_maps(model, x[0])
