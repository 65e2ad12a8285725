"""Bad input to text, detection, checkpoints and the lesson runner: a clear ftlab error that names the
input and the fix, no silent wrong answer, nothing trained thrown away."""
import json
import pickle

import nbformat
import numpy as np
import pytest
import torch

import ftlab as ft
from ftlab.detection import data as det_data
from ftlab.detection import models as det_models
from ftlab.lab import lessons, sweep


@pytest.fixture(scope="module")
def tok():
    return ft.text.tokenizer()


TEXTS = [f"{w} snippet number {i}" for i in range(8) for w in ("baking", "cooking", "roasting")]
LABELS = ["baking", "cooking", "roasting"] * 8


# 1. a label that is not one of the classes
def test_a_label_name_not_in_classes_is_named_with_a_suggestion():
    labels = list(LABELS)
    labels[4] = "cookin"
    with pytest.raises(ft.DataError, match=r"Label 4 is 'cookin'.*did you mean 'cooking'"):
        ft.text.texts_to_splits(TEXTS, labels, classes=["baking", "cooking", "roasting"])
    with pytest.raises(ft.DataError, match="not a class index 0..1"):
        ft.text.texts_to_splits(TEXTS, [0, 1, 2] * 8, classes=["a", "b"])
    with pytest.raises(ft.DataError, match="all class names or all class indices"):
        ft.text.texts_to_splits(TEXTS, ["baking", 1, 2] * 8)
    with pytest.raises(ft.DataError, match="whole numbers"):
        ft.text.texts_to_splits(TEXTS, [0.5, 1, 2] * 8)
    with pytest.raises(ft.DataError, match="names a class twice"):
        ft.text.texts_to_splits(TEXTS, LABELS, classes=["baking", "cooking", "cooking"])
    with pytest.raises(ft.DataError, match="Cannot hold out 20% of 9 items with all 3 classes"):
        ft.text.texts_to_splits(TEXTS[:9], LABELS[:9])
    splits = ft.text.texts_to_splits(TEXTS, LABELS, classes=["baking", "cooking", "roasting"])
    assert splits.classes == ["baking", "cooking", "roasting"]
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == 24


# 2. longer than the model reads
def test_max_length_beyond_the_model_limit_is_refused(tok, small_bert):
    splits = ft.text.texts_to_splits(TEXTS, LABELS)
    with pytest.raises(ft.UsageError, match="max_length=1024 is longer than this model reads: 512"):
        ft.text.loaders(splits, tok, max_length=1024)
    ids = torch.ones(1, 200, dtype=torch.long)
    with pytest.raises(ft.UsageError, match="200 tokens is longer than this model reads \\(128 positions\\)"):
        small_bert(input_ids=ids)
    with pytest.raises(ft.UsageError, match="max_length must be"):
        ft.text.predict_texts(small_bert, ["fine"], max_length=1024, tokenizer=tok)


# 3. text decoded with errors="surrogateescape"
def test_lone_surrogates_are_refused_where_the_text_enters(tok, small_bert):
    bad = b"caf\xe9 au lait".decode("utf-8", errors="surrogateescape")
    with pytest.raises(ft.DataError, match=r"Text 1 holds .* not valid UTF-8.*encoding='latin-1'"):
        ft.text.TextSet(["fine", bad], [0, 1], ["a", "b"])
    with pytest.raises(ft.DataError, match="not valid UTF-8"):
        ft.text.texts_to_splits([*TEXTS[:-1], bad], LABELS)
    with pytest.raises(ft.DataError, match="not valid UTF-8"):
        ft.text.predict_texts(small_bert, ["fine", bad], tokenizer=tok)
    with pytest.raises(ft.DataError, match="wrap it as"):
        ft.text.similarities(small_bert, tok, "one string")
    out = ft.text.predict_texts(small_bert, ["a fine film", "a dull one"], classes=["rotten", "fresh"], tokenizer=tok)
    assert out["probs"].shape == (2, 2) and set(out["names"]) <= {"rotten", "fresh"}


# 4. add_lora run again
def test_add_lora_twice_keeps_the_trained_adapters(small_bert):
    m = ft.text.add_lora(small_bert, r=4)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)                                # "trained"
    before = {n: p.detach().clone() for n, p in m.named_parameters() if "lora_" in n}
    assert len(before) == 8
    with pytest.raises(ft.UsageError, match=r"LoRA adapters already \(8 tensors, made by ft.text.add_lora\(model, r=4"):
        ft.text.add_lora(m, r=4)
    after = {n: p for n, p in m.named_parameters() if "lora_" in n}
    assert after.keys() == before.keys() and all(torch.equal(after[n], before[n]) for n in before)


# 5. a LoRA checkpoint
def test_a_lora_checkpoint_rebuilds_its_adapters_or_says_how(tmp_path):
    m = ft.text.add_lora(ft.text.pretrained(num_classes=2, weights=None), r=4, alpha=8)
    with torch.no_grad():
        m.bert.encoder.layer[0].attention.self.query.lora_B["default"].weight.fill_(0.25)
    path = ft.save_checkpoint(tmp_path / "lora.pt", m, classes=["rotten", "fresh"])
    loaded = ft.load_checkpoint(path)["model"]
    assert loaded.ftlab_adapters == {"lora": {"r": 4, "alpha": 8, "dropout": 0.1, "targets": ["query", "value"]}}
    assert torch.equal(loaded.state_dict()[next(k for k in m.state_dict() if "lora_B" in k)],
                       m.state_dict()[next(k for k in m.state_dict() if "lora_B" in k)])
    assert ft.trainable_count(loaded) == ft.trainable_count(m)
    with pytest.raises(ft.UsageError, match=r"LoRA|lora.*ft.text.add_lora\(model, r=4, alpha=8"):
        ft.load_checkpoint(path, ft.text.pretrained(num_classes=2, weights=None))
    plain = ft.save_checkpoint(tmp_path / "plain.pt", ft.text.pretrained(num_classes=2, weights=None))
    with pytest.raises(ft.UsageError, match="holds a model with no adapters"):
        ft.load_checkpoint(plain, ft.text.add_lora(ft.text.pretrained(num_classes=2, weights=None)))


# 6. a detector's class names
def test_a_rebuilt_detector_keeps_its_class_names(tmp_path):
    model = det_models._new_head(ft.detection.pretrained(weights=None), 2, ["Tree", "Snag"])
    path = ft.save_checkpoint(tmp_path / "det.pt", model)
    loaded = ft.load_checkpoint(path)["model"]
    assert loaded.class_names == ["Tree", "Snag"]
    photo = np.full((64, 64, 3), 128, np.uint8)
    assert all(n in ("Tree", "Snag") for n in ft.detection.predict_boxes(loaded, photo, conf=0.0)[0]["names"])


# 7. an interrupted download
def test_weights_cut_inside_a_number_are_a_clear_error(tmp_path):
    path = tmp_path / "cut.weights"
    path.write_bytes(np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes() + b"\0" * 7)
    model = ft.detection.pretrained(weights=None)
    with pytest.raises(ft.WeightsUnavailable, match="ends in the middle of a number.*truncated"):
        ft.detection.read_darknet(model, path)
    with pytest.raises(ft.UsageError, match="loads into a YOLOv3Tiny"):
        ft.detection.read_darknet(torch.nn.Linear(2, 2), path)


# 8. 16-bit and other photos that are not 8-bit RGB
def test_photos_that_are_not_8_bit_are_refused_not_guessed():
    from PIL import Image
    from skimage import data

    model = ft.detection.pretrained(weights=None)
    coffee = data.coffee()
    with pytest.raises(ft.DataError, match=r"uint16 image \(values up to 65535\).*will not guess"):
        ft.detection.predict_boxes(model, coffee.astype(np.uint16) * 257)
    with pytest.raises(ft.DataError, match="mode 'I;16'"):
        ft.detection.predict_boxes(model, Image.fromarray(coffee[..., 0].astype(np.uint16) * 257))
    with pytest.raises(ft.DataError, match="floats from 0 to 255"):
        ft.detection.predict_boxes(model, coffee.astype(np.float32))
    with pytest.raises(ft.DataError, match="channels-first"):
        ft.detection.predict_boxes(model, coffee.transpose(2, 0, 1))
    with pytest.raises(ft.DataError, match="photo 1 is empty"):
        ft.detection.predict_boxes(model, [coffee, np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(ft.UsageError, match="conf is a lowest score"):
        ft.detection.predict_boxes(model, coffee, conf=25)
    with pytest.raises(ft.UsageError, match="needs a detector"):
        ft.detection.predict_boxes(torch.nn.Linear(2, 2), coffee)
    grey = ft.detection.as_photo(coffee[..., 0])
    assert grey.shape == (3, *coffee.shape[:2]) and torch.equal(grey[0], grey[2])
    assert torch.equal(ft.detection.as_photo(coffee), ft.detection.as_photo(Image.fromarray(coffee)))


def test_detection_sets_and_tiles_check_boxes_against_labels_and_classes():
    image = torch.rand(3, 64, 64)
    with pytest.raises(ft.DataError, match="2 boxes but 1 labels"):
        ft.detection.tile_image(image, np.zeros((2, 4)), np.zeros(1), tile=32)
    with pytest.raises(ft.DataError, match="uint16"):
        ft.detection.tile_image(torch.zeros(3, 64, 64, dtype=torch.int32).to(torch.uint16), np.zeros((0, 4)), [], 32)
    assert len(ft.detection.tile_image(image, np.array([[1, 1, 9, 9]]), np.array([0]), tile=32)) == 4
    with pytest.raises(ft.DataError, match="label 3, not a class index"):
        ft.detection.DetectionSet([image], [np.array([[1, 1, 9, 9]], np.float32)], [np.array([3])], ["Tree"],
                                  ["a"], [(0, 0)])
    with pytest.raises(ft.DataError, match="2 boxes but 1 labels"):
        ft.detection.DetectionSet([image], [np.zeros((2, 4), np.float32)], [np.array([0])], ["Tree"], ["a"], [(0, 0)])


def test_missing_tree_photos_are_a_data_error(monkeypatch):
    det_data._tiles.cache_clear()
    monkeypatch.setattr(det_data, "package_path", lambda *a: None)
    with pytest.raises(ft.DataError, match="NEON tree-crown photos are not installed.*deepforest"):
        ft.detection.tree_crowns()
    det_data._tiles.cache_clear()


# 9. lesson and sweep parameters of the wrong type
def test_lesson_parameters_are_checked_against_the_parameters_cell_before_a_kernel_starts(tmp_path):
    paths = lessons.lesson_paths(["02"])
    with pytest.raises(ft.UsageError, match=r"Parameter EPOCHS of 02_head_only must be a whole number.*got 'abc'"):
        lessons.run_lessons(tmp_path / "run", paths, {"EPOCHS": "abc"})
    assert not (tmp_path / "run").exists()                # nothing started, no half-executed copy
    for bad in ({"EPOCHS": 2.5}, {"EPOCHS": True}, {"LR": "fast"}, {"DATASET": 3}):
        with pytest.raises(ft.UsageError, match=f"Parameter {next(iter(bad))} of 02_head_only"):
            lessons.check_parameters(paths[0], bad)
    ok = {"EPOCHS": 2, "LR": 1, "SUBSET": None, "DEVICE": "cpu", "OUT_DIR": "x"}
    assert lessons.check_parameters(paths[0], ok) == ok
    assert lessons.check_parameters(paths[0], {"SUBSET": 40}) == {"SUBSET": 40}     # images per class
    with pytest.raises(ft.UsageError, match="no parameter"):
        lessons.check_parameters(paths[0], {"EPOCH": 2})


def test_cli_names_the_parameter_and_its_type(capsys, tmp_path):
    from ftlab.lab import cli

    assert cli.main(["lessons", "--only", "02", "-p", "EPOCHS", "abc", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "EPOCHS" in err and "whole number" in err and "default is 3" in err
    assert not (tmp_path / "r").exists()
    assert cli.main(["lessons", "--only", "02", "--jobs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--jobs must be a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_sweep_checks_every_grid_point_first(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("EPOCHS = 3\nRATE = 0.1\nOUT_DIR = None", metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "grid.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ft.UsageError, match=r"Parameter EPOCHS of grid must be a whole number.*got '2x'"):
        sweep.run_sweep(path, {"EPOCHS": [1, "2x"], "RATE": [0.1]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# checkpoints load without unpickling arbitrary objects
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))               # would create the marker file on load


def test_a_checkpoint_that_unpickles_objects_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "ftlab-checkpoint-1", "payload": _Evil(str(marker))}, path)
    with pytest.raises(ft.UsageError, match="unpickling those can run any code.*trusted=True"):
        ft.load_checkpoint(path)
    assert not marker.exists()
    with open(tmp_path / "junk.pt", "wb") as f:
        pickle.dump([1, 2], f, protocol=0)
        f.write(b"garbage")
    with pytest.raises(ft.UsageError, match="not a readable checkpoint|not an ftlab checkpoint"):
        ft.load_checkpoint(tmp_path / "junk.pt")


def test_ftlab_checkpoints_hold_plain_values_only(tmp_path):
    from tiny import Tiny, tiny_loaders

    model = Tiny()
    train, val = tiny_loaders()
    history = ft.fit(model, (train, val), epochs=1, lr=0.1, optimizer="sgd", progress=False, seed=0)
    history.meta["optimizer"] = torch.optim.SGD                 # objects a user may keep in a history
    history.rows[0]["val_acc"] = np.float64(history.rows[0]["val_acc"])
    path = ft.save_checkpoint(tmp_path / "t.pt", model, history=history)
    raw = torch.load(path, weights_only=True)                  # what load_checkpoint reads: no objects inside
    assert raw["history"]["meta"]["optimizer"] == "torch.optim.sgd.SGD"
    json.dumps(raw["history"]["rows"])
    loaded = ft.load_checkpoint(path, Tiny())
    assert torch.equal(loaded["model"].head.weight, model.head.weight)


def test_a_device_this_machine_lacks_is_a_clear_error():
    """DEVICE='cuda' on a machine without a GPU says so and what to use, instead of torch's assertion deep inside."""
    import torch

    assert ft.batches.resolve_device("cpu") == torch.device("cpu")
    assert ft.batches.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ft.UsageError, match="not a device: use 'auto'"):
        ft.batches.resolve_device("gpu")
    with pytest.raises(ft.UsageError, match="runs on 'cpu', 'cuda' or 'mps'"):
        ft.batches.resolve_device("xla")
    if not torch.cuda.is_available():
        with pytest.raises(ft.UsageError, match="no CUDA GPU.*DEVICE='auto'"):
            ft.batches.resolve_device("cuda")
    with pytest.raises(ft.UsageError, match="cuda:99"):
        ft.batches.resolve_device("cuda:99")
