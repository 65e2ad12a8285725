"""Data pipeline against the model: can the loader keep the training step fed?

Per image size: images/s of iterating ``ft.vision.loaders(...).train`` (``num_workers=0``, no model)
with ``augment="light"`` and ``"strong"``, against images/s of a fit-like training step of
the whole model (all layer groups trainable, channels-last, AdamW over ``ft.param_groups``,
batch 32) on batches taken from the same loader beforehand. Loader and model are measured
in turns within each repeat, so both see the same machine load. Target: the loader at least
3x faster than the model at every size and preset (then data loading costs at most ~25 % of
an epoch even without overlap).
"""
from __future__ import annotations

import copy
import time

import torch
from _common import log, main, median, parser, rnd, timed
from torch import nn

import ftlab as ft

TARGET_RATIO = 3.0
BATCH, PRESETS = 32, ("light", "strong")
DEFAULT_SIZES = [224, 128]


def loader_images_per_s(loader, batches: int) -> float:
    """Images per second of pulling ``batches`` batches from a fresh iterator (transforms included)."""
    t0, n = time.perf_counter(), 0
    for i, (x, _) in enumerate(loader):
        n += len(x)
        if i + 1 == batches:
            break
    return n / (time.perf_counter() - t0)


def trainable_model(base: nn.Module) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A copy with every layer group trainable, channels-last, with fit's optimizer."""
    model = copy.deepcopy(base)
    ft.freeze_to(model, 0)
    ft.train.prepare(model, "cpu")
    return model, torch.optim.AdamW(ft.param_groups(model, 1e-3, weight_decay=0.01))


def train_step(model: nn.Module, opt, x: torch.Tensor, y: torch.Tensor) -> float:
    """One step the way ``ft.fit`` does it; returns its wall seconds."""
    t0 = time.perf_counter()
    ft.train_mode(model)
    out = model(ft.batches.to_device(x, torch.device("cpu")))
    loss = nn.functional.cross_entropy(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    return time.perf_counter() - t0


def measure_size(splits, base, size: int, repeats: int, loader_batches: int) -> dict:
    """Loader images/s per preset and model images/s at one size, measured in turns."""
    build, loaders = {}, {}
    for preset in PRESETS:
        build[preset], loaders[preset] = timed(lambda p=preset: ft.vision.loaders(splits, base, image_size=size, batch_size=BATCH,
                                                                           augment=p, num_workers=0, seed=0))
    batches = [b for _, b in zip(range(repeats), loaders["light"].train)]
    model, opt = trainable_model(base)
    train_step(model, opt, *batches[0])                # warm-up, not timed
    ips = {p: [] for p in PRESETS}
    steps = []
    for r in range(repeats):
        for preset in PRESETS:
            ips[preset].append(loader_images_per_s(loaders[preset].train, loader_batches))
        steps.append(train_step(model, opt, *batches[r]))
        log(f"  {size}px repeat {r + 1}: " + "  ".join(f"{p} {ips[p][-1]:.0f} img/s" for p in PRESETS)
            + f"  model {BATCH / steps[-1]:.1f} img/s")
    model_ips = BATCH / median(steps)
    out = {"model_images_per_s": rnd(model_ips, 2), "model_step_seconds": [rnd(s, 3) for s in steps]}
    for preset in PRESETS:
        loader_ips = median(ips[preset])
        out[f"loader_{preset}_images_per_s"] = rnd(loader_ips, 1)
        out[f"ratio_{preset}"] = rnd(loader_ips / model_ips, 2)
        out[f"ratio_{preset}_paired_median"] = rnd(median([i * s / BATCH for i, s in zip(ips[preset], steps)]), 2)
        out[f"loader_{preset}_build_seconds"] = rnd(build[preset], 2)
    out["pass"] = all(out[f"ratio_{p}"] >= TARGET_RATIO for p in PRESETS)
    return out


def run(args) -> dict:
    repeats = 2 if args.quick else args.repeats
    loader_batches = 2 if args.quick else args.loader_batches
    sizes = args.image_size or ([128] if args.quick else DEFAULT_SIZES)
    splits = ft.vision.elpv(classes=2)
    base = ft.vision.pretrained(num_classes=2)
    per_size = {}
    for size in sizes:
        log(f"pipeline at {size}px: {loader_batches} loader batches and 1 training step per repeat, {repeats} repeats")
        per_size[str(size)] = measure_size(splits, base, size, repeats, loader_batches)
    return {
        "benchmark": "pipeline",
        "target": f"loader images/s >= {TARGET_RATIO:g}x the model's training images/s, every size and preset",
        "pass": all(r["pass"] for r in per_size.values()),
        "per_size": per_size,
        "image_size": sizes, "n_images": loader_batches * BATCH,
        "n_images_note": "images per loader measurement (from a train split of 1,771); model: 1 batch per repeat",
        "batch_size": BATCH, "num_workers": 0, "model": "all layer groups trainable, channels_last, AdamW",
        "repeats": repeats,
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=DEFAULT_SIZES)
    p.set_defaults(image_size=None)                # None: 224 and 128 (--quick: 128 only)
    p.add_argument("--repeats", type=int, default=3, help="turns of (loader per preset, one training step)")
    p.add_argument("--loader-batches", type=int, default=8, help="batches pulled per loader measurement")
    main(run, p.parse_args())
