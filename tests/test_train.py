import math
from types import SimpleNamespace

import pytest
import torch
from tiny import Tiny, tiny_loaders
from torch import nn

import ftlab as ft


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
    # fit adds the newly trainable parameters to its optimizer when the trainable set changes mid-run
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
    assert h.kept_epoch == h.best_epoch and h.kept is h.best and "* the weights kept (the best epoch)" in repr(h)


def test_without_restore_best_the_last_epoch_is_the_kept_one():
    """``best_epoch`` is the best by validation loss; ``kept_epoch`` the weights the model ends with."""
    m = Tiny()
    h = ft.fit(m, tiny_loaders(), epochs=30, lr=0.5, progress=False, seed=0, early_stopping=2, scheduler=None,
               restore_best=False)
    assert h.best_epoch == len(h) - 3 and h.kept_epoch == len(h) - 1 and h.kept is h.rows[-1]
    assert ft.evaluate(m, tiny_loaders()[1])["loss"] == pytest.approx(h.kept["val_loss"], rel=1e-5)
    assert "+ the best epoch" in repr(h)
    both = h + h                                                    # a second stage: its kept epoch counts on
    assert (both.best_epoch, both.kept_epoch) == (len(h) + h.best_epoch, 2 * len(h) - 1)


def test_evaluate_and_predict():
    m = Tiny()
    train, val = tiny_loaders()
    p = ft.predict(m, val)
    assert p.probs.shape == (32, 2) and torch.allclose(p.probs.sum(1), torch.ones(32))
    assert torch.equal(p.targets, torch.cat([y for _, y in val]))
    ev = ft.evaluate(m, val)
    assert ev["n"] == 32 and ev["acc"] == pytest.approx((p.preds == p.targets).float().mean().item())


def test_bad_arguments():
    frozen = Tiny()
    ft.freeze(frozen)
    with pytest.raises(ValueError, match="Nothing in this Tiny is trainable.*train_top"):
        ft.fit(frozen, tiny_loaders(), 1, progress=False)
    with pytest.raises(ft.UsageError, match="epochs must be"):
        ft.fit(Tiny(), tiny_loaders(), 0, progress=False)
    with pytest.raises(ft.FtlabError, match="optimizer"):
        ft.fit(Tiny(), tiny_loaders(), 1, optimizer="adam9", progress=False)
    with pytest.raises(ft.FtlabError, match="scheduler"):
        ft.fit(Tiny(), tiny_loaders(), 1, scheduler="step", progress=False)
    with pytest.raises(ft.FtlabError, match="loaders"):
        ft.fit(Tiny(), "data", 1, progress=False)


def test_unfreezing_keeps_optimizer_state_and_continues_the_schedule():
    """Lightning's unfreeze_and_add_param_group: no new optimizer, no restarted warm-up."""
    m = Tiny()
    ft.train_top(m, 1)
    seen = {}

    class Spy(ft.Callback):
        def on_epoch_start(self, state):
            if state.epoch == 1:
                seen["optimizer"], seen["step"] = state.optimizer, state.schedule.step_count
                seen["head"] = {k: v.clone() for k, v in state.optimizer.state[m.head.weight].items()}
                ft.train_top(state.model, 3)

        def on_batch_end(self, state):
            if state.epoch == 1 and "after" not in seen:
                seen["after"] = state.optimizer
                seen["groups"] = [g["name"] for g in state.optimizer.param_groups]
                seen["lrs"] = {g["name"]: g["lr"] for g in state.optimizer.param_groups}
                seen["head_step"] = float(state.optimizer.state[m.head.weight]["step"])
                seen["stem_step"] = float(state.optimizer.state[m.stem[0].weight]["step"])

    train, val = tiny_loaders()                     # 4 batches an epoch
    ft.fit(m, (train, val), epochs=3, lr=1e-2, progress=False, seed=0, callbacks=[Spy()], restore_best=False)
    assert seen["after"] is seen["optimizer"]                           # the same optimizer ...
    assert seen["head"]["step"] == 4 and seen["head_step"] == 5         # ... whose head state goes on
    assert seen["stem_step"] == 1                                       # new groups start fresh
    assert seen["groups"][:2] == ["head", "head/no_decay"] and "stem" in seen["groups"]
    # the schedule continues: after 5 of 12 steps, every group is at the one-cycle value of step 5
    ref_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1e-2, total_steps=12, pct_start=0.25,
                                              cycle_momentum=False)
    for _ in range(5):
        ref_opt.step()
        ref.step()
    assert seen["step"] == 4
    assert all(lr == pytest.approx(ref_opt.param_groups[0]["lr"]) for lr in seen["lrs"].values())


class TinyTextModel(nn.Module):
    """A Hugging Face-style classifier: model(**batch) returns an object with .loss and .logits."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(20, 8)
        self.classifier = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None, labels=None):
        mask = attention_mask.unsqueeze(-1).float()
        logits = self.classifier((self.embeddings(input_ids) * mask).sum(1) / mask.sum(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits)


def _text_batches(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(0, 10, (n, 6), generator=g) + 10 * labels.view(-1, 1)      # class 1 uses tokens 10..19
    items = [{"input_ids": i, "attention_mask": torch.ones(6, dtype=torch.long), "labels": y} for i, y in zip(ids, labels)]
    return (torch.utils.data.DataLoader(items, batch_size=16, shuffle=True, generator=g),
            torch.utils.data.DataLoader(items[:32], batch_size=16))


def test_fit_trains_on_hugging_face_style_dict_batches():
    torch.manual_seed(0)
    m = TinyTextModel()
    assert ft.group_names(m) == ["embeddings", "classifier"]
    ft.train_top(m, 1)
    embeddings = m.embeddings.weight.clone()
    h = ft.fit(m, _text_batches(), epochs=8, lr=0.05, progress=False, seed=0)
    assert torch.equal(embeddings, m.embeddings.weight)                 # frozen stays frozen
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h.best["val_acc"] > 0.9
    assert h[0]["train_acc"] is not None
    p = ft.predict(m, _text_batches()[1])
    assert p.probs.shape == (32, 2) and ft.evaluate(m, _text_batches()[1])["acc"] == pytest.approx(
        (p.preds == p.targets).float().mean().item())


class TinyDetector(nn.Module):
    """torchvision-detection style: model(images, targets) gives a dict of losses in training mode."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)
        self.box = nn.Linear(4, 4)
        self.cls = nn.Linear(4, 2)

    def forward(self, images, targets=None):
        feats = torch.stack([self.backbone(i.unsqueeze(0)).mean((0, 2, 3)) for i in images])
        boxes, logits = self.box(feats), self.cls(feats)
        if self.training:
            return {"loss_box": nn.functional.smooth_l1_loss(boxes, torch.stack([t["boxes"][0] for t in targets])),
                    "loss_classifier": nn.functional.cross_entropy(logits, torch.stack([t["labels"][0] for t in targets]))}
        return [{"boxes": b[None], "labels": lg.argmax()[None], "scores": lg.softmax(-1).max()[None]}
                for b, lg in zip(boxes, logits)]


def _detection_batches(n=32):
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        label = i % 2
        image = torch.rand(3, 12 + i % 5, 14, generator=g) + label          # images of different sizes
        items.append((image, {"boxes": torch.tensor([[1.0, 2.0, 8.0, 9.0]]) * (1 + label), "labels": torch.tensor([label])}))
    return torch.utils.data.DataLoader(items, batch_size=8, shuffle=True, generator=g, collate_fn=lambda b: tuple(zip(*b)))


def test_fit_trains_a_detector_on_image_and_target_lists():
    torch.manual_seed(0)
    m = TinyDetector()
    h = ft.fit(m, (_detection_batches(), None), epochs=6, lr=0.05, progress=False, seed=0)
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"] and h[0]["train_acc"] is None
    assert h.best_epoch == 5                                            # no validation: the last epoch is kept
    ev = ft.evaluate(m, _detection_batches())                           # eval mode gives detections, not losses
    assert math.isnan(ev["loss"]) and ev["n"] == 32
    with pytest.raises(ft.UsageError, match="detector"):
        ft.predict(m, _detection_batches())
    h = ft.fit(m, (_detection_batches(), _detection_batches()), epochs=2, lr=0.01, progress=False, seed=0)
    assert math.isnan(h[-1]["val_loss"]) and h.best_epoch == 1


def test_fine_tune_two_stages():
    m = Tiny()
    h = ft.fine_tune(m, tiny_loaders(), head_epochs=1, epochs=2, top=2, lr=1e-2, progress=False, seed=0)
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
    m = ft.vision.pretrained(num_classes=2)
    with torch.no_grad():
        m.classifier.weight.add_(1.0)
    h = ft.History([{"epoch": 0, "val_acc": 0.8, "seconds": 1.0}, {"epoch": 1, "val_acc": 0.7, "seconds": 1.0}],
                   best_epoch=0, kept_epoch=1)
    path = ft.save_checkpoint(tmp_path / "m.pt", m, history=h, classes=["ok", "bad"])
    loaded = ft.load_checkpoint(path)
    assert torch.equal(loaded["model"].classifier.weight, m.classifier.weight)
    assert loaded["classes"] == ["ok", "bad"] and loaded["history"].rows == h.rows
    assert (loaded["history"].best_epoch, loaded["history"].kept_epoch) == (0, 1)
    assert loaded["preprocessing"]["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(ft.FtlabError, match="will not overwrite"):
        ft.save_checkpoint(path, m)
    assert torch.equal(ft.load_checkpoint(path)["model"].classifier.weight, m.classifier.weight)
    ft.save_checkpoint(path, m, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]          # no temp files left behind
    with pytest.raises(ft.FtlabError, match="4-class head"):
        ft.load_checkpoint(path, ft.vision.pretrained(num_classes=4, weights=None))
    with pytest.raises(ft.FtlabError, match="holds a EfficientNet"):
        ft.load_checkpoint(path, Tiny())
    (tmp_path / "junk.pt").write_text("nope")
    with pytest.raises(ft.FtlabError, match="not a readable checkpoint"):
        ft.load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.slow
def test_fit_on_real_elpv_beats_majority_class(elpv2):
    m = ft.vision.pretrained(num_classes=2)
    ft.freeze_to(m, -1)
    L = ft.vision.loaders(elpv2, m, image_size=64, subset=80, seed=0)
    h = ft.fit(m, L, epochs=3, lr=3e-3, progress=False, seed=0)
    majority = max(L.val.dataset.counts().values()) / len(L.val.dataset)
    assert h.best["val_acc"] > majority + 0.03


def test_schedule_takes_a_groups_own_rate_as_its_peak_once():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.1}])          # built without ftlab: no peak_lr
    sched = ft.optim.Schedule(opt, "cosine", 10)
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * sched.factor(5))   # not compounded step by step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_predict_on_unlabelled_dict_batches():
    torch.manual_seed(0)
    m = TinyTextModel()
    items = [{"input_ids": torch.randint(0, 20, (6,)), "attention_mask": torch.ones(6, dtype=torch.long)}
             for _ in range(10)]
    p = ft.predict(m, torch.utils.data.DataLoader(items, batch_size=4))
    assert p.probs.shape == (10, 2) and len(p.targets) == 0
