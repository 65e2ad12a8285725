"""The API a student reads: a short top level, and the same verbs with the same parameters in every modality."""
import inspect

import pytest

import ftlab as ft
from ftlab import splits as splits_module

MODALITIES = {"vision": ft.vision, "text": ft.text, "detection": ft.detection}
PREDICT = {"vision": "predict_images", "text": "predict_texts", "detection": "predict_boxes"}


def _params(f):
    return list(inspect.signature(f).parameters.values())


def test_the_top_level_holds_the_five_steps_in_at_most_45_names():
    assert len(ft.__all__) <= 45
    for name in ("freeze_to", "train_top", "param_groups", "fit", "evaluate", "predict", "extract", "fit_cached",
                 "save_checkpoint", "load_checkpoint", "seed_everything", "UsageError"):
        assert name in ft.__all__, name
    assert not {"pretrained", "loaders", "elpv", "spread", "batches", "files", "tables", "errors"} & set(ft.__all__)


@pytest.mark.parametrize("modality", MODALITIES)
def test_pretrained_reads_the_same_in_every_modality(modality):
    first = [(p.name, p.default) for p in _params(MODALITIES[modality].pretrained)[:3]]
    assert first == [("name", None), ("num_classes", None), ("weights", "pretrained")]


@pytest.mark.parametrize("modality", MODALITIES)
def test_loaders_read_the_same_in_every_modality(modality):
    params = _params(MODALITIES[modality].loaders)
    assert [p.name for p in params[:2]] == ["splits", "model"] and params[1].default is None
    defaults = {p.name: p.default for p in params}
    assert {k: defaults.get(k, "missing") for k in ("augment", "subset", "eval_subset", "seed", "num_workers")} == \
        {"augment": "none", "subset": None, "eval_subset": None, "seed": 0, "num_workers": 0}
    assert isinstance(defaults["batch_size"], int)


@pytest.mark.parametrize("modality", MODALITIES)
def test_evaluate_and_the_raw_input_predict_read_the_same(modality):
    mod = MODALITIES[modality]
    ev = {p.name: p.default for p in _params(mod.evaluate)}
    assert list(ev)[:2] == ["model", "data"] and ev["device"] == "auto" and isinstance(ev["batch_size"], int)
    assert mod.METRIC in {"acc", "map_50"}
    pr = _params(getattr(mod, PREDICT[modality]))
    assert pr[0].name == "model" and pr[1].name in ("images", "texts")
    assert {p.name: p.default for p in pr}["device"] == "auto" and "batch_size" in {p.name for p in pr}


def test_one_registry_of_data_sets_by_name():
    assert {name: m for name, (m, _) in splits_module.DATASETS.items()}.items() >= {
        "elpv": "vision", "rotten_tomatoes": "text", "tree_crowns": "detection"}.items()
    with pytest.raises(ft.DataError, match="Unknown text data set 'elpv'.*rotten_tomatoes"):
        ft.text.dataset("elpv")
    with pytest.raises(ft.DataError, match="Did you mean tree_crowns"):
        ft.detection.dataset("tree_crown")
    assert ft.vision.AUGMENTATIONS == ft.detection.AUGMENTATIONS == ("none", "light", "strong")


def test_evaluate_gives_loss_the_primary_metric_and_n(elpv2, small_bert):
    model = ft.vision.pretrained(num_classes=2)
    L = ft.vision.loaders(elpv2, model, image_size=32, subset=4, eval_subset=4, seed=0)
    for data in (L.test, L.test.dataset, ft.extract(model, L.test, cut="head", cache=False)):
        assert set(ft.vision.evaluate(model, data, device="cpu")) == {"loss", ft.vision.METRIC, "n"}
    T = ft.text.loaders(ft.text.rotten_tomatoes(), small_bert, max_length=16, subset=4, eval_subset=4, seed=0)
    small_bert.ftlab_name = "minilm"                        # its vocabulary is MiniLM's
    for data in (T.test, T.test.dataset.data):
        out = ft.text.evaluate(small_bert, data, device="cpu")
        assert set(out) == {"loss", ft.text.METRIC, "n"} and out["n"] == 8


def test_models_and_predictions_from_raw_inputs(small_bert):
    import numpy as np

    small_bert.ftlab_name = "minilm"
    out = ft.text.predict_texts(small_bert, ["a fine film", "a dull one"], classes=["rotten", "fresh"])
    assert out["probs"].shape == (2, 2) and set(out["names"]) <= {"rotten", "fresh"}
    model = ft.vision.pretrained(num_classes=3)
    pics = [np.zeros((40, 50, 3), np.uint8), np.full((20, 20, 3), 200, np.uint8)]
    out = ft.vision.predict_images(model, pics, classes=["a", "b", "c"], image_size=32, batch_size=1)
    assert out["probs"].shape == (2, 3) and len(out["names"]) == 2
    with pytest.raises(ft.UsageError, match="no classifier of its own: pass num_classes"):
        ft.text.pretrained()
