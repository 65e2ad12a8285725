"""Head-only training for 5 epochs: cached features against a full forward pass every epoch.

Cached: ``ft.extract(..., cut="head", cache=False)`` on train and val (so the
extraction is really computed and timed) then ``ft.fit_cached`` for 5 epochs. Full:
``ft.freeze_to(model, -1)`` then ``ft.fit`` for 5 epochs, which runs the frozen backbone
on every image every epoch. Both on the whole ELPV train (1,771) and val (197) splits, no
augmentation (cached features cannot see it), batch 32, seed 0. Target: cached at least 20x
faster, extraction included.

The full run costs about a minute per 5 epochs on a quiet 2-core machine and several times
that on a busy one, so by default it is measured over ``--full-epochs 2`` epochs (``--quick``:
1) and its time scaled to 5; the JSON then says ``"full_seconds_extrapolated": true`` and the
full run's accuracy is the one after those epochs. ``--full-epochs 5`` measures it all.
"""
from __future__ import annotations

import copy

import torch
from _common import log, main, parser, rnd, timed

import ftlab as ft

TARGET_SPEEDUP = 20.0
EPOCHS, BATCH, LR, SEED = 5, 32, 1e-3, 0


def head_only(base):
    model = copy.deepcopy(base)
    ft.freeze_to(model, -1)
    return model


def cached_run(base, L) -> dict:
    """Extract pooled features once (not from the on-disk cache), then train the head on them."""
    model = head_only(base)
    t_extract, (tr, va) = timed(lambda: (ft.extract(model, L.train, cut="head", cache=False, device="cpu"),
                                         ft.extract(model, L.val, cut="head", cache=False, device="cpu")))
    t_fit, h = timed(lambda: ft.fit_cached(model, (tr, va), EPOCHS, lr=LR, batch_size=BATCH, seed=SEED,
                                         device="cpu", progress=False))
    return {"seconds": t_extract + t_fit, "extract_seconds": t_extract, "head_fit_seconds": t_fit,
            "feature_shape": list(tr.x.shape), "history": h}


def warm_run(base, L) -> dict:
    """The same with the features already on disk (any rerun or later lesson): load + train the head."""
    model = head_only(base)
    for split in (L.train, L.val):          # make sure the on-disk cache holds them (not timed)
        ft.extract(model, split, cut="head", device="cpu")
    sec, h = timed(lambda: ft.fit_cached(model, (ft.extract(model, L.train, cut="head", device="cpu"),
                                                 ft.extract(model, L.val, cut="head", device="cpu")), EPOCHS, lr=LR,
                                         batch_size=BATCH, seed=SEED, device="cpu", progress=False))
    return {"seconds": sec, "history": h}


def full_run(base, L, epochs: int) -> dict:
    """Head-only training the plain way: the frozen backbone runs forward on every batch of every epoch."""
    model = head_only(base)
    sec, h = timed(lambda: ft.fit(model, L, epochs, lr=LR, seed=SEED, device="cpu", progress=False))
    return {"seconds": sec, "history": h, "epoch_seconds": [r["seconds"] for r in h.rows]}


def accuracy(h) -> dict:
    """Validation accuracy of the kept (best val-loss) epoch and of the last epoch."""
    return {"best": rnd(h.best["val_acc"]), "last": rnd(h[-1]["val_acc"]), "best_epoch": h.best_epoch + 1}


def warm_up(base, size: int) -> None:
    """One untimed forward so neither run pays for oneDNN's first-call set-up."""
    m = copy.deepcopy(base).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        m(torch.zeros(16, 3, size, size).contiguous(memory_format=torch.channels_last))


def run(args) -> dict:
    full_epochs = 1 if args.quick else args.full_epochs
    if not 1 <= full_epochs <= EPOCHS:
        raise SystemExit(f"--full-epochs must be 1..{EPOCHS}, got {full_epochs}")
    splits = ft.vision.elpv(classes=2)
    base = ft.vision.pretrained(num_classes=2)
    subset = 0.1 if args.quick else None
    L = ft.vision.loaders(splits, base, image_size=args.image_size, batch_size=BATCH, augment="none",
                   subset=subset, eval_subset=subset, seed=SEED)
    n_train, n_val = len(L.train.dataset), len(L.val.dataset)
    log(f"cached head: {n_train} train / {n_val} val images at {args.image_size}px; "
        f"full run {full_epochs} epoch(s)")
    warm_up(base, args.image_size)
    cached = cached_run(base, L)
    log(f"  cached: extract {cached['extract_seconds']:.1f}s + head {cached['head_fit_seconds']:.1f}s")
    warm = warm_run(base, L)
    log(f"  cached, features already on disk: {warm['seconds']:.2f}s")
    full = full_run(base, L, full_epochs)
    log(f"  full: {full['seconds']:.1f}s for {full_epochs} epoch(s)")
    extrapolated = full_epochs < EPOCHS
    full_s = full["seconds"] * EPOCHS / full_epochs
    speedup = full_s / cached["seconds"]
    return {
        "benchmark": "cached_head",
        "target": f"cached (extraction included) >= {TARGET_SPEEDUP:g}x faster than full forward passes, {EPOCHS} epochs",
        "pass": speedup >= TARGET_SPEEDUP,
        "speedup_full_over_cached": rnd(speedup, 2),
        "cached_seconds": rnd(cached["seconds"], 2), "cached_extract_seconds": rnd(cached["extract_seconds"], 2),
        "cached_head_fit_seconds": rnd(cached["head_fit_seconds"], 3),
        "full_seconds": rnd(full_s, 2), "full_seconds_extrapolated": extrapolated,
        "full_extrapolation": f"measured seconds x {EPOCHS}/{full_epochs}" if extrapolated else None,
        "full_epochs_measured": full_epochs, "full_seconds_measured": rnd(full["seconds"], 2),
        "full_epoch_seconds": [rnd(s, 2) for s in full["epoch_seconds"]],
        "warm_cache_seconds": rnd(warm["seconds"], 3),
        "speedup_full_over_warm_cache": rnd(full_s / warm["seconds"], 1),
        "speedup_bound_note": (f"the full run does {EPOCHS} forward passes over train+val, the cached run 1 "
                               f"(the extraction), so the speed-up cannot much exceed {EPOCHS}x at {EPOCHS} epochs"),
        "val_acc_cached": accuracy(cached["history"]),
        "val_acc_full": accuracy(full["history"]) | {"after_epochs": full_epochs},
        "feature_shape": cached["feature_shape"],
        "image_size": args.image_size, "n_images": n_train, "n_val_images": n_val, "epochs": EPOCHS,
        "batch_size": BATCH, "repeats": 1,
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=128)
    p.add_argument("--full-epochs", type=int, default=2,
                   help=f"epochs of the full run actually measured (< {EPOCHS}: extrapolated to {EPOCHS})")
    main(run, p.parse_args())
