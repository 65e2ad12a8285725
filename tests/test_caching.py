"""One caching engine for images, text and boxes: cached training is end-to-end training, and `cut` is the
first group that trains, in every modality."""
import copy

import pytest
import torch

import ftlab as ft
from ftlab.detection import models as det_models


def _images(elpv2):
    model = ft.vision.pretrained(num_classes=2)
    L = ft.vision.loaders(elpv2, model, image_size=64, batch_size=8, subset=12, eval_subset=8, seed=0)
    return model, L.train, L.val, L, "blocks.6"


def _text(small_bert):
    splits = ft.text.rotten_tomatoes()
    L = ft.text.loaders(splits, ft.text.tokenizer(), max_length=24, batch_size=8, subset=12, eval_subset=6, seed=0)
    return small_bert, L.train, L.val, L, "layer.1"


def _boxes():
    trees = ft.detection.tree_crowns()
    part = trees.train.subset([1, 2, 3])
    model = det_models._new_head(ft.detection.pretrained(), 1, ["Tree"])
    batch = ([part.images[i] for i in range(3)],
             [{"boxes": part.target(i)["boxes"].as_subclass(torch.Tensor), "labels": part.target(i)["labels"]}
              for i in range(3)])
    return model, part, None, ([batch], None), "neck"


def _case(name, request):
    if name == "images":
        return _images(request.getfixturevalue("elpv2"))
    if name == "text":
        return _text(request.getfixturevalue("small_bert"))
    return _boxes()


@pytest.mark.parametrize("modality", ["images", "text", "boxes"])
def test_cached_training_makes_the_updates_of_end_to_end_training(modality, request):
    model, train, val, loaders, cut = _case(modality, request)
    ft.freeze_to(model, cut)
    plain, cached = copy.deepcopy(model), copy.deepcopy(model)
    kw = dict(lr=1e-3, seed=0, device="cpu", progress=False, optimizer="sgd", scheduler=None)
    h_plain = ft.fit(plain, loaders, 2, **kw)
    feats = ft.extract(cached, train, cache=False)                 # cut="auto": the first group that trains
    kind = {"images": "image", "text": "text", "boxes": "detection"}[modality]
    assert feats.cut == ft.group_names(cached).index(cut) and feats.kind == kind
    val_feats = None if val is None else ft.extract(cached, val, cache=False)
    bs = 3 if modality == "boxes" else 8
    h_cached = ft.fit_cached(cached, (feats, val_feats), 2, batch_size=bs, **kw)
    for a, b in zip(h_plain.rows, h_cached.rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        if val is not None:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    for (n, p), q in zip(plain.named_parameters(), cached.parameters()):
        assert torch.allclose(p, q, atol=1e-5), n


@pytest.mark.parametrize("modality", ["images", "text", "boxes"])
def test_cut_g_trains_exactly_the_groups_from_g_up(modality, request):
    model, train, val, _, cut = _case(modality, request)
    ft.freeze_to(model, cut)
    index = ft.group_names(model).index(cut)
    before = [[p.detach().clone() for p in g.parameters()] for g in ft.layer_groups(model)]
    feats = ft.extract(model, train, cut=cut, cache=False)
    ft.fit_cached(model, feats, 1, lr=1e-2, batch_size=4, seed=0, device="cpu", progress=False, scheduler=None)
    for i, (g, old) in enumerate(zip(ft.layer_groups(model), before)):
        same = all(torch.equal(p, q) for p, q in zip(g.parameters(), old))
        assert same == (i < index), f"group {g.name} {'did not train' if same else 'trained'} with cut {cut}"


def test_groups_below_the_cut_must_be_frozen(elpv2):
    model, train, _, _, _ = _images(elpv2)
    ft.freeze_to(model, "blocks.6")
    feats = ft.extract(model, train, cut="blocks.6", cache=False)
    ft.unfreeze(model)
    with pytest.raises(ft.UsageError, match="lie below the cut .*freeze_to"):
        ft.fit_cached(model, feats, 1, progress=False)
    with pytest.raises(ft.UsageError, match="Everything .* trains, so cut='auto' caches nothing"):
        ft.extract(model, train, cache=False)


def test_evaluate_and_predict_take_cached_features(elpv2):
    model, train, val, L, _ = _images(elpv2)
    ft.freeze_to(model, "head")
    feats = ft.extract(model, L.test, cut="head", cache=False)
    assert ft.evaluate(model, feats, device="cpu") == pytest.approx(ft.evaluate(model, L.test, device="cpu"), abs=1e-5)
    p = ft.predict(model, feats, device="cpu")
    assert torch.equal(p.targets, L.test.dataset.targets) and torch.allclose(
        p.probs, ft.predict(model, L.test, device="cpu").probs, atol=1e-5)


def test_one_cached_type_for_three_modalities(elpv2, small_bert):
    img = ft.extract(_images(elpv2)[0], _images(elpv2)[1], cut="head", cache=False)
    txt = ft.extract(small_bert, _text(small_bert)[1], cut="layer.1", cache=False)
    model, tiles, *_ = _boxes()
    box = ft.extract(model, tiles, cut="head", views=2, cache=False)
    assert {type(f) for f in (img, txt, box)} == {ft.Features}
    assert (img.kind, txt.kind, box.kind) == ("image", "text", "detection")
    assert txt.lengths is not None and len(txt) == len(txt.lengths) and box.views == 2 and len(box) == 3
    assert isinstance(box.y[0], tuple) and len(box.y[0]) == 2            # boxes moved with each view
    sub = txt.subset([2, 0])
    assert torch.equal(sub.example(0), txt.example(2)) and sub.y.tolist() == [txt.y[2].item(), txt.y[0].item()]


def test_a_shared_read_only_cache_is_read_and_never_written(tmp_path, monkeypatch):
    """A class's cache (FTLAB_SHARED_CACHE, read-only) serves what it holds; what it lacks goes to the user's own."""
    import os
    import stat

    from tiny import Tiny, tiny_loaders

    model = Tiny()
    ft.freeze_to(model, -1)
    train, _ = tiny_loaders()
    shared, own = tmp_path / "shared", tmp_path / "own"
    monkeypatch.setenv("FTLAB_CACHE", str(shared))              # the teacher fills the class's cache
    first = ft.extract(model, train, cut="head")
    filled = sorted(p.name for p in (shared / "features").iterdir())
    for folder, _, files in os.walk(shared):                     # then shares it read-only
        for name in files:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP)
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        monkeypatch.setenv("FTLAB_CACHE", str(own))              # a student
        monkeypatch.setenv("FTLAB_SHARED_CACHE", str(shared))
        again = ft.extract(model, train, cut="head")
        assert torch.equal(again.x, first.x) and again.key == first.key
        assert not (own / "features").exists() or not any((own / "features").iterdir())    # read, not recomputed
        assert ft.files.cache_file("features", filled[0]).parent == shared / "features"
        other = ft.extract(model, train, cut="body")                 # not in the shared cache: the student's own
        assert sorted(p.name for p in (shared / "features").iterdir()) == filled
        assert any(other.key in p.name for p in (own / "features").iterdir())
        assert set(filled) < ft.files.cached_names("features")
    finally:
        for folder, _, _ in os.walk(shared):
            os.chmod(folder, stat.S_IRWXU)
