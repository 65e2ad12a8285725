"""The feature hierarchy of lesson 01: pooled features after every layer group, their maps, and the figures."""
import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from tiny import Tiny
from torch.utils.data import DataLoader, TensorDataset

import ftlab as ft


def _data(n=12):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 2
    return DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True), x, y


def test_pooled_features_are_the_spatial_means_of_a_groups_output(tmp_cache):
    model, (loader, x, y) = Tiny().eval(), _data()
    feats = ft.vision.pooled_features(model, loader, "stem", device="cpu")
    assert list(feats) == ["stem"]
    f = feats["stem"]
    with torch.no_grad():
        expected = model.stem(x).mean((2, 3))
    assert f.x.shape == (12, 4) and torch.allclose(f.x, expected, atol=1e-6)
    assert torch.equal(f.y, y) and f.cut == 1       # in order, although the loader shuffles


def test_pooled_features_are_cached_and_keyed_by_the_weights(tmp_cache):
    model, (loader, _, _) = Tiny().eval(), _data()
    first = ft.vision.pooled_features(model, loader, "stem", device="cpu")["stem"]
    assert len(list((tmp_cache / "features").glob("pooled-*.pt"))) == 1

    def boom(*a, **k):
        raise AssertionError("the model ran although the pooled features were cached")

    forward, model.stem.forward = model.stem.forward, boom
    second = ft.vision.pooled_features(model, loader, "stem", device="cpu")["stem"]
    assert torch.equal(first.x, second.x) and first.key == second.key
    model.stem.forward = forward
    with torch.no_grad():
        model.stem[0].weight.mul_(0.5)
    assert ft.vision.pooled_features(model, loader, "stem", device="cpu")["stem"].key != first.key


def test_pooled_features_refuse_the_head_flat_outputs_and_models_that_are_not_their_groups(tmp_cache):
    model, (loader, _, _) = Tiny().eval(), _data()
    with pytest.raises(ft.UsageError, match="head.*not maps to pool"):
        ft.vision.pooled_features(model, loader, ["stem", "head"], cache=False)
    with pytest.raises(ft.UsageError, match=r"Group body outputs \(12, 8\), not \[B, C, H, W\]"):
        ft.vision.pooled_features(model, loader, cache=False)            # default: every group before the head
    with pytest.raises(ft.UsageError, match="No layer group named 'blocks.9'"):
        ft.vision.pooled_features(model, loader, "blocks.9", cache=False)

    class Doubled(Tiny):
        def forward(self, x):
            return self.head(self.body(2 * self.stem(x)))

    with pytest.raises(ft.UsageError, match="do not reproduce its output"):
        ft.vision.pooled_features(Doubled().eval(), loader, "stem", cache=False)


@pytest.fixture(scope="module")
def lite(elpv2):
    model = ft.vision.pretrained(num_classes=2)
    return model, ft.vision.loaders(elpv2, model, image_size=64, subset=10, eval_subset=6, seed=0)


def test_pooled_features_agree_with_extract_features_on_the_real_model(lite):
    model, L = lite
    pooled = ft.vision.pooled_features(model, L.val, ["blocks.2", "final_conv"], cache=False)
    head = ft.extract(model, L.val, cut="head", cache=False)
    maps = ft.extract(model, L.val, cut="blocks.3", cache=False)     # the input of blocks.3
    assert pooled["final_conv"].cut == head.cut and torch.allclose(pooled["final_conv"].x, head.x, atol=1e-5)
    assert pooled["blocks.2"].cut == maps.cut and torch.allclose(pooled["blocks.2"].x, maps.x.mean((2, 3)), atol=1e-5)
    assert torch.equal(pooled["blocks.2"].y, L.val.dataset.targets)


def test_group_maps_of_one_image_are_the_unpooled_activations(lite):
    model, L = lite
    image = L.val.dataset[0][0]
    maps = ft.plot.group_maps(model, image, ["stem", "blocks.2"])
    cached = ft.extract(model, L.val, cut="blocks.3", cache=False).x[0]
    assert list(maps) == ["stem", "blocks.2"] and maps["stem"].shape == (32, 32, 32)
    assert torch.allclose(maps["blocks.2"], cached, atol=1e-5)
    with pytest.raises(ft.UsageError, match=r"one preprocessed image \[C, H, W\]"):
        ft.plot.group_maps(model, image.unsqueeze(0), "stem")
    with pytest.raises(ft.UsageError, match="outputs class scores, not maps"):
        ft.plot.group_maps(model, image, "head")
    with pytest.raises(ft.UsageError, match=r"Group body outputs \(1, 8\), not \[1, C, h, w\] maps"):
        ft.plot.group_maps(Tiny(), torch.zeros(3, 8, 8), "body")


def test_resnet18_groups_map_onto_the_classic_names_without_weights():
    resnet = torchvision.models.resnet18(weights=None)
    assert ft.group_names(resnet) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert ft.groups.head_module(resnet) is resnet.fc
    maps = ft.plot.group_maps(resnet, torch.zeros(3, 64, 64), ft.group_names(resnet)[:-1])
    assert [tuple(m.shape) for m in maps.values()] == [(64, 16, 16), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_feature_maps_figure_shows_the_busiest_channels_per_group_and_model(lite):
    model, L = lite
    models = {"a": model, "b": ft.vision.pretrained(weights=None, num_classes=2)}
    fig = ft.plot.feature_maps(models, L.val.dataset[0][0], ["blocks.0", "blocks.5"], channels=3)
    assert set(fig.maps) == {"a", "b"} and list(fig.maps["a"]) == ["blocks.0", "blocks.5"]
    titles = [a.get_title() for a in fig.axes]
    assert len(fig.axes) == 1 + 2 * 2 * 3 and titles[0] == "input 64 x 64"
    spread = fig.maps["a"]["blocks.0"].flatten(1).std(1)
    assert titles[1] == f"a\nch {int(spread.argmax())} of 16"
    assert [sf.get_suptitle() for sf in fig.subfigs[1].subfigs] == ["after blocks.0: maps of 32 x 32",
                                                                         "after blocks.5: maps of 2 x 2"]
    _, axs = plt.subplots(1, 5)
    with pytest.raises(ft.UsageError, match="needs 12 axes"):
        ft.plot.feature_maps(models, L.val.dataset[0][0], ["blocks.0", "blocks.5"], channels=3, ax=axs)
    plt.close("all")


def test_probe_by_depth_draws_one_line_per_model_and_an_honest_axis():
    acc = {"pretrained": {"stem": 0.77, "blocks.0": 0.80, "final_conv": 0.83},
           "random init": {"stem": 0.76, "blocks.0": 0.74, "final_conv": 0.70}}
    fig = ft.plot.probe_by_depth(acc, majority=0.69, n_test=656)
    a = fig.axes[0]
    assert [t.get_text() for t in a.get_xticklabels()] == ["stem", "blocks.0", "final_conv"]
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["majority class", "pretrained", "random init"]
    low, high = a.get_ylim()
    assert low <= 0.69 - 0.03 and high == 1.0
    with pytest.raises(ft.UsageError, match="fractions in \\[0, 1\\]"):
        ft.plot.probe_by_depth({"p": {"stem": 77.0}})
    with pytest.raises(ft.UsageError, match="at least one group"):
        ft.plot.probe_by_depth({"p": {}})
    plt.close("all")
