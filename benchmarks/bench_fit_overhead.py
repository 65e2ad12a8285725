"""fit() overhead against the classic hand-written PyTorch loop doing the same work.

Both train fresh copies of the same model (last 2 layer groups trainable) for one epoch on
the same fixed batches, with AdamW over ``ft.param_groups``, OneCycleLR stepped every batch,
loss/accuracy accumulation, a no-grad validation pass, and channels-last model and inputs
(as ``ftlab.train.prepare`` / ``ftlab.batches.to_device`` do). Runs alternate A B A B ... so drift
in the machine's load hits both alike. Target: fit at most 5 % slower (ratio of medians).
"""
from __future__ import annotations

import copy

import torch
from _common import log, main, median, parser, rnd, timed
from torch import nn

import ftlab as ft

TARGET_RATIO = 1.05
LR, WEIGHT_DECAY, BATCH = 1e-3, 0.01, 32


def fixed_batches(splits, model, size: int, per_class: int, val_per_class: int) -> tuple[list, list]:
    """Materialise the train and val batches once, so both loops see identical tensors."""
    L = ft.vision.loaders(splits, model, image_size=size, batch_size=BATCH, subset=per_class,
                   eval_subset=val_per_class, seed=0)
    return list(L.train), list(L.val)


def onecycle(opt, total_steps: int):
    """The same schedule ``ft.fit(scheduler="onecycle")`` builds (AdamW: no momentum cycling)."""
    if total_steps < 4:                            # fit keeps the rate constant then, and so do we
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
        pct_start=max(0.25, 2 / total_steps), cycle_momentum=False)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def plain_loop(model: nn.Module, train: list, val: list, epochs: int = 1) -> dict:
    """The classic tutorial loop, with ftlab's BN policy and memory format."""
    model.to("cpu", memory_format=torch.channels_last)
    opt = torch.optim.AdamW(ft.param_groups(model, LR, weight_decay=WEIGHT_DECAY))
    sched = onecycle(opt, epochs * len(train))
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        ft.train_mode(model)                       # model.train() + BN policy
        total, correct, seen = 0.0, 0, 0
        for x, y in train:
            x = channels_last(x)
            out = model(x)
            loss = criterion(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        model.eval()
        vloss, vcorrect, vseen = 0.0, 0, 0
        with torch.no_grad():
            for x, y in val:
                out = model(channels_last(x))
                vloss += criterion(out, y).item() * len(y)
                vcorrect += (out.argmax(1) == y).sum().item()
                vseen += len(y)
    return {"train_loss": total / seen, "val_acc": vcorrect / vseen}


def ftlab_fit(model: nn.Module, train: list, val: list, epochs: int = 1) -> dict:
    h = ft.fit(model, (train, val), epochs, lr=LR, weight_decay=WEIGHT_DECAY, scheduler="onecycle",
               device="cpu", progress=False)
    return {"train_loss": h[-1]["train_loss"], "val_acc": h[-1]["val_acc"]}


def run_once(fn, base: nn.Module, train: list, val: list) -> tuple[float, dict]:
    model = copy.deepcopy(base)
    torch.manual_seed(0)                           # same dropout masks in both loops
    return timed(lambda: fn(model, train, val))


def run(args) -> dict:
    repeats = 3 if args.quick else args.repeats
    per_class = 64 if args.quick else 128
    splits = ft.vision.elpv(classes=2)
    base = ft.vision.pretrained(num_classes=2)
    ft.freeze_to(base, -2)
    train, val = fixed_batches(splits, base, args.image_size, per_class, val_per_class=48)
    n_train, n_val = sum(len(y) for _, y in train), sum(len(y) for _, y in val)
    log(f"fit overhead: {n_train} train / {n_val} val images at {args.image_size}px, {repeats} repeats")
    for fn in (ftlab_fit, plain_loop):             # warm-up (oneDNN primitives, allocator), not timed
        run_once(fn, base, train, val)
    times = {"fit": [], "plain": []}
    results = {}
    for r in range(repeats):                       # A B A B ...
        for name, fn in (("fit", ftlab_fit), ("plain", plain_loop)):
            sec, results[name] = run_once(fn, base, train, val)
            times[name].append(sec)
        log(f"  repeat {r + 1}: fit {times['fit'][-1]:.3f}s  plain {times['plain'][-1]:.3f}s")
    fit_s, plain_s = median(times["fit"]), median(times["plain"])
    ratio = fit_s / plain_s
    paired = median([f / p for f, p in zip(times["fit"], times["plain"])])
    best = min(times["fit"]) / min(times["plain"])     # least disturbed run of each: robust on a shared box
    return {
        "benchmark": "fit_overhead",
        "target": f"fit / plain loop <= {TARGET_RATIO} (fit at most 5% slower)",
        "pass": ratio <= TARGET_RATIO,
        "fit_seconds_median": rnd(fit_s), "plain_seconds_median": rnd(plain_s),
        "ratio_fit_over_plain": rnd(ratio), "ratio_paired_median": rnd(paired),
        "ratio_of_minimums": rnd(best),
        "overhead_percent": rnd(100 * (ratio - 1), 2),
        "fit_seconds": [rnd(t) for t in times["fit"]], "plain_seconds": [rnd(t) for t in times["plain"]],
        "same_work_check": {"fit_train_loss": rnd(results["fit"]["train_loss"], 5),
                            "plain_train_loss": rnd(results["plain"]["train_loss"], 5),
                            "fit_val_acc": rnd(results["fit"]["val_acc"]),
                            "plain_val_acc": rnd(results["plain"]["val_acc"])},
        "image_size": args.image_size, "n_images": n_train, "n_val_images": n_val, "batch_size": BATCH,
        "epochs_per_run": 1, "trainable_groups": "last 2 (freeze_to(model, -2))",
        "trainable_params": ft.trainable_count(base), "memory_format": "channels_last (both)",
        "repeats": repeats,
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=96)
    p.add_argument("--repeats", type=int, default=11, help="timed runs of each loop (alternating)")
    main(run, p.parse_args())
