"""Widgets without a browser: construct, change values programmatically, check the model and the panel."""
import ipywidgets as W
import pytest

import ftlab as ft
from tiny import Tiny, tiny_loaders


def test_freeze_explorer_really_freezes_and_updates_the_summary():
    model = ft.pretrained(num_classes=2)
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


def test_apply_freeze_counts_groups_from_the_top():
    m = Tiny()
    ft.widgets.apply_freeze(m, 2)
    assert not m.stem[0].weight.requires_grad and m.body[0].weight.requires_grad
    ft.widgets.apply_freeze(m, 0)
    assert ft.trainable_count(m) == 0


class _Loaders:
    def __init__(self):
        self.train, self.val = tiny_loaders()
        self.test = self.val
        self.config = {"augment": "none"}


def test_train_panel_run_appends_a_row():
    panel = ft.widgets.TrainPanel(Tiny, _Loaders())
    panel.strategy.value = "full"
    panel.epochs.value = 2
    panel.run(blocking=True)
    assert len(panel.results) == 1
    row = panel.results[0]
    assert row["trainable"] == sum(p.numel() for p in Tiny().parameters()) and row["epochs"] == 2
    assert "full" in panel.table.value and "done" in panel.status.value
    panel.strategy.value = "head only"
    panel.run(blocking=True)
    assert len(panel.results) == 2 and panel.results[1]["trainable"] == 18


def test_train_panel_stop_ends_training_cleanly():
    panel = ft.widgets.TrainPanel(Tiny, _Loaders())
    panel.epochs.value = 5

    class StopSoon(ft.Callback):
        def on_batch_end(self, state):
            if state.batch == 5:
                panel.stop()

    row = ft.widgets.run_strategy(Tiny, panel.loaders, epochs=5, callbacks=[StopSoon(), ft.widgets._StopFlag(panel)])
    assert row["epochs"] == 2 and row["stopped"].startswith("stopped by a callback")


def test_augmentation_explorer_redraws(elpv2):
    ex = ft.widgets.AugmentationExplorer(elpv2.train, size=32, n=3)
    assert ex.draws == 1
    ex.preset.value = "strong"
    ex.redraw.click()
    assert ex.draws == 3


def test_run_strategy_rejects_unknown_strategy():
    with pytest.raises(ft.FtlabError, match="Unknown strategy"):
        ft.widgets.run_strategy(Tiny, _Loaders(), strategy="half")
