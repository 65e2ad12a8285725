"""Widgets without a browser: construct, change values programmatically, check the model and the panel."""
import ipywidgets as W
import pytest
from tiny import Tiny, tiny_loaders

import ftlab as ft
from ftlab.lab import panels


def test_freeze_explorer_really_freezes_and_updates_the_summary():
    model = ft.vision.pretrained(num_classes=2)
    ex = ft.widgets.FreezeExplorer(model)
    assert isinstance(ex.widget, W.VBox)
    assert ft.trainable_count(model) == 2_562 and "2,562 of" in ex.summary.value
    ex.slider.value = 3                      # final_conv, blocks.6 and the head
    expected = sum(p.numel() for m in (model.blocks[6], model.conv_head, model.bn2, model.classifier)
                   for p in m.parameters())
    assert ft.trainable_count(model) == expected and f"{expected:,} of" in ex.summary.value
    assert not model.blocks[5][0].bn1.weight.requires_grad
    ex.bn.value = "train"
    assert model.blocks[5][0].bn1.weight.requires_grad and not model.blocks[5][0].conv_pw.weight.requires_grad
    ex.slider.value = 0
    assert ft.trainable_count(model) == sum(p.numel() for n, p in model.named_parameters() if ".bn" in n or n.startswith("bn"))


def test_freeze_explorer_counts_like_train_top():
    m = Tiny()
    ex = ft.widgets.FreezeExplorer(m)
    for k in range(4):
        ex.slider.value = k
        expected = Tiny()
        ft.train_top(expected, k)
        assert [p.requires_grad for p in m.parameters()] == [p.requires_grad for p in expected.parameters()]


class _Loaders:
    def __init__(self):
        self.train, self.val = tiny_loaders()
        self.test = self.val
        self.config = {"augment": "none"}


def test_train_panel_run_appends_a_row():
    panel = ft.lab.TrainPanel(Tiny, _Loaders())
    panel.strategy.value = "full"
    panel.epochs.value = 2
    panel.run(blocking=True)
    assert len(panel.results) == 1
    row = panel.results[0]
    assert row["trainable"] == sum(p.numel() for p in Tiny().parameters()) and row["epochs_run"] == 2
    assert "full" in panel.table.value and "done" in panel.status.value and not row["cached"]
    panel.strategy.value = "head"
    panel.run(blocking=True)
    assert len(panel.results) == 2 and panel.results[1]["trainable"] == 18 and panel.results[1]["cached"]
    panel.strategy.value, panel.k.value = "top k", 2
    assert panel.settings()["strategy"] == "top2"
    panel.run(blocking=True)
    assert panel.results[2]["trainable"] == 18 + 4 * 8 * 9 + 8 + 16 and "top2" in panel.table.value


def test_train_panel_stop_ends_training_cleanly():
    panel = ft.lab.TrainPanel(Tiny, _Loaders())
    panel.epochs.value = 5

    class StopSoon(ft.Callback):
        def on_batch_end(self, state):
            if state.batch == 5:
                panel.stop()

    row = ft.lab.run_strategy(Tiny(), panel.loaders, "full", epochs=5, callbacks=[StopSoon(), panels._StopFlag(panel)])
    assert row["epochs_run"] == 2 and row["stopped"].startswith("stopped by a callback")
    n_test = len(panel.loaders.test.dataset)
    assert row["test_correct"].shape == (n_test,) and float(row["test_correct"].mean()) == pytest.approx(row["test_acc"])


def test_augmentation_explorer_redraws(elpv2):
    ex = ft.widgets.AugmentationExplorer(elpv2.train, size=32, n=3)
    assert ex.draws == 1
    ex.preset.value = "strong"
    ex.redraw.click()
    assert ex.draws == 3


def test_run_strategy_rejects_unknown_strategy():
    with pytest.raises(ValueError, match="Unknown strategy 'half'.*top<k>"):
        ft.lab.run_strategy(Tiny(), _Loaders(), strategy="half")
    with pytest.raises(ValueError, match="top1 .. top3"):
        ft.lab.run_strategy(Tiny(), _Loaders(), strategy="top7")
