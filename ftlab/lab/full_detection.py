"""The full detection run: YOLOv3-tiny fine-tuned on the NEON tree crowns, configuration chosen on validation.

``ftlab full --task detection`` (or :func:`detection_full_run`). The protocol:

1. **Selection** (``select=True``, seed 0 only): every candidate of :data:`CANDIDATES` trains;
   after each epoch its mAP@0.5 on the selection set is measured, and the candidate and epoch
   count with the best score become the configuration. The selection set is the validation plots
   (``select_on="val"``, from other sites) or a held-out row of the training photo's tiles
   (``select_on="holdout"``, the same site as the test photo). The test tiles are not read.
2. **The run**: the chosen configuration trains once per seed for exactly that many epochs;
   each seed's detector is scored on the test tiles once (mAP@0.5 and mAP@0.5:0.95).
   Each seed's box precision and recall on the validation plot ``OSBS_029`` (IoU 0.4, score >= 0.1)
   are reported next to DeepForest's published figures for the same plot.
3. **From scratch at the same budget**: the same network with random weights, every layer
   trained, the same epochs, random box augmentation (``scratch_seeds``), scored the same way.

Candidates: the neck and head trained on cached backbone maps in all 8 views (fast), or
trained end to end with random box-aware crops, flips and colour every epoch, from
``backbone.late`` up or everything.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from ..batches import seed_everything
from ..caching import extract, fit_cached
from ..callbacks import Callback
from ..detection.data import loaders as make_loaders
from ..detection.data import tree_crowns
from ..detection.models import pretrained
from ..detection.predict import box_precision_recall, detect, evaluate
from ..errors import UsageError
from ..freezing import freeze_to, unfreeze
from ..splits import Splits
from ..train import fit
from .protocol import choose_candidate_epoch, per_seed, say_from, settings, summarise

__all__ = ["DETECTION_FULL", "CANDIDATES", "SELECT_ON", "selection_splits", "detection_full_run", "format_detection_full"]

# The documented configuration (README, "Full detection run"), as chosen on the validation plots
# by `ftlab full --task detection --select` (docs/results/detection_full.json, "selection").
DETECTION_FULL: dict[str, Any] = dict(mode="cached", cut="neck", lr=3e-3, epochs=9, views=8, scale=1.0, batch_size=8,
                                      weight_decay=0.01, seeds=(0, 1, 2), scratch_seeds=(0,))
# What selection compares, each up to `epochs` epochs. "cached": neck + head on cached backbone
# maps in `views` views; "end-to-end": random box augmentation every epoch, trained from `cut` up
# (None: everything). `scale` enlarges the photos before tiling.
CANDIDATES: tuple[dict[str, Any], ...] = (
    dict(mode="cached", cut="neck", lr=3e-3, epochs=20, views=8, scale=1.0),
    dict(mode="end-to-end", cut="backbone.late", lr=3e-3, epochs=30, scale=1.0),
    dict(mode="end-to-end", cut=None, lr=3e-3, epochs=30, scale=1.0))


class _ValMap(Callback):
    """mAP@0.5 on the validation tiles after every epoch (the detector itself, in eval mode)."""

    def __init__(self, model, val):
        self.model, self.val, self.scores = model, val, []

    def on_epoch_end(self, state) -> None:
        self.scores.append(evaluate(self.model, self.val)["map_50"])


def _osbs(model, splits) -> dict[str, float]:
    """Box precision and recall on the validation plot OSBS_029 at IoU 0.4, score >= 0.1 (as DeepForest's docs report)."""
    tile = splits.val.subset([i for i, src in enumerate(splits.val.sources) if src == "OSBS_029"])
    pr = box_precision_recall(*detect(model, tile), iou=0.4, conf=0.1)
    return {k: pr[k] for k in ("precision", "recall", "hits", "predicted", "true")}


def _train(splits, maps, c: dict, seed: int, cfg: dict, weights: str | None = "coco", watch: bool = False):
    """One detector trained by recipe ``c`` (mode, cut, lr, epochs); returns (model, val mAP per epoch or None)."""
    seed_everything(seed)
    model = pretrained(num_classes=1, class_names=["Tree"], weights=weights)
    cb = _ValMap(model, splits.val) if watch else None              # splits.val: the selection set
    kw = dict(lr=c["lr"], weight_decay=cfg["weight_decay"], seed=seed, restore_best=False, device="cpu",
              progress=False, callbacks=[cb] if cb else [])
    if c["mode"] == "cached":
        freeze_to(model, c["cut"])                                   # the maps' cut: the groups from it up train
        fit_cached(model, (maps, None), c["epochs"], views="all", batch_size=cfg["batch_size"], **kw)
    elif c["mode"] == "end-to-end":
        unfreeze(model)
        if c["cut"] is not None:
            freeze_to(model, c["cut"])
        fit(model, (make_loaders(splits, batch_size=cfg["batch_size"], augment="strong", seed=seed).train, None),
            c["epochs"], **kw)
    else:
        raise UsageError(f"Unknown training mode {c['mode']!r}: 'cached' or 'end-to-end'.")
    return model, (cb.scores if cb else None)


def _describe(c: dict) -> str:
    views = f", {c['views']} views" if c["mode"] == "cached" else ""
    return f"{c['mode']} from {c['cut'] or 'everything'}, lr {c['lr']:g}, scale {c['scale']:g}{views}"


SELECT_ON = ("val", "holdout")


def selection_splits(splits: Splits, on: str = "val") -> Splits:
    """The data a configuration is chosen on: ``"val"`` (the validation plots, from other sites) or
    ``"holdout"`` (the bottom row of tiles of the training photo held out, the rest trains).

    The test photo is in neither. ``"holdout"`` resembles the test photo (same site, same flight);
    ``"val"`` asks for a configuration that travels to other sites.
    """
    if on == "val":
        return splits
    if on != "holdout":
        raise UsageError(f"select_on must be one of {SELECT_ON}, not {on!r}.")
    bottom = max(y for _, y in splits.train.origins)
    rows = [i for i, (_, y) in enumerate(splits.train.origins) if y == bottom]
    keep = [i for i in range(len(splits.train)) if i not in rows]
    return Splits(splits.train.subset(keep), splits.train.subset(rows), splits.test, splits.name + "-holdout")


def _detection_data(say) -> tuple[Callable[[float], Splits], Callable[[dict, Any], Any]]:
    """The tree-crown splits at a scale (loaded once per scale) and the cached backbone maps of a recipe."""
    data: dict[float, Any] = {}
    cache: dict[tuple, Any] = {}

    def splits_at(scale: float):
        if scale not in data:
            data[scale] = tree_crowns(scale=scale)
        return data[scale]

    def maps(c: dict, train):
        if c["mode"] != "cached":
            return None
        key = (c["scale"], c["views"], c["cut"], len(train))
        if key not in cache:
            t = time.perf_counter()
            cache.clear()                               # one set of maps in memory at a time
            cache[key] = extract(pretrained(num_classes=1), train, c["cut"], views=c["views"], cache=False)
            say(f"maps below {c['cut']} of {len(cache[key])} tiles x {c['views']} views (scale {c['scale']:g}): "
                f"{time.perf_counter() - t:.0f} s")
        return cache[key]

    return splits_at, maps


def _select_detection(cfg: dict, splits_at, maps, select_on: str, say) -> dict[str, Any]:
    """Every candidate trained on seed 0, scored on the selection set after each epoch; the best (candidate, epochs)."""
    rows = []
    for c in CANDIDATES:
        c = {"views": cfg["views"], **c}
        t = time.perf_counter()
        sel = selection_splits(splits_at(c["scale"]), select_on)
        _, scores = _train(sel, maps(c, sel.train), c, 0, cfg, watch=True)
        rows.append({**c, "val_map_50_per_epoch": scores, "seconds": time.perf_counter() - t})
        say(f"selection {_describe(c)}: best val mAP@0.5 {max(scores):.3f} "
            f"(epoch {scores.index(max(scores)) + 1} of {c['epochs']}, {rows[-1]['seconds']:.0f} s)")
    best, epochs, choice = choose_candidate_epoch(rows, "val_map_50_per_epoch", on=select_on)
    cfg.update({k: best[k] for k in ("mode", "cut", "lr", "scale", "views")}, epochs=epochs)
    say(f"chosen on {select_on}: {_describe(cfg)}, {cfg['epochs']} epochs")
    return {"selected_on": select_on, "seed": 0, "candidates": rows, "choice": choice,
            "chosen": {k: cfg[k] for k in ("mode", "cut", "lr", "scale", "views", "epochs")}}


def detection_full_run(seeds: Sequence[int] = DETECTION_FULL["seeds"], select: bool = False, select_on: str = "val",
                       progress: bool | Callable[[str], None] = True, **overrides: Any) -> dict[str, Any]:
    """Run the full detection configuration (optionally choosing it on validation first).

    Args:
        seeds: one detector per seed, each scored on the test tiles once.
        select: first choose among :data:`CANDIDATES` (mode, cut, learning rate, scale, views) and
            the number of epochs by mAP@0.5 on the selection set (seed 0).
        select_on: the selection set (see :func:`selection_splits`): ``"val"`` or ``"holdout"``.
        progress: print progress lines (or a function that takes them).
        **overrides: keys of :data:`DETECTION_FULL` (``epochs``, ``lr``, ``views``, ``scale``, ``scratch_seeds``, ...).

    Returns:
        ``{"config", "selection", "runs", "scratch", "summary"}``, JSON-ready.
    """
    cfg, say = settings(DETECTION_FULL, overrides, seeds), say_from(progress)
    cfg["scratch_seeds"] = list(cfg["scratch_seeds"])
    if select_on not in SELECT_ON:
        raise UsageError(f"select_on must be one of {SELECT_ON}, not {select_on!r}.")
    start = time.perf_counter()
    splits_at, maps = _detection_data(say)
    selection = _select_detection(cfg, splits_at, maps, select_on, say) if select else None
    splits = splits_at(cfg["scale"])

    def run_one(seed: int, scratch: bool = False) -> dict[str, Any]:
        t = time.perf_counter()
        recipe = {**cfg, "mode": "end-to-end", "cut": None} if scratch else cfg
        model, _ = _train(splits, None if scratch else maps(cfg, splits.train), recipe, seed, cfg,
                          weights=None if scratch else "coco")
        secs = time.perf_counter() - t
        r = evaluate(model, splits.test)
        row = {"map_50": r["map_50"], "map": r["map"], "train_seconds": secs}
        return row if scratch else {**row, "mar_100": r["mar_100"], "osbs_029": _osbs(model, splits)}

    line = lambda r: f"test mAP@0.5 {r['map_50']:.3f}, mAP@0.5:0.95 {r['map']:.3f} ({r['train_seconds']:.0f} s)"  # noqa: E731
    runs = per_seed(cfg["seeds"], run_one, say, line)
    scratch = per_seed(cfg["scratch_seeds"], lambda s: run_one(s, scratch=True), lambda m: say("from scratch, " + m), line)
    summary = {**summarise(runs, ["map_50", "map"]),
               "scratch_map_50": summarise(scratch, ["map_50"])["map_50"] if scratch else None,
               "wall_seconds": time.perf_counter() - start, "train_tiles": len(splits.train),
               "test_tiles": len(splits.test), "test_boxes": splits.test.n_boxes}
    config = {**cfg, "model": "yolov3_tiny (COCO, Darknet)", "data": splits.name,
              "selected_on": select_on if select else "val (DETECTION_FULL, chosen earlier by --select)"}
    return {"config": config, "selection": selection, "runs": runs, "scratch": scratch, "summary": summary}


def format_detection_full(result: dict[str, Any]) -> str:
    """A few lines: the chosen configuration, per-seed mAP, mean ± std, the from-scratch baseline, wall time."""
    c, s = result["config"], result["summary"]
    lines = [f"YOLOv3-tiny (COCO), {_describe(c)}, {c['epochs']} epochs (chosen on {c['selected_on']})"]
    lines += [f"  seed {r['seed']}: test mAP@0.5 {r['map_50']:.3f}, mAP@0.5:0.95 {r['map']:.3f}  ({r['train_seconds']:.0f} s)"
              for r in result["runs"]]
    m, m2 = s["map_50"], s["map"]
    lines.append(f"test mAP@0.5: {m['mean']:.3f} ± {m['std']:.3f}; mAP@0.5:0.95: {m2['mean']:.3f} ± {m2['std']:.3f}")
    if s.get("scratch_map_50"):
        lines.append(f"from scratch, same epochs: test mAP@0.5 {s['scratch_map_50']['mean']:.3f} "
                     f"({s['scratch_map_50']['n']} seed(s))")
    lines.append(f"wall time {s['wall_seconds'] / 60:.1f} min")
    return "\n".join(lines)
