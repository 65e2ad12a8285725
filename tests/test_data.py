import numpy as np
import pytest
import torch
from PIL import Image

import ftlab as ft

CFG = {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
       "interpolation": "bicubic", "crop_pct": 0.875}


def test_elpv_counts_and_split_sizes(elpv2):
    assert len(elpv2.train) + len(elpv2.val) == 1968
    assert len(elpv2.test) == 656
    total = {c: sum(elpv2.counts()[s][c] for s in ("train", "val", "test")) for c in elpv2.classes}
    assert total == {"functional": 1803, "defective": 821}
    assert elpv2.train.images.dtype == torch.uint8
    assert tuple(elpv2.train.images.shape[1:]) == (1, 300, 300)
    assert "functional" in repr(elpv2) and "656" in repr(elpv2)


def test_elpv_four_classes_share_the_split(elpv2):
    four = ft.vision.elpv(classes=4)
    total = {c: sum(four.counts()[s][c] for s in ("train", "val", "test")) for c in four.classes}
    assert total == {"p=0": 1508, "p=1/3": 295, "p=2/3": 106, "p=1": 715}
    assert torch.equal(four.test.images, elpv2.test.images)
    assert torch.equal(four.test.targets >= 2, elpv2.test.targets.bool())


def test_elpv_split_is_deterministic_and_stratified(elpv2):
    again = ft.vision.elpv(classes=2)
    assert torch.equal(again.val.images, elpv2.val.images)
    other = ft.vision.elpv(classes=2, seed=1)
    assert torch.equal(other.test.images, elpv2.test.images)       # test split is fixed
    assert not torch.equal(other.val.images, elpv2.val.images)     # val follows the seed
    test_share = elpv2.test.targets.float().mean().item()
    train_share = elpv2.train.targets.float().mean().item()
    assert abs(test_share - train_share) < 0.01
    mono = lambda s: sum(g == "mono" for g in s.groups) / len(s)  # noqa: E731
    assert abs(mono(elpv2.test) - mono(elpv2.train)) < 0.01


@pytest.mark.parametrize("bad", [3, 0, "2"])
def test_elpv_rejects_other_class_counts(bad):
    with pytest.raises(ft.DataError, match="2 or 4 classes"):
        ft.vision.elpv(classes=bad)


def test_unknown_dataset_name():
    with pytest.raises(ft.DataError, match="Did you mean elpv"):
        ft.vision.dataset("elvp")


@pytest.mark.parametrize("augment", ["none", "light", "strong"])
def test_transform_shapes_dtypes_and_ranges(elpv2, augment):
    aug, pre = ft.vision.augmentation(augment, 300), ft.vision.preprocess(CFG, image_size=64)       # two stages, kept apart
    assert (aug is None) == (augment == "none")
    x = pre(aug(elpv2.train.images[0]) if aug else elpv2.train.images[0])
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_light_augmentation_only_moves_pixels(elpv2):
    img = elpv2.train.images[3]
    aug = ft.vision.augmentation("light", 300)
    torch.manual_seed(0)
    ops = [t for t in aug.transforms if not isinstance(t, ft.vision.transforms.RandomShift)]  # flips + rot90, no shift
    for _ in range(8):
        out = img
        for op in ops:
            out = op(out)
        assert torch.equal(out.flatten().sort().values, img.flatten().sort().values)


def test_unknown_augmentation_preset():
    with pytest.raises(ft.FtlabError, match="light"):
        ft.vision.augmentation("medium", 64)


def test_loaders_are_seeded_and_subsets_stratified(elpv2):
    a = ft.vision.loaders(elpv2, CFG, image_size=32, subset=20, seed=3, augment="light")
    b = ft.vision.loaders(elpv2, CFG, image_size=32, subset=20, seed=3, augment="light")
    assert len(a.train.dataset) == 40 and a.train.dataset.counts() == {"functional": 20, "defective": 20}
    torch.manual_seed(0)
    xa, ya = next(iter(a.train))
    torch.manual_seed(0)
    xb, yb = next(iter(b.train))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    frac = ft.vision.loaders(elpv2, CFG, image_size=32, subset=0.1)
    assert frac.train.dataset.counts() == {"functional": 122, "defective": 55}
    assert a.classes == ["functional", "defective"] and a.config["image_size"] == 32


def test_loaders_keep_augmentation_and_preprocessing_apart(elpv2):
    L = ft.vision.loaders(elpv2, CFG, image_size=32, subset=5, augment="light")
    assert L.train.dataset.augment is not None and L.val.dataset.augment is None
    assert L.train.dataset.transform is L.train.dataset.without_augmentation().transform
    assert L.train.dataset.without_augmentation().augment is None


@pytest.mark.parametrize("bad", [-5, 0, 2.5, "224"])
def test_bad_image_size_is_a_clear_error(elpv2, bad):
    with pytest.raises(ValueError, match="image_size must be a whole number of at least 1.*pixels"):
        ft.vision.loaders(elpv2, CFG, image_size=bad)


@pytest.mark.parametrize("subset,match", [(10_000, "more than"), (1.5, "fraction"), ("all", "int")])
def test_subset_larger_than_data(elpv2, subset, match):
    with pytest.raises(ft.DataError, match=match):
        ft.vision.loaders(elpv2, CFG, image_size=32, subset=subset)


def _tree(root, spec):
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.full((40 + i, 50, 3), (i * 20) % 255, dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")


def test_image_folder_split_and_size(tmp_path, tmp_cache):
    _tree(tmp_path / "bugs", {"ants": 10, "bees": 10})
    splits = ft.vision.image_folder(tmp_path / "bugs", size=32)
    assert splits.classes == ["ants", "bees"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 20
    assert tuple(splits.train.images.shape[1:]) == (3, 32, 32)
    assert ft.vision.dataset(str(tmp_path / "bugs"), size=32).counts() == splits.counts()


def test_image_folder_respects_given_splits(tmp_path, tmp_cache):
    _tree(tmp_path / "h" / "train", {"ants": 6, "bees": 6})
    _tree(tmp_path / "h" / "val", {"ants": 2, "bees": 3})
    splits = ft.vision.image_folder(tmp_path / "h", size=16)
    assert splits.val.counts() == {"ants": 2, "bees": 3}
    assert len(splits.train) + len(splits.test) == 12


def test_image_folder_skips_corrupt_files_by_name(tmp_path, tmp_cache):
    _tree(tmp_path / "d", {"a": 5, "b": 5})
    (tmp_path / "d" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "d" / "b" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="broken.jpg") as rec:
        splits = ft.vision.image_folder(tmp_path / "d", size=16)
    assert "notes.txt" in str(rec[0].message)
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == 10


def test_image_folder_bad_inputs(tmp_path, tmp_cache):
    with pytest.raises(ft.DataError, match="does not exist"):
        ft.vision.image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ft.DataError, match="no class sub-folders"):
        ft.vision.image_folder(tmp_path / "empty")
    _tree(tmp_path / "one", {"ants": 4})
    with pytest.raises(ft.DataError, match="single class"):
        ft.vision.image_folder(tmp_path / "one")
    _tree(tmp_path / "hollow", {"ants": 4})
    (tmp_path / "hollow" / "bees").mkdir()
    (tmp_path / "hollow" / "bees" / "x.txt").write_text("x")
    with pytest.raises(ft.DataError, match="No readable image"), pytest.warns(UserWarning):
        ft.vision.image_folder(tmp_path / "hollow")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ft.DataError, match="is a file"):
        ft.vision.image_folder(tmp_path / "file.png")


def test_random_shift_moves_whole_pixels_and_fills_with_zero():
    x = torch.arange(1, 101, dtype=torch.uint8).view(1, 10, 10)
    shift = ft.vision.transforms.RandomShift(0.2)
    torch.manual_seed(3)
    seen = set()
    for _ in range(20):
        y = shift(x)
        nz = y[y > 0]
        assert y.shape == x.shape and set(nz.tolist()) <= set(x.flatten().tolist())
        rows, cols = torch.nonzero(y[0], as_tuple=True)
        dy, dx = int(y[0, rows[0], cols[0]] - 1) // 10 - int(rows[0]), int(y[0, rows[0], cols[0]] - 1) % 10 - int(cols[0])
        assert abs(dy) <= 2 and abs(dx) <= 2
        seen.add((dy, dx))
    assert len(seen) > 3
