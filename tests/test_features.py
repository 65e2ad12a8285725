import pytest
import torch

import ftlab as ft


@pytest.fixture()
def small(elpv2):
    model = ft.vision.pretrained(num_classes=2)
    return model, ft.vision.loaders(elpv2, model, image_size=64, subset=20, eval_subset=10, seed=0)


@pytest.mark.parametrize("cut", ["head", "final_conv", "blocks.5", 3])
def test_cut_point_reproduces_the_model(small, cut):
    model, L = small
    feats = ft.extract(model, L.val, cut=cut, cache=False)
    x = torch.stack([L.val.dataset[i][0] for i in range(len(L.val.dataset))])
    top = ft.caching.Top(model, feats.cut).eval()
    with torch.no_grad():
        assert torch.allclose(top(feats.x), model.eval()(x), atol=1e-4, rtol=1e-3)
    assert torch.equal(feats.y, L.val.dataset.targets)


def test_second_extraction_is_a_cache_hit(small, tmp_cache):
    model, L = small
    first = ft.extract(model, L.val, cut="head")
    assert first.x.shape == (20, 1280) and len(list((tmp_cache / "features").iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("the model ran although the features were cached")

    model.forward_features = boom
    second = ft.extract(model, L.val, cut="head")
    assert torch.equal(first.x, second.x) and first.key == second.key
    del model.forward_features
    ft.freeze_to(model, 0)
    with torch.no_grad():
        model.conv_stem.weight.mul_(0.5)     # other weights below the cut: another key
    assert ft.extract(model, L.val, cut="head").key != first.key


def test_augmentation_is_dropped_with_a_warning(elpv2, tmp_cache):
    model = ft.vision.pretrained(num_classes=2)
    L = ft.vision.loaders(elpv2, model, image_size=32, subset=5, augment="strong")
    with pytest.warns(UserWarning, match="cannot be augmented.*RandomResizedCrop"):
        a = ft.extract(model, L.train, cut="head", cache=False)
    with pytest.warns(UserWarning):
        b = ft.extract(model, L.train, cut="head", cache=False)
    assert torch.equal(a.x, b.x)


def test_fit_cached_on_cached_features_trains_the_models_own_head(small, tmp_cache):
    model, L = small
    ft.freeze_to(model, -1)
    before = model.classifier.weight.clone()
    stem = model.conv_stem.weight.clone()
    h = ft.fit_cached(model, L, epochs=3, lr=1e-2, cut="auto", progress=False)
    assert isinstance(h, ft.History) and len(h) == 3 and h.meta["cached_cut"] == 9
    assert not torch.equal(before, model.classifier.weight) and torch.equal(stem, model.conv_stem.weight)


def test_cut_point_caching_trains_the_top_groups(small, tmp_cache):
    model, L = small
    ft.freeze_to(model, -2)
    conv_head = model.conv_head.weight.clone()
    h = ft.fit_cached(model, L, epochs=1, lr=1e-3, progress=False)
    assert h.meta["cached_cut"] == 8 and not torch.equal(conv_head, model.conv_head.weight)


def test_bad_cut(small):
    model, L = small
    with pytest.raises(ft.FtlabError, match="A cut is 'head', 'auto' or one of these groups"):
        ft.extract(model, L.val, cut="blocks.9")


def test_cache_key_follows_the_pixels(small, tmp_cache):
    model, L = small
    a = ft.extract(model, L.val, cut="head")
    flipped = L.val.dataset.with_transform(L.val.dataset.transform)
    flipped.images = flipped.images.flip(-1)
    loader = torch.utils.data.DataLoader(flipped, batch_size=8)
    b = ft.extract(model, loader, cut="head")
    assert a.key != b.key and not torch.equal(a.x, b.x)


def test_extraction_keeps_the_batchnorm_policy(small):
    model, L = small
    ft.freeze_to(model, -1)
    ft.train_mode(model)
    ft.extract(model, L.val, cut="head", cache=False)
    assert model.training and not model.bn2.training and not model.blocks[3][0].bn1.training


def test_d4_views_are_the_flips_and_rotations(small):
    model, L = small
    feats = ft.extract(model, L.val, cut="blocks.5", cache=False, views=8)
    assert feats.x.shape[:2] == (20, 8) and feats.views == 8 and feats.kind == "image"
    x = torch.stack([L.val.dataset[i][0] for i in range(3)])
    views = [ft.vision.d4_view(x, name) for name in ft.vision.D4]
    assert len({tuple(v.flatten()[:50].tolist()) for v in views}) == 8          # 8 different images
    rot90 = ft.vision.D4.index("rot90")
    once = views[rot90]
    for _ in range(3):
        once = ft.vision.d4_view(once, "rot90")
    assert torch.equal(views[0], x) and torch.equal(once, x)                   # 4 quarter turns = identity
    adapter = ft.vision.ImageAdapter()
    with torch.no_grad():
        for k in (0, 3, 6):
            expect = adapter.below(model.eval(), views[k], feats.cut)
            assert torch.allclose(feats.x[:3, k], expect, atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="square"):
        ft.vision.d4_view(torch.zeros(1, 3, 4, 5), 1)


def test_views_of_images_and_of_boxes_are_one_implementation():
    """A box drawn into an image lands where d4_boxes moves it, in every view (images and detection share D4)."""
    img = torch.zeros(1, 12, 12)
    box = torch.tensor([[2.0, 1.0, 5.0, 4.0]])                   # x1, y1, x2, y2 (pixels 2-4 across, 1-3 down)
    img[0, 1:4, 2:5] = 1
    for name in ft.vision.D4:
        moved, boxes = ft.vision.d4_view(img, name, boxes=box)
        ys, xs = moved[0].nonzero(as_tuple=True)
        assert boxes.tolist() == [[xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]], name


def test_view_average_is_a_log_probability(small):
    model, _ = small
    top = ft.caching.ViewAverage(torch.nn.Linear(6, 3), feature_dims=1)
    x = torch.randn(5, 8, 6)
    out = top(x)
    assert out.shape == (5, 3) and torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-5)
    assert torch.allclose(out.exp(), top.inner(x).softmax(-1).mean(1), atol=1e-5)
    assert top(x[:, 0]).shape == (5, 3)                                         # single views pass through


def test_fit_cached_on_views_trains_and_scores(small):
    model, L = small
    ft.freeze_to(model, "blocks.6")
    tr, va = (ft.extract(model, dl, cut="auto", cache=False, views=8) for dl in (L.train, L.val))
    h = ft.fit_cached(model, (tr, va), 2, lr=1e-3, batch_size=8, progress=False)
    assert len(h.rows) == 2 and h.meta["views"] == 8 and h.meta["cached_cut"] == tr.cut
    ev = ft.evaluate(model, va)
    assert ev["n"] == 20 and 0 <= ev["acc"] <= 1


def test_cached_training_gets_discriminative_learning_rates(small):
    model, _ = small
    ft.freeze_to(model, "blocks.5")
    top = ft.caching.ViewAverage(ft.caching.Top(model, 6), feature_dims=3)
    groups = ft.param_groups(top, lr=1e-2, lr_mult=10)
    lrs = sorted({g["lr"] for g in groups})
    assert len(lrs) == 4 and lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-2)


def test_features_are_shared_by_2_and_4_classes(lite0, tmp_cache):
    """The cache is keyed by the pixels, not the labels: the 4-class cells load as 2-class features."""
    s2, s4 = ft.vision.elpv(classes=2), ft.vision.elpv(classes=4)
    model = ft.vision.pretrained(num_classes=2)
    def few(s):     # the same 12 cells of each split
        return ft.Splits(*(getattr(s, n).subset(range(12)) for n in ("train", "val", "test")))

    l2 = ft.vision.loaders(few(s2), model, image_size=32, seed=0)
    l4 = ft.vision.loaders(few(s4), model, image_size=32, seed=0)
    a = ft.extract(model, l4.test, cut="head")
    b = ft.extract(model, l2.test, cut="head")
    assert a.key == b.key and torch.equal(a.x, b.x)
    assert torch.equal(b.y, l2.test.dataset.targets) and torch.equal(a.y, l4.test.dataset.targets)
    assert torch.equal(a.with_targets(a.y >= 2).y, b.y)
    with pytest.raises(ft.FtlabError, match="same samples"):
        a.with_targets(a.y[:3])


def test_cut_point_caching_works_through_layer_groups_of_any_model(tmp_cache):
    """No image assumption: a tiny model with a pooling body and a plain tensor data set."""
    from tiny import Tiny, tiny_loaders

    torch.manual_seed(0)
    model = Tiny()
    ft.train_top(model, 2)
    train, val = tiny_loaders()
    feats = ft.extract(model, val, cut="auto")
    assert feats.cut == 1 and feats.x.shape == (32, 4, 8, 8)
    again = ft.extract(model, val, cut="auto")                 # keyed by the inputs: a cache hit
    assert again.key == feats.key and len(list((tmp_cache / "features").iterdir())) == 1
    top = ft.caching.Top(model, 1).eval()
    with torch.no_grad():
        assert torch.allclose(top(feats.x), model.eval()(torch.cat([x for x, _ in val])), atol=1e-5)
    h = ft.fit_cached(model, (ft.extract(model, train, cut="auto"), feats), 2, lr=1e-2, progress=False)
    assert len(h) == 2 and not model.stem[0].weight.grad is not None


def test_a_cut_that_does_not_reproduce_the_model_is_refused():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.b(self.a(x)) + x)          # not the groups in a row

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4), torch.zeros(8).long()))
    with pytest.raises(ValueError, match="does not reproduce"):
        ft.extract(Residual(), data, cut="b", cache=False)
