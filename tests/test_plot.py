"""ftlab.plot: what each figure shows (lines, marks, labels, images), not only that it runs."""
import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from sklearn.decomposition import PCA
from tiny import Tiny, tiny_loaders

import ftlab as ft
from ftlab import plot
from ftlab.plot import style
from ftlab.recipes import LRFinderResult


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def run(elpv2):
    """A real two-stage fine-tune on a tiny subset: (model, loaders, history with an unfreeze mark)."""
    model = ft.vision.pretrained(num_classes=2)
    L = ft.vision.loaders(elpv2, model, image_size=64, subset=8, eval_subset=4, batch_size=8)
    h = ft.fine_tune(model, L, head_epochs=1, epochs=1, progress=False, seed=0)
    return model, L, h


def titles(fig):
    return [a.get_title() for a in fig.axes if a.get_title()]


def vlines(ax):
    """x positions of the axvlines (lines whose two x values are equal and span the axes)."""
    return [ln.get_xdata()[0] for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]


def test_history_single_run_marks_unfreeze_best_epoch_and_gap(run):
    _, _, h = run
    assert h.unfreeze_epochs() == [1] and h.best_epoch is not None
    fig = plot.history(h)
    loss_ax, acc_ax = fig.axes
    assert [loss_ax.get_title(), acc_ax.get_title()] == ["Loss per epoch", "Accuracy per epoch"]
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("epoch", "loss", "accuracy")
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        styles = {ln.get_linestyle(): ln for ln in ax.lines if len(ln.get_xdata()) == len(h)}
        np.testing.assert_allclose(styles["-"].get_ydata(), h[f"train_{key}"])
        np.testing.assert_allclose(styles["--"].get_ydata(), h[f"val_{key}"])
        assert list(styles["-"].get_xdata()) == [1, 2]                  # 1-based epochs
        assert vlines(ax) == [1.5]                                      # just before epoch 2 (index 1)
        star = next(ln for ln in ax.lines if ln.get_marker() == "*")
        assert star.get_xdata()[0] == h.kept_epoch + 1 and star.get_ydata()[0] == h.kept[f"val_{key}"]
    assert len(loss_ax.collections) == 1 and len(acc_ax.collections) == 0   # the train/val gap band
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["train", "validation", "gap (train vs val)", "weights kept", "trainable set changed"]


def test_history_overlays_runs_with_one_colour_each(run):
    _, _, h = run
    h2 = ft.fit(Tiny(), tiny_loaders(n=32), epochs=3, progress=False, seed=0)
    fig, axs = plt.subplots(1, 2)
    assert plot.history([h, h2], labels=["lite0", "tiny"], ax=axs) is fig
    for ax in axs:
        curves = [ln for ln in ax.lines if ln.get_marker() == "o"]
        assert [(to_hex(ln.get_color()), ln.get_linestyle(), len(ln.get_xdata())) for ln in curves] == [
            (style.PALETTE[0], "-", 2), (style.PALETTE[0], "--", 2), (style.PALETTE[1], "-", 3), (style.PALETTE[1], "--", 3)]
        assert vlines(ax) == [1.5] and len(ax.collections) == 0          # no gap band when overlaid
    assert [t.get_text() for t in axs[0].get_legend().get_texts()][:2] == ["lite0: train", "lite0: validation"]
    with pytest.raises(ft.FtlabError, match="2 axes"):
        plot.history(h, ax=axs[0])


def test_confusion_matrix_from_predictions():
    targets, preds, classes = [0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 1, 0], ["cat", "dog", "eel"]
    fig = plot.confusion_matrix(preds, targets, classes)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat\nrecall 67%", "dog\nrecall 100%", "eel\nrecall 0%"]
    cells = [t.get_text() for t in ax.texts]
    assert cells[:3] == ["2\n67%", "1\n33%", "0\n0%"] and cells[6] == "1\n100%"
    np.testing.assert_allclose(ax.images[0].get_array(), [[2 / 3, 1 / 3, 0], [0, 1, 0], [1, 0, 0]])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class") and "accuracy 66.7%" in ax.get_title()
    report = plot.classification_report(preds, targets, classes)
    assert fig.classification_report == report and all(c in report for c in classes)
    counts = plot.confusion_matrix(preds, targets, classes, normalize=False).axes[0].images[0].get_array()
    assert counts.sum() == 6


def test_confusion_matrix_from_model_and_loader(run):
    model, L, _ = run
    fig = plot.confusion_matrix(model=model, loader=L.test)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["functional", "defective"]
    p = ft.predict(model, L.test)
    assert sum(int(t.get_text().split("\n")[0]) for t in ax.texts) == len(L.test.dataset) == 8
    assert fig.classification_report == plot.classification_report(p.preds, p.targets, L.classes)


def test_show_batch_denormalises_and_marks_wrong_predictions(run):
    _, L, _ = run
    ds = L.val.dataset
    preds = 1 - ds.targets[:6]
    preds[:3] = ds.targets[:3]                  # 3 right, 3 wrong
    fig = plot.show_batch(L.val, n=6, preds=preds)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 6
    for i, a in enumerate(shown):
        true, pred = ds.classes[int(ds.targets[i])], ds.classes[int(preds[i])]
        assert a.get_title() == f"{true}\npred: {pred}"
        assert to_hex(a.title.get_color()) == (style.WRONG if i >= 3 else "#000000")
        img = ds.images[i, 0].float() / 255    # grayscale cell: Normalize(0.5, 0.5) undone exactly
        np.testing.assert_allclose(a.images[0].get_array()[..., 0], img.numpy(), atol=1e-6)
    assert [a.get_title() for a in plot.show_batch(ds, n=2).axes if a.images] == [
        ds.classes[int(t)] for t in ds.targets[:2]]


def test_augmentations_first_panel_is_the_original_and_draws_are_seeded(elpv2):
    ds = elpv2.train
    state = torch.get_rng_state()
    fig = plot.augmentations(ds, index=1, preset="light", n=5, size=48)
    assert torch.equal(torch.get_rng_state(), state)                   # global RNG untouched
    axs = [a for a in fig.axes if a.images]
    assert len(axs) == 6 and axs[0].get_title().startswith("original") and axs[1].get_title() == "light #1"
    arrays = [a.images[0].get_array() for a in axs]
    assert arrays[0].shape == (48, 48)
    again = [a.images[0].get_array() for a in plot.augmentations(ds, index=1, n=5, size=48).axes if a.images]
    assert all(np.array_equal(x, y) for x, y in zip(arrays, again))
    assert any(not np.array_equal(arrays[0], x) for x in arrays[1:])
    none = [a.images[0].get_array() for a in plot.augmentations(ds, index=1, preset="none", n=2).axes if a.images]
    assert all(np.array_equal(none[0], x) for x in none) and none[0].shape == (300, 300)
    np.testing.assert_allclose(none[0], ds.images[1, 0].numpy() / 255, atol=1e-6)


def test_top_losses_are_the_highest_cross_entropies(run):
    model, L, _ = run
    p = ft.predict(model, L.val)
    expected = F.cross_entropy(p.logits, p.targets, reduction="none").sort(descending=True).values[:3]
    fig = plot.top_losses(model, L.val, k=3)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 3
    losses = [float(a.get_title().rsplit("loss ", 1)[1]) for a in shown]
    np.testing.assert_allclose(losses, expected.numpy(), atol=0.006)
    assert all(a.get_title().startswith("true: ") and "\npred: " in a.get_title() for a in shown)
    with pytest.raises(ft.FtlabError, match="unshuffled"):
        plot.top_losses(model, L.train)


def test_trainable_bars_per_layer_group():
    model = Tiny()
    ft.freeze_to(model, -1)
    model.body[0].weight.requires_grad_(True)           # body partly trainable
    rows = ft.trainable_summary(model).rows
    ax = plot.trainable(model).axes[0]
    bars = ax.containers[0]
    assert len(bars) == len(rows) == 3
    assert [b.get_width() for b in bars] == [r["params"] for r in rows]
    assert [to_hex(b.get_facecolor()) for b in bars] == [style.FROZEN, style.PALETTE[1], style.PALETTE[0]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["stem", "body", "head"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "parameters (log scale)"
    assert "BN frozen" in ax.texts[0].get_text() and "trainable)" in ax.texts[1].get_text()
    s = ft.trainable_summary(model)
    assert ax.get_title() == f"Trainable: {s.trainable:,} of {s.total:,} parameters ({s.percent:.1f}%)"


def test_compare_two_panels_with_named_points():
    results = [{"name": "head", "acc": 0.7, "trainable": 2_000, "seconds": 10},
               {"name": "full", "acc": 0.8, "trainable": 3_000_000, "seconds": 90}]
    fig = plot.compare(results)
    a, b = fig.axes
    assert a.get_xscale() == "log" and b.get_xscale() == "linear"
    assert (a.get_xlabel(), b.get_xlabel(), a.get_ylabel()) == (
        "trainable parameters (log scale)", "training time (s)", "test accuracy")
    assert [t.get_text() for t in a.texts] == [t.get_text() for t in b.texts] == ["head", "full"]
    assert [ln.get_xdata()[0] for ln in b.lines] == [10, 90]


def test_lr_find_curve_and_suggestion():
    torch.manual_seed(0)
    result = ft.lr_find(Tiny(), tiny_loaders(), steps=12, end_lr=10.0)
    ax = plot.lr_find(result).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), result.lrs)
    assert vlines(ax) == [result.suggestion] and ax.get_xscale() == "log"
    assert f"{result.suggestion:.1e}" in ax.get_legend().get_texts()[1].get_text()
    fake = LRFinderResult([1e-5, 1e-4, 1e-3], [1.0, 0.5, 3.0], 1e-4)
    assert vlines(plot.lr_find(fake).axes[0]) == [1e-4]


def test_embedding_pca_and_tsne_side_by_side():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(30) % 3
    x = torch.randn(30, 16, generator=g) + 4 * F.one_hot(y, 16).float()
    fig, axs = plt.subplots(1, 2)
    assert plot.embedding(x, y, ["a", "b", "c"], ax=axs[0]) is fig
    plot.embedding(ft.Features(x, y, 1, "k"), classes=["a", "b", "c"], method="tsne", ax=axs[1], title="t-SNE")
    assert [len(a.collections) for a in axs] == [3, 3]
    assert [t.get_text() for t in axs[0].get_legend().get_texts()] == ["a", "b", "c"]
    assert axs[0].get_xlabel() == "PC1" and axs[1].get_title() == "t-SNE"
    np.testing.assert_allclose(plot.embedding(x, y).points, PCA(2, random_state=0).fit_transform(x.numpy()),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ft.FtlabError):
        plot.embedding(x, y, method="umap")


def reference_gradcam(model, x, cls):
    """Plain-PyTorch Grad-CAM on Tiny's last conv (body[0]) with everything trainable."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    a = model.body[0](model.stem(x))
    a.retain_grad()
    model.head(model.body[1:](a)).gather(1, cls.view(-1, 1)).sum().backward()
    cam = F.relu((a.grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
    return ((cam - lo) / (hi - lo).clamp_min(1e-12)).detach()


def test_gradcam_maps_match_reference_on_a_frozen_model_and_restore_state():
    torch.manual_seed(0)
    model = Tiny()
    ft.fit(model, tiny_loaders(), epochs=1, progress=False, seed=0)
    x = next(iter(tiny_loaders()[1]))[0][:5]
    ft.freeze_to(model, -1)
    ft.train_mode(model)                                   # train mode, frozen BN in eval
    model.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    with torch.no_grad():                                   # works even inside no_grad
        maps = plot.gradcam_maps(model, x)
    assert maps.shape == (5, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    cls = copy.deepcopy(model).eval()(x).argmax(1)
    torch.testing.assert_close(maps, reference_gradcam(model, x, cls), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plot.gradcam_maps(model, x, targets=1),
                               reference_gradcam(model, x, torch.ones(5, dtype=torch.long)), atol=1e-5, rtol=1e-4)
    assert torch.equal(plot.gradcam_maps(model, x, target_layer=model.body[0]), maps)   # default: last Conv2d
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_on_a_fully_frozen_pretrained_model(run):
    model = copy.deepcopy(run[0])
    ft.freeze(model)
    x = next(iter(run[1].test))[0][:4]                      # a preprocessed batch from a loader
    maps = plot.gradcam_maps(model, x)
    assert maps.shape == (4, 64, 64) == x[:, 0].shape and maps.min() >= 0 and maps.max() <= 1
    assert torch.equal(plot.gradcam_maps(model, x, target_layer="conv_head"), maps)     # the table's layer
    fig = plot.gradcam(model, x, classes=run[1].classes)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 4 and all(len(a.images) == 2 for a in shown)        # image + heat map
    assert torch.equal(fig.maps, maps) and all(a.get_title().split(" (")[0] in (
        "pred: functional", "pred: defective") for a in shown)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert plot.gradcam is plot.images.gradcam              # ft.plot reaches every figure module's figures


def test_sweep_figures_per_augmentation(tmp_path):
    from ftlab.lab.sweep import save_sweep_figures
    from ftlab.plot.results import augmentation_effect as augmentation

    rows = [{"strategy": st, "augment": aug, "train_images": n, "seed": seed, "status": "ok",
             "test_acc": 0.7 + 0.01 * seed + (0.05 if aug != "none" else 0) + n / 1e5}
            for st in ("head", "full") for aug in ("none", "light") for n in (100, 1000) for seed in (0, 1, 2)]
    rows.append({"strategy": "head", "augment": "none", "train_images": 100, "seed": 9, "status": "failed: X"})
    fig = augmentation(rows)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 4 and abs(max(b.get_height() for b in bars) - (0.75 + 0.01 + 0.01)) < 1e-9
    names = sorted(p.name for p in save_sweep_figures(rows, tmp_path))
    assert names == ["augmentation.png", "scaling-light.png", "scaling-none.png"]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)
    assert save_sweep_figures([], tmp_path) == []


def test_augmentation_figure_picks_the_size_with_several_augmentations():
    from ftlab.plot.results import augmentation_effect as augmentation

    rows = [{"strategy": "head", "augment": aug, "train_images": 100, "seed": 0, "test_acc": 0.7} for aug in ("none", "light")]
    rows.append({"strategy": "head", "augment": "none", "train_images": 1000, "seed": 0, "test_acc": 0.8})
    fig = augmentation(rows)
    assert "100 training images" in fig.axes[0].get_title() and len(fig.axes[0].patches) == 2


def test_text_figures():
    a = ft.text.Attribution("a great film", ["[CLS]", "a", "great", "fil", "##m", "[SEP]"],
                            torch.tensor([0.1, 0.0, 0.8, -0.2, -0.1, 0.0]), 1, 0.9, "occlusion")
    fig = ft.plot.token_attributions([a, a], classes=["rotten", "fresh"])
    words = [t.get_text() for t in fig.axes[0].texts]
    assert "film" in words and "fil" not in words and "[CLS]" not in words       # pieces joined, specials hidden
    assert any("predicted fresh (90%)" in w for w in words)
    fig = ft.plot.similarity(torch.eye(3), ["a", "b", "c"])
    assert len(fig.axes) == 2                                                     # the map and its colour bar
    with pytest.raises(ft.UsageError, match="needs 2 labels"):
        ft.plot.similarity(torch.eye(2), ["a", "b", "c"])


def test_history_stars_the_kept_weights_and_circles_a_best_epoch_that_was_not_kept():
    rows = [{"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": v, "train_acc": 0.5, "val_acc": a, "seconds": 1.0}
            for e, (v, a) in enumerate([(0.9, 0.6), (0.5, 0.8), (0.7, 0.7)])]
    fig = plot.history(ft.History(rows, best_epoch=1, kept_epoch=2))
    loss_ax = fig.axes[0]
    star = next(ln for ln in loss_ax.lines if ln.get_marker() == "*")
    ring = next(ln for ln in loss_ax.lines if ln.get_marker() == "o" and len(ln.get_xdata()) == 1)
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (3, 0.7) and (ring.get_xdata()[0], ring.get_ydata()[0]) == (2, 0.5)
    assert [t.get_text() for t in fig.legends[0].get_texts()][-2:] == ["weights kept", "best epoch (not kept)"]


def test_intervals_draw_each_estimate_with_its_interval_and_colour_only_the_clear_ones():
    a = torch.tensor([1.0] * 90 + [0.0] * 10)
    b = torch.tensor([1.0] * 60 + [0.0] * 40)
    clear, tie = ft.lab.paired(a, b), ft.lab.paired(b, b.flip(0))
    fig = plot.intervals({"a - b": clear, "b - b flipped": tie})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a - b", "b - b flipped"]
    assert vlines(ax) == [0.0]
    spans = [ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] != ln.get_xdata()[1]]
    assert [tuple(ln.get_xdata()) for ln in spans] == [(100 * clear.low, 100 * clear.high), (100 * tie.low, 100 * tie.high)]
    assert [to_hex(ln.get_color()) for ln in spans] == [style.PALETTE[0], "#777777"]   # only the first clears 0
    assert "points" in ax.get_xlabel()
    with pytest.raises(ft.UsageError, match="value, low and high"):
        plot.intervals({"x": 0.5})


def test_tradeoff_draws_points_of_one_cost_apart_and_scaling_names_its_lines():
    fig = plot.tradeoff({"a probe": (100.0, [0.7, 0.8]), "a partial": (100.0, [0.75, 0.85]), "b": (50.0, [0.6])})
    ax = fig.axes[0]
    xs = [c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)]   # each label's seeds
    assert xs[0][0] == 100.0 and xs[1][0] == pytest.approx(104.0) and xs[2][0] == 50.0
    assert "1 std over seeds" in ax.get_title()
    rows = [{"strategy": s, "train_images": n, "seed": k, "test_acc": 0.6 + n / 1000 + k / 100}
            for s in ("lite0 64 px", "lite0 128 px") for n in (40, 300) for k in range(2)]
    ax = plot.scaling(rows, legend="model, input", unit="training cells", baseline=0.688).axes[0]
    assert ax.get_legend().get_title().get_text() == "model, input" and ax.get_xlabel() == "training cells (log scale)"
    assert any(list(line.get_ydata()) == [0.688, 0.688] for line in ax.get_lines())          # the majority line
