"""Lesson 08's parts: moving cached features up to a later cut, probes scored on several sets, model facts."""
import pytest
import torch

import ftlab as ft
from ftlab.vision.choosing import images_per_second, model_facts


@pytest.fixture()
def small(elpv2):
    model = ft.vision.pretrained(num_classes=2)
    ft.freeze_to(model, "blocks.6")
    return model, ft.vision.loaders(elpv2, model, image_size=64, subset=20, eval_subset=10, seed=0)


@pytest.mark.parametrize("views", [None, 3])
def test_features_at_a_later_cut_equal_a_direct_extraction(small, views):
    model, L = small
    low = ft.extract(model, L.val, cut="blocks.5", cache=False, views=views)
    for cut in ("blocks.6", "head"):
        moved = ft.features_at(model, low, cut)
        direct = ft.extract(model, L.val, cut=cut, cache=False, views=views)
        assert moved.cut == direct.cut and moved.views == direct.views
        # float32: maps of size ~10 summed in another order (batch sizes, one torch thread or two) agree to ~1e-5 relative
        assert torch.allclose(moved.x, direct.x, rtol=1e-4, atol=1e-4), (cut, (moved.x - direct.x).abs().max())
        assert torch.equal(moved.y, low.y)
    assert ft.features_at(model, low, "blocks.5") is low
    with pytest.raises(ft.FtlabError, match="lies below"):
        ft.features_at(model, low, "blocks.4")


def test_features_at_key_depends_on_the_weights_in_between(small):
    model, L = small
    low = ft.extract(model, L.val, cut="blocks.6", cache=False)
    before = ft.features_at(model, low, "head")
    with torch.no_grad():
        model.conv_head.weight.mul_(0.5)
    after = ft.features_at(model, low, "head")
    assert before.key != after.key and not torch.allclose(before.x, after.x)


def test_linear_probe_scores_one_fit_on_several_sets(small):
    model, L = small
    tr, va = (ft.extract(model, d, cut="head", cache=False) for d in (L.train, L.val))
    both = ft.linear_probe(tr, {"val": va, "train": tr})
    assert set(both) == {"val", "train"} and both["train"] == 1.0
    assert both["val"] == ft.linear_probe(tr, va)
    right = ft.linear_probe(tr, va, per_example=True)
    assert right.shape == (len(va.y),) and set(right.tolist()) <= {0.0, 1.0} and float(right.mean()) == both["val"]
    with pytest.raises(ft.FtlabError, match="pooled"):
        ft.linear_probe(tr, {"maps": ft.extract(model, L.val, cut="blocks.6", cache=False)})


def test_features_sample_is_stratified_seeded_and_nested(small):
    model, L = small
    f = ft.extract(model, L.train, cut="head", cache=False)       # 20 per class
    keep = torch.cat([torch.nonzero(f.y == 0).flatten()[:10], torch.nonzero(f.y == 1).flatten()])
    f = f.subset(keep)                                                    # 10 of class 0, 20 of class 1
    a, b = f.sample(9, seed=1), f.sample(21, seed=1)
    assert a.y.bincount().tolist() == [3, 6] and b.y.bincount().tolist() == [7, 14]
    rows = {tuple(r.tolist()) for r in b.x}
    assert all(tuple(r.tolist()) in rows for r in a.x)                    # nested for one seed
    assert not torch.equal(f.sample(9, seed=2).x, a.x)
    assert f.sample(2, seed=0).y.bincount().tolist() == [1, 1]         # every class keeps one
    with pytest.raises(ft.FtlabError, match="Cannot draw 31 of 30"):
        f.sample(31)


def test_draws_vary_per_seed_and_take_from_the_extracted_pool(small):
    model, L = small
    data = L.train.dataset                                                # 20 cells of each class
    draws = ft.lab.Draws(data, [4, 10], seeds=[0, 1, 2])
    assert all(len(draws.index[10, s]) == 10 and set(draws.index[4, s]) <= set(draws.index[10, s]) for s in draws.seeds)
    assert len({tuple(draws.index[10, s]) for s in draws.seeds}) == 3     # each seed its own training set
    assert sorted(set().union(*(draws.index[10, s].tolist() for s in draws.seeds))) == draws.positions.tolist()
    assert len(draws.pool) == len(draws.positions) < len(data)
    pooled = ft.extract(model, torch.utils.data.DataLoader(draws.pool, batch_size=8), cut="head", cache=False)
    whole = ft.extract(model, torch.utils.data.DataLoader(data, batch_size=8), cut="head", cache=False)
    for s in draws.seeds:                                                 # the same cells as drawing from the whole split
        got, want = draws.take(pooled, 10, s), whole.subset(draws.index[10, s])
        # other batch neighbours, other float rounding (up to ~2e-5 on values up to 6 at one thread): equal to 1e-4
        assert torch.allclose(got.x, want.x, atol=1e-4) and torch.equal(got.y, want.y) and got.y.bincount().tolist() == [5, 5]
    low, high = draws.shared(10)
    assert 0 <= low <= high < 10
    with pytest.raises(ft.FtlabError, match="No draw of 7"):
        draws.take(pooled, 7, 0)
    with pytest.raises(ft.FtlabError, match="extract them from Draws.pool"):
        draws.take(whole, 10, 0)
    with pytest.raises(ft.FtlabError, match="Cannot draw 41 of 40"):
        ft.lab.Draws(data, [41], seeds=[0])


def test_model_facts_and_speed():
    rows = model_facts(["efficientnet_lite0", "efficientnet_lite2"], image_size=64, repeats=1)
    lite0, lite2 = rows
    assert (lite0["params"], lite2["params"]) == (4_652_008, 6_092_072)
    assert (lite0["native_size"], lite2["native_size"]) == (224, 260)
    assert lite0["imagenet_top1"] == 0.751 and 15 < lite0["weights_mb"] < 25
    assert all(r["images_per_s"] > 0 and r["images_per_s_native"] > 0 for r in rows)
    # exact counts (a multiply-add is 2): Lite0 at 224 px is 0.385 G multiply-adds
    assert lite0["gflops_native"] == pytest.approx(0.770, abs=0.001) and lite2["gflops_native"] == pytest.approx(1.719, abs=0.001)
    assert lite0["gflops"] == pytest.approx(lite0["gflops_native"] * (64 / 224) ** 2, rel=0.05)
    with pytest.raises(ft.FtlabError, match="at least 1"):
        images_per_second(ft.vision.pretrained(), 64, repeats=0)


def test_tradeoff_figure():
    fig = ft.plot.tradeoff({"a": (100.0, [0.8, 0.82]), "b": (30.0, [0.85])})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_legend().get_texts()) == 2
    many = ft.plot.tradeoff({f"setting {i}": (10.0 + i, [0.7 + i / 100]) for i in range(12)})   # lesson 08 draws 12
    styles = {(c.lines[0].get_color(), c.lines[0].get_marker()) for c in many.axes[0].containers}
    assert len(styles) == 12                                   # no two settings look alike once the palette repeats
    with pytest.raises(ft.FtlabError, match="at least one value"):
        ft.plot.tradeoff({"a": (1.0, [])})


def test_step_seconds_times_side_by_side_and_leaves_the_models_as_they_were(small):
    model, L = small                                         # blocks.6 and up train; BatchNorm keeps statistics
    head_only = ft.vision.pretrained(num_classes=2)
    ft.train_top(head_only, 1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = next(iter(L.train))
    rng = torch.get_rng_state()
    took = ft.lab.step_seconds({"from blocks.6": model, "head": head_only}, (x, y), repeats=2, device="cpu")
    assert set(took) == {"from blocks.6", "head"} and all(t > 0 for t in took.values())
    assert torch.equal(torch.get_rng_state(), rng)                        # dropout drew from a forked generator
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # running statistics too
    frozen = ft.vision.pretrained(num_classes=2)
    ft.freeze(frozen)
    with pytest.raises(ft.FtlabError, match="nothing trainable"):
        ft.lab.step_seconds({"frozen": frozen}, (x, y), repeats=1)
