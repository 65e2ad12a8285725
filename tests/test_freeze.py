import pytest
import torch
import torchvision
from tiny import Tiny, tiny_loaders

import ftlab as ft


def grads(model):
    return {n: p.requires_grad for n, p in model.named_parameters()}


def test_groups_of_the_default_backbone(lite0):
    names = [g.name for g in ft.layer_groups(lite0)]
    assert names == ["stem", *[f"blocks.{i}" for i in range(7)], "final_conv", "head"]


@pytest.mark.parametrize("build,first,last", [
    (torchvision.models.resnet18, "stem", "head"),
    (torchvision.models.mobilenet_v2, "features.0", "head"),
    (torchvision.models.mobilenet_v3_small, "features.0", "head"),
])
def test_groups_of_torchvision_models_cover_every_parameter(build, first, last):
    model = build()
    groups = ft.layer_groups(model)
    assert groups[0].name == first and groups[-1].name == last
    assert sum(p.numel() for g in groups for p in g.parameters()) == sum(p.numel() for p in model.parameters())


def test_generic_fallback_uses_top_level_children():
    assert [g.name for g in ft.layer_groups(Tiny())] == ["stem", "body", "head"]


def test_freeze_and_freeze_to():
    m = Tiny()
    ft.freeze(m)
    assert not any(grads(m).values())
    ft.freeze_to(m, -1)
    assert {n for n, g in grads(m).items() if g} == {"head.weight", "head.bias"}
    ft.freeze_to(m, 1)
    assert not m.stem[0].weight.requires_grad and m.body[0].weight.requires_grad and m.head.weight.requires_grad
    ft.freeze_to(m, 0)
    assert all(grads(m).values())
    ft.freeze([m.stem, m.body])
    assert {n for n, g in grads(m).items() if g} == {"head.weight", "head.bias"}
    with pytest.raises(ft.FtlabError, match="3 layer groups"):
        ft.freeze_to(m, 5)
    ft.freeze_to(m, 3)                     # len(groups): everything frozen
    assert not any(grads(m).values())
    ft.freeze_to(m, "body")
    assert not m.stem[0].weight.requires_grad and m.body[0].weight.requires_grad


def test_train_top_counts_the_head_as_one_group(lite0):
    m = Tiny()
    for k, trainable in ((0, set()), (1, {"head"}), (2, {"body", "head"}), (3, {"stem", "body", "head"})):
        ft.train_top(m, k)
        assert {n.split(".")[0] for n, g in grads(m).items() if g} == trainable, k
    big = ft.vision.pretrained(num_classes=2)
    ft.train_top(big, 3)
    assert [r["group"] for r in ft.trainable_summary(big).rows if r["trainable"]] == ["blocks.6", "final_conv", "head"]
    ft.freeze_to(big, -3)                  # fastai's spelling of the same cut
    assert [r["group"] for r in ft.trainable_summary(big).rows if r["trainable"]] == ["blocks.6", "final_conv", "head"]
    with pytest.raises(ValueError, match="0..3 for this Tiny"):
        ft.train_top(m, 4)


def test_one_resolver_for_indices_names_and_globs(lite0):
    assert ft.groups.resolve_groups(lite0, ["final_conv", -1]) == [8, 9]
    assert ft.groups.resolve_groups(lite0, "blocks.*") == list(range(1, 8))
    assert ft.groups.resolve_groups(lite0, 0) == [0]
    for bad in (10, -11, "block.6", "blocks.9*"):
        with pytest.raises(ft.UsageError, match=r"10 layer groups \(0..9\): stem, blocks.0"):
            ft.groups.resolve_groups(lite0, bad)
    with pytest.raises(ValueError, match="10 layer groups"):       # the same message from every helper
        ft.freeze_to(lite0, "blocks.9")
    with pytest.raises(ValueError, match="10 layer groups"):
        ft.extract(lite0, [], cut="nope")


def test_eval_mode_restores_every_module_and_the_bn_policy():
    m = Tiny()
    ft.freeze_to(m, -1)
    ft.train_mode(m)
    before = [x.training for x in m.modules()]
    assert not m.stem[1].training and m.head.training
    with ft.eval_mode(m):
        assert not any(x.training for x in m.modules())
    assert [x.training for x in m.modules()] == before
    with pytest.raises(RuntimeError), ft.eval_mode(m):
        raise RuntimeError("restored on errors too")
    assert [x.training for x in m.modules()] == before


def test_timm_group_matcher_fallback_for_models_missing_from_the_table():
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    saved = ft.groups.ARCHITECTURES.pop("timm.ResNet")
    try:
        names = ft.group_names(model)
    finally:
        ft.groups.ARCHITECTURES["timm.ResNet"] = saved
    assert names == ["conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_unfreeze_by_index_name_and_glob(lite0):
    m = Tiny()
    ft.freeze(m)
    ft.unfreeze(m, "body")
    assert m.body[0].weight.requires_grad and not m.head.weight.requires_grad
    ft.freeze(m)
    ft.unfreeze(m, [0, -1])
    assert m.stem[0].weight.requires_grad and m.head.bias.requires_grad and not m.body[0].weight.requires_grad
    big = ft.vision.pretrained(num_classes=2)
    ft.freeze(big)
    ft.unfreeze(big, "blocks.[56]")
    assert ft.trainable_count(big) == sum(p.numel() for p in [*big.blocks[5].parameters(), *big.blocks[6].parameters()])
    with pytest.raises(ft.FtlabError, match=r"groups \(0..9\): stem, blocks.0"):
        ft.unfreeze(big, "block.6")
    with pytest.raises(ft.FtlabError, match="out of range"):
        ft.unfreeze(m, 7)


def test_bn_policy_frozen_puts_frozen_bn_in_eval_after_train_mode():
    m = Tiny()
    ft.freeze_to(m, -1)
    m.train()                     # plain train() puts every BN back in training mode ...
    assert m.stem[1].training
    ft.train_mode(m)              # ... the helper re-applies the policy
    assert not m.stem[1].training and not m.body[1].training and m.head.training
    assert m.stem[1].track_running_stats and m.body[1].track_running_stats
    assert not m.stem[1].weight.requires_grad


def test_bn_policy_train_keeps_bn_trainable():
    m = Tiny()
    ft.freeze_to(m, -1, bn="train")
    ft.train_mode(m)
    assert m.stem[1].training and m.stem[1].weight.requires_grad and not m.stem[0].weight.requires_grad
    with pytest.raises(ft.FtlabError, match="BatchNorm policy"):
        ft.freeze(m, bn="eval")


def test_trainable_summary_text_and_html():
    m = Tiny()
    ft.freeze_to(m, -1)
    s = ft.trainable_summary(m)
    assert [r["group"] for r in s.rows] == ["stem", "body", "head"]
    assert s.rows[0]["bn"] == "frozen" and s.rows[2]["bn"] == "-"
    assert s.trainable == 18 and s.total == sum(p.numel() for p in m.parameters())
    assert "18" in str(s) and "<table>" in s._repr_html_()
    ft.freeze_to(m, 0)
    assert ft.trainable_summary(m).rows[0]["bn"] == "train"


def test_param_groups_geometric_rates_and_no_decay_on_norms_and_biases():
    m = Tiny()
    groups = ft.param_groups(m, lr=(1e-4, 1e-2), weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert by_name["stem"]["lr"] == pytest.approx(1e-4)
    assert by_name["body"]["lr"] == pytest.approx(1e-3)
    assert by_name["head"]["lr"] == pytest.approx(1e-2)
    assert by_name["stem"]["params"] == [m.stem[0].weight] and by_name["stem"]["weight_decay"] == 0.05
    assert set(map(id, by_name["stem/no_decay"]["params"])) == {id(m.stem[0].bias), id(m.stem[1].weight), id(m.stem[1].bias)}
    assert by_name["stem/no_decay"]["weight_decay"] == 0.0
    ft.freeze_to(m, 1)
    groups = ft.param_groups(m, lr=1e-2, lr_mult=100)
    assert [(g["name"], g["lr"]) for g in groups] == [("body", pytest.approx(1e-4)), ("body/no_decay", pytest.approx(1e-4)),
                                                      ("head", pytest.approx(1e-2)), ("head/no_decay", pytest.approx(1e-2))]
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    torch.optim.SGD(groups)       # usable by any torch optimizer as it is
    ft.freeze(m)
    with pytest.raises(ValueError, match="Nothing in this Tiny is trainable"):
        ft.param_groups(m, 1e-3)


def test_frozen_parameters_and_bn_buffers_are_bit_identical_after_training():
    m = Tiny()
    ft.freeze_to(m, -1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ft.fit(m, tiny_loaders(), epochs=1, lr=1e-2, progress=False, seed=0, restore_best=False)
    after = m.state_dict()
    for k in before:
        if k.startswith("head."):
            assert not torch.equal(before[k], after[k]), k
        else:
            assert torch.equal(before[k], after[k]), k      # weights, running_mean/var, num_batches_tracked


def test_frozen_bn_left_in_train_mode_drifts():
    """The trap the policy prevents: BN statistics move even though no parameter trains."""
    m = Tiny()
    ft.freeze(m)
    mean = m.stem[1].running_mean.clone()
    m.train()
    m(torch.randn(8, 3, 8, 8) + 3)
    assert not torch.equal(mean, m.stem[1].running_mean)
