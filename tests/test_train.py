import math

import pytest
import torch
from torch import nn

import ftlab as ft
from tiny import Tiny, tiny_loaders


def rows_without_time(h):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.rows]


def test_same_seed_gives_identical_history():
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = Tiny()
        runs.append(ft.fit(m, tiny_loaders(), epochs=3, lr=1e-2, progress=False, seed=7))
    assert rows_without_time(runs[0]) == rows_without_time(runs[1])
    assert len(runs[0]) == 3 and {"train_loss", "val_acc", "lr", "lrs", "trainable"} <= set(runs[0][0])


def test_history_records_and_text():
    h = ft.fit(Tiny(), tiny_loaders(), epochs=2, lr=1e-2, progress=False, seed=0)
    assert h["epoch"] == [0, 1] and h.best is not None and h.best_epoch in (0, 1)
    assert "val_acc" in repr(h) and "<table>" in h._repr_html_()
    assert h.to_list()[0]["trainable"] == sum(p.numel() for p in Tiny().parameters())


def test_unfreezing_inside_fit_is_never_a_silent_no_op():
    """The trap: an optimizer built before unfreezing never updates the new parameters."""
    m = Tiny()
    ft.freeze_to(m, -1)
    # the trap, in plain PyTorch
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    ft.unfreeze(m)
    w = m.stem[0].weight.clone()
    nn.functional.cross_entropy(m(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 0, 1])).backward()
    opt.step()
    assert torch.equal(w, m.stem[0].weight)
    # fit rebuilds the optimizer when the trainable set changes mid-run
    m = Tiny()
    ft.freeze_to(m, -1)
    snapshots = []

    class Unfreeze(ft.Callback):
        def on_epoch_start(self, state):
            if state.epoch == 1:
                ft.unfreeze(state.model)
                snapshots.append(state.model.stem[0].weight.clone())

    h = ft.fit(m, tiny_loaders(), epochs=2, lr=1e-2, progress=False, seed=0, callbacks=[Unfreeze()],
               restore_best=False)
    assert not torch.equal(snapshots[0], m.stem[0].weight)
    assert h.unfreeze_epochs() == [1] and h[1]["trainable"] > h[0]["trainable"]


def test_gradual_unfreeze_adds_a_group_per_epoch():
    m = Tiny()
    h = ft.fit(m, tiny_loaders(), epochs=3, lr=1e-2, progress=False, seed=0, callbacks=[ft.GradualUnfreeze()])
    assert h["trainable"] == [18, 18 + 4 * 8 * 9 + 8 + 16, sum(p.numel() for p in m.parameters())]


def test_nan_loss_stops_and_restores_best_weights():
    m = Tiny()
    calls = {"n": 0}

    def criterion(out, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(out, y)
        return loss * math.nan if calls["n"] > 6 else loss   # epoch 1 fine (4 train + 2 val batches)

    best = {}

    class Keep(ft.Callback):
        def on_epoch_end(self, state):
            best.update({k: v.clone() for k, v in state.model.state_dict().items()})

    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        h = ft.fit(m, tiny_loaders(), epochs=3, lr=1e-2, progress=False, criterion=criterion, callbacks=[Keep()])
    assert "non-finite" in h.stopped and len(h) == 1 and h.best_epoch == 0
    assert all(torch.equal(v, best[k]) for k, v in m.state_dict().items())


def test_keyboard_interrupt_returns_history_so_far():
    m = Tiny()

    class Stop(ft.Callback):
        def on_batch_end(self, state):
            if state.epoch == 1 and state.batch == 6:
                raise KeyboardInterrupt

    h = ft.fit(m, tiny_loaders(), epochs=4, lr=1e-2, progress=False, callbacks=[Stop()])
    assert len(h) == 1 and h.stopped.startswith("interrupted in epoch 2") and h.best_epoch == 0


def test_early_stopping():
    m = Tiny()
    h = ft.fit(m, tiny_loaders(), epochs=30, lr=0.5, progress=False, seed=0, early_stopping=2, scheduler=None)
    assert len(h) < 30 and h.stopped.startswith("early stopping")
    assert len(h) - 1 - h.best_epoch == 2


def test_evaluate_and_predict():
    m = Tiny()
    train, val = tiny_loaders()
    p = ft.predict(m, val)
    assert p.probs.shape == (32, 2) and torch.allclose(p.probs.sum(1), torch.ones(32))
    assert torch.equal(p.targets, torch.cat([y for _, y in val]))
    ev = ft.evaluate(m, val)
    assert ev["n"] == 32 and ev["acc"] == pytest.approx((p.preds == p.targets).float().mean().item())


def test_bad_arguments():
    with pytest.raises(ft.FtlabError, match="optimizer"):
        ft.fit(Tiny(), tiny_loaders(), 1, optimizer="adam9", progress=False)
    with pytest.raises(ft.FtlabError, match="scheduler"):
        ft.fit(Tiny(), tiny_loaders(), 1, scheduler="step", progress=False)
    with pytest.raises(ft.FtlabError, match="loaders"):
        ft.fit(Tiny(), "data", 1, progress=False)


def test_fine_tune_two_stages():
    m = Tiny()
    h = ft.fine_tune(m, tiny_loaders(), head_epochs=1, epochs=2, unfreeze=2, lr=1e-2, progress=False, seed=0)
    assert len(h) == 3 and h.unfreeze_epochs() == [1]
    assert h[0]["trainable"] == 18 and h[1]["trainable"] > 18
    assert not m.stem[0].weight.requires_grad and m.body[0].weight.requires_grad


def test_lr_find_leaves_weights_as_they_were():
    m = Tiny()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = ft.lr_find(m, tiny_loaders(n=256), steps=40)
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert 10 <= len(r.lrs) <= 40 and r.lrs == sorted(r.lrs)
    assert r.lrs[0] <= r.suggestion <= r.lrs[-1]


def test_checkpoint_round_trip_and_no_accidental_overwrite(tmp_path):
    m = ft.pretrained(num_classes=2)
    with torch.no_grad():
        m.classifier.weight.add_(1.0)
    h = ft.History([{"epoch": 0, "val_acc": 0.8, "seconds": 1.0}], best_epoch=0)
    path = ft.save_checkpoint(tmp_path / "m.pt", m, history=h, classes=["ok", "bad"])
    loaded = ft.load_checkpoint(path)
    assert torch.equal(loaded["model"].classifier.weight, m.classifier.weight)
    assert loaded["classes"] == ["ok", "bad"] and loaded["history"].rows == h.rows
    assert loaded["preprocessing"]["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(ft.FtlabError, match="will not overwrite"):
        ft.save_checkpoint(path, m)
    assert torch.equal(ft.load_checkpoint(path)["model"].classifier.weight, m.classifier.weight)
    ft.save_checkpoint(path, m, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]          # no temp files left behind
    with pytest.raises(ft.FtlabError, match="4-class head"):
        ft.load_checkpoint(path, ft.pretrained(num_classes=4, weights=None))
    with pytest.raises(ft.FtlabError, match="holds a EfficientNet"):
        ft.load_checkpoint(path, Tiny())
    (tmp_path / "junk.pt").write_text("nope")
    with pytest.raises(ft.FtlabError, match="not a readable checkpoint"):
        ft.load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.slow
def test_fit_on_real_elpv_beats_majority_class(elpv2):
    m = ft.pretrained(num_classes=2)
    ft.freeze_to(m, -1)
    L = ft.loaders(elpv2, m, image_size=64, subset=80, seed=0)
    h = ft.fit(m, L, epochs=3, lr=3e-3, progress=False, seed=0)
    majority = max(L.val.dataset.counts().values()) / len(L.val.dataset)
    assert h.best["val_acc"] > majority + 0.03
