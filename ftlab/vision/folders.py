"""Your own images: a class-per-folder tree (like the classic ants/bees set) as ftlab :class:`Splits`.

Each image is decoded once, converted to RGB, its shorter side resized to ``size`` and
centre-cropped to ``size x size`` (uint8), and the whole tree is cached on disk under a key
of its file names, sizes and modification times. Files that cannot be decoded as images
(a stray ``notes.txt``, a truncated JPEG) are **skipped with a warning naming them**;
hidden files (``.DS_Store``) are ignored. A class left with no readable image is an error.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..files import atomic_save, cache_file, stable_hash
from .data import ImageSet, Splits, stratified_split

__all__ = ["image_folder"]

SPLIT_NAMES = ("train", "val", "test")


def _decode(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_tree(root: Path, classes: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    files = [(f, c) for c, name in enumerate(classes) if (root / name).is_dir()
             for f in sorted((root / name).rglob("*")) if f.is_file() and not f.name.startswith(".")]
    key = stable_hash(str(root.resolve()), size, [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f, _ in files])
    path = cache_file("folders", f"{root.name}-{key}.pt")
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["images"], cached["targets"]
    images, targets, skipped = [], [], []
    for f, c in files:
        try:
            images.append(_decode(f, size))
            targets.append(c)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
            skipped.append(f"{f} ({type(err).__name__})")
    if skipped:
        shown = "\n  ".join(skipped[:10]) + ("\n  ..." if len(skipped) > 10 else "")
        warnings.warn(f"ftlab skipped {len(skipped)} file(s) that are not readable images:\n  {shown}", stacklevel=3)
    t = torch.tensor(targets, dtype=torch.long)
    empty = [classes[c] for c in range(len(classes)) if (root / classes[c]).is_dir() and not (t == c).any()]
    if empty:
        raise DataError(f"No readable image in class folder(s) {empty} under {root}. Add images "
                        "(png, jpg, ...) or remove the empty folders.")
    stacked = torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8)
    atomic_save({"images": stacked, "targets": t}, path)
    return stacked, t


def image_folder(path, size: int = 256, val_fraction: float = 0.15, test_fraction: float = 0.2,
                 seed: int = 0) -> Splits:
    """Your own class-per-folder images as train / val / test :class:`Splits`.

    ``path/<class>/<image>`` is split stratified and seeded into train/val/test. If ``path``
    has ``train/`` (and ``val/`` and/or ``test/``) sub-folders, those splits are used as they
    are; a missing ``val/`` is carved from train, a missing ``test/`` likewise.

    Args:
        path: root folder.
        size: images are stored as ``size x size`` RGB (shorter side resized, centre crop).
        val_fraction: share of the images held out for validation (when not given as a folder).
        test_fraction: share held out for testing (when not given as a folder).
        seed: seed of the split.

    Returns:
        :class:`Splits` with class names from the folder names.

    Raises:
        DataError: missing path, not a folder, no class folders, a single class, a class
            with no readable image.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"Image folder {root} does not exist. Pass the folder that holds one "
                        "sub-folder per class (e.g. data/hymenoptera/ with ants/ and bees/).")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder: pass the folder with one sub-folder per class.")
    given = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    base = given.get("train", root)
    classes = [p.name for p in _class_dirs(base)]
    if not classes:
        raise DataError(f"{base} has no class sub-folders. Put images in {base}/<class name>/.")
    if len(classes) < 2:
        raise DataError(f"{base} has a single class ({classes[0]}); a classifier needs at least two "
                        "class sub-folders.")
    parts = {s: _read_tree(p, classes, size) for s, p in given.items()} if "train" in given \
        else {"train": _read_tree(root, classes, size)}
    sets = {s: ImageSet(im, t, classes, name=f"{root.name}/{s}") for s, (im, t) in parts.items()}
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if split not in sets:
            train = sets["train"]
            if len(train) < 2 * len(classes):
                raise DataError(f"Too few images in {root} ({len(train)}) to carve a {split} split.")
            keep, held = stratified_split(len(train), train.targets.numpy(), fraction, seed)
            sets["train"] = train.subset(keep, f"{root.name}/train")
            sets[split] = train.subset(held, f"{root.name}/{split}")
    return Splits(sets["train"], sets["val"], sets["test"], name=root.name)
