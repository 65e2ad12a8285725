import pytest
import torch

import ftlab as ft


@pytest.fixture()
def small(elpv2):
    model = ft.pretrained(num_classes=2)
    return model, ft.loaders(elpv2, model, image_size=64, subset=20, eval_subset=10, seed=0)


@pytest.mark.parametrize("cut", ["head", "final_conv", "blocks.5", 3])
def test_cut_point_reproduces_the_model(small, cut):
    model, L = small
    feats = ft.extract_features(model, L.val, cut=cut, cache=False)
    x = torch.stack([L.val.dataset[i][0] for i in range(len(L.val.dataset))])
    top = ft.features.Top(model, feats.cut).eval()
    with torch.no_grad():
        assert torch.allclose(top(feats.x), model.eval()(x), atol=1e-4, rtol=1e-3)
    assert torch.equal(feats.y, L.val.dataset.targets)


def test_second_extraction_is_a_cache_hit(small, tmp_cache):
    model, L = small
    first = ft.extract_features(model, L.val)
    assert first.x.shape == (20, 1280) and len(list((tmp_cache / "features").iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("the model ran although the features were cached")

    model.forward_features = boom
    second = ft.extract_features(model, L.val)
    assert torch.equal(first.x, second.x) and first.key == second.key
    del model.forward_features
    ft.freeze_to(model, 0)
    with torch.no_grad():
        model.conv_stem.weight.mul_(0.5)     # other weights below the cut: another key
    assert ft.extract_features(model, L.val).key != first.key


def test_augmentation_is_dropped_with_a_warning(elpv2, tmp_cache):
    model = ft.pretrained(num_classes=2)
    L = ft.loaders(elpv2, model, image_size=32, subset=5, augment="strong")
    with pytest.warns(UserWarning, match="cannot be augmented.*RandomResizedCrop"):
        a = ft.extract_features(model, L.train, cache=False)
    with pytest.warns(UserWarning):
        b = ft.extract_features(model, L.train, cache=False)
    assert torch.equal(a.x, b.x)


def test_fit_head_on_cached_features_trains_the_models_own_head(small, tmp_cache):
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
    with pytest.raises(ft.FtlabError, match="valid cuts"):
        ft.extract_features(model, L.val, cut="blocks.9")


def test_cache_key_follows_the_pixels(small, tmp_cache):
    model, L = small
    a = ft.extract_features(model, L.val)
    flipped = L.val.dataset.with_transform(L.val.dataset.transform)
    flipped.images = flipped.images.flip(-1)
    loader = torch.utils.data.DataLoader(flipped, batch_size=8)
    b = ft.extract_features(model, loader)
    assert a.key != b.key and not torch.equal(a.x, b.x)


def test_extraction_keeps_the_batchnorm_policy(small):
    model, L = small
    ft.freeze_to(model, -1)
    ft.train_mode(model)
    ft.extract_features(model, L.val, cache=False)
    assert model.training and not model.bn2.training and not model.blocks[3][0].bn1.training
