"""Partial unfreezing from blocks.5: cut-point caching against plain training, and the full run's images/s.

Both ways train the same thing: ``ft.freeze_to(model, "blocks.5")`` (blocks.5, blocks.6,
final_conv and the head trainable; the groups below frozen) at 224 px, same seed, same batches,
no augmentation. **Plain:** ``ft.fit`` on the image loaders, which runs the frozen groups on every
batch of every epoch. **Cut-point cached:** ``ft.extract(cut="blocks.5", cache=False)``
once (timed), then ``ft.fit_cached`` on the stored activations. With views=1 and no augmentation
the two compute the same updates, so they reach the same accuracy: the JSON shows both runs'
training losses and validation accuracies side by side as the check.

Runs alternate plain / cached (``--repeats``, default 3) on ``--cells`` training cells per class
(default 60, i.e. 240 cells over the 4 classes; 30 % of val, 59 cells) for ``--epochs`` (default 3) epochs. The full run's own
speed is measured too: ``fit_cached`` on 8 cached views per cell, exactly the full configuration
(``ftlab.lab.full_images.FULL``), for one epoch: ``full_run_train_images_per_s``.

Target: cached at least 1.5x faster than plain over the measured epochs, extraction included,
with the same validation accuracy (within 1 point).
"""
from __future__ import annotations

import copy

from _common import log, main, median, parser, rnd, timed

import ftlab as ft
from ftlab.lab.full_images import FULL

TARGET_SPEEDUP = 1.5


def partial(base):
    model = copy.deepcopy(base)
    ft.freeze_to(model, FULL["cut"])
    return model


def plain(base, L, epochs, seed):
    model = partial(base)
    sec, h = timed(lambda: ft.fit(model, L, epochs, lr=FULL["lr"], lr_mult=FULL["lr_mult"],
                                  weight_decay=FULL["weight_decay"], seed=seed, device="cpu", progress=False))
    return sec, h


def cached(base, L, epochs, seed):
    model = partial(base)
    t_x, (tr, va) = timed(lambda: [ft.extract(model, dl, cut=FULL["cut"], cache=False, device="cpu")
                                   for dl in (L.train, L.val)])
    t_fit, h = timed(lambda: ft.fit_cached(model, (tr, va), epochs, lr=FULL["lr"], lr_mult=FULL["lr_mult"],
                                         weight_decay=FULL["weight_decay"], batch_size=L.train.batch_size,
                                         seed=seed, device="cpu", progress=False))
    return t_x + t_fit, h, t_x


def full_config_speed(base, L):
    """One epoch of the full configuration's training (8 cached views per cell): images/s."""
    model = partial(base)
    t_x, (tr, va) = timed(lambda: [ft.extract(model, dl, cut=FULL["cut"], views=8,
                                                       cache=False, device="cpu") for dl in (L.train, L.val)])
    t_fit, h = timed(lambda: ft.fit_cached(model, (tr, va), 1, lr=FULL["lr"], lr_mult=FULL["lr_mult"],
                                         weight_decay=FULL["weight_decay"], batch_size=FULL["batch_size"],
                                         seed=0, device="cpu", progress=False))
    n_views = FULL["views"] * (len(tr.y) + len(va.y))
    return {"full_run_train_images_per_s": rnd(len(tr.y) / h.rows[0]["seconds"], 1),
            "full_run_extract_views_per_s": rnd(n_views / t_x, 1)}


def run(args) -> dict:
    cells = 10 if args.quick else args.cells
    epochs = 1 if args.quick else args.epochs
    repeats = 1 if args.quick else args.repeats
    splits = ft.vision.elpv(classes=4)
    base = ft.vision.pretrained(num_classes=4)
    L = ft.vision.loaders(splits, base, image_size=args.image_size, batch_size=FULL["batch_size"], augment="none",
                   subset=cells, eval_subset=0.3, seed=0)
    log(f"cut point {FULL['cut']}: {len(L.train.dataset)} train / {len(L.val.dataset)} val cells at "
        f"{args.image_size}px, {epochs} epoch(s), {repeats} repeat(s)")
    plain_s, cached_s, extract_s, checks = [], [], [], []
    for r in range(repeats):
        sp, hp = plain(base, L, epochs, seed=r)
        sc, hc, tx = cached(base, L, epochs, seed=r)
        plain_s.append(sp), cached_s.append(sc), extract_s.append(tx)
        checks.append({"seed": r, "plain_train_loss": rnd(hp[-1]["train_loss"]), "cached_train_loss": rnd(hc[-1]["train_loss"]),
                       "plain_val_acc": rnd(hp[-1]["val_acc"]), "cached_val_acc": rnd(hc[-1]["val_acc"])})
        log(f"  repeat {r}: plain {sp:.1f}s, cached {sc:.1f}s (extraction {tx:.1f}s); {checks[-1]}")
    speedup = median(plain_s) / median(cached_s)
    same = all(abs(c["plain_val_acc"] - c["cached_val_acc"]) <= 0.01 for c in checks)
    speed = full_config_speed(base, L)
    log(f"  full configuration: {speed}")
    return {
        "benchmark": "cut_point",
        "target": f"cut-point caching >= {TARGET_SPEEDUP:g}x faster than plain partial unfreezing "
                  f"(extraction included, {epochs} epochs) at the same val accuracy (within 1 point)",
        "pass": speedup >= TARGET_SPEEDUP and same,
        "speedup_plain_over_cached": rnd(speedup, 2),
        "plain_seconds_median": rnd(median(plain_s), 2), "cached_seconds_median": rnd(median(cached_s), 2),
        "cached_extract_seconds_median": rnd(median(extract_s), 2),
        "plain_seconds": [rnd(s, 2) for s in plain_s], "cached_seconds": [rnd(s, 2) for s in cached_s],
        "same_accuracy": same, "same_work_check": checks,
        **speed,
        "cut": FULL["cut"], "image_size": args.image_size, "n_images": len(L.train.dataset),
        "n_val_images": len(L.val.dataset), "epochs": epochs, "batch_size": FULL["batch_size"], "repeats": repeats,
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=224)
    p.add_argument("--cells", type=int, default=60, help="training cells per class")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each run")
    p.add_argument("--repeats", type=int, default=3, help="plain / cached pairs")
    main(run, p.parse_args())
