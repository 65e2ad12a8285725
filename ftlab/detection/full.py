"""The full detection run: YOLOv3-tiny fine-tuned on the NEON tree crowns, configuration chosen on validation.

``ftlab full --task detection`` (or :func:`detection_full_run`). The protocol:

1. **Selection on validation** (``select=True``, seed 0 only): every candidate of
   :data:`CANDIDATES` trains on the training tiles; after each epoch its mAP@0.5 on the
   validation plots is measured. The candidate and epoch count with the best validation mAP
   become the configuration. The test tiles are not read.
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

import statistics
import time
from typing import Any, Callable, Sequence

from ..batches import seed_everything
from ..callbacks import Callback
from ..errors import UsageError
from ..freezing import freeze_to, unfreeze
from ..train import fit
from .data import loaders as make_loaders
from .data import tree_crowns
from .features import extract_maps, fit_cached
from .models import pretrained
from .predict import box_precision_recall, detect, evaluate

__all__ = ["DETECTION_FULL", "CANDIDATES", "detection_full_run", "format_detection_full"]

# The documented configuration (README, "Full detection run"), as chosen on the validation plots
# by `ftlab full --task detection --select` (docs/results/detection_full.json, "selection").
DETECTION_FULL: dict[str, Any] = dict(mode="cached", cut="neck", lr=3e-3, epochs=20, views=8, batch_size=8,
                                      weight_decay=0.01, seeds=(0, 1, 2), scratch_seeds=(0,))
# (mode, first trained group, lr, epochs at most). "cached": neck + head on cached backbone maps
# in `views` views; "end-to-end": random box augmentation every epoch, trained from `cut` up.
CANDIDATES: tuple[tuple[str, str | None, float, int], ...] = (
    ("cached", "neck", 3e-3, 20), ("end-to-end", "backbone.late", 3e-3, 30), ("end-to-end", None, 3e-3, 30))


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


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


def _train(splits, maps, mode: str, cut: str | None, lr: float, epochs: int, seed: int, cfg: dict,
           weights: str | None = "coco", watch: bool = False):
    """One detector trained by a candidate's recipe; returns (model, validation mAP per epoch or None)."""
    seed_everything(seed)
    model = pretrained(num_classes=1, class_names=["Tree"], weights=weights)
    cb = _ValMap(model, splits.val) if watch else None
    kw = dict(lr=lr, weight_decay=cfg["weight_decay"], seed=seed, restore_best=False, device="cpu", progress=False,
              callbacks=[cb] if cb else [])
    if mode == "cached":
        fit_cached(model, maps, None, epochs, batch_size=cfg["batch_size"], **kw)
    elif mode == "end-to-end":
        unfreeze(model)
        if cut is not None:
            freeze_to(model, cut)
        fit(model, (make_loaders(splits, batch_size=cfg["batch_size"], augment="boxes", seed=seed).train, None),
            epochs, **kw)
    else:
        raise UsageError(f"Unknown training mode {mode!r}: 'cached' or 'end-to-end'.")
    return model, (cb.scores if cb else None)


def detection_full_run(seeds: Sequence[int] = DETECTION_FULL["seeds"], select: bool = False,
                       progress: bool | Callable[[str], None] = True, **overrides: Any) -> dict[str, Any]:
    """Run the full detection configuration (optionally choosing it on validation first).

    Args:
        seeds: one detector per seed, each scored on the test tiles once.
        select: first choose mode, cut, learning rate and epochs among :data:`CANDIDATES` by
            validation mAP@0.5 (seed 0).
        progress: print progress lines (or a function that takes them).
        **overrides: keys of :data:`DETECTION_FULL` (``epochs``, ``lr``, ``views``, ``scratch_seeds``, ...).

    Returns:
        ``{"config", "selection", "runs", "scratch", "summary"}``, JSON-ready.
    """
    unknown = set(overrides) - set(DETECTION_FULL)
    if unknown:
        raise UsageError(f"Unknown full-run settings {sorted(unknown)}: use {', '.join(DETECTION_FULL)}.")
    cfg = {**DETECTION_FULL, **overrides, "seeds": list(seeds)}
    cfg["scratch_seeds"] = list(cfg["scratch_seeds"])
    say = progress if callable(progress) else (print if progress else (lambda _: None))
    start = time.perf_counter()
    splits = tree_crowns()
    cache: dict[str, Any] = {}

    def maps():
        if "train" not in cache:
            t = time.perf_counter()
            cache["train"] = extract_maps(pretrained(num_classes=1), splits.train, "backbone", views=cfg["views"])
            say(f"backbone maps of {len(cache['train'])} tile views: {time.perf_counter() - t:.0f} s")
        return cache["train"]

    selection = None
    if select:
        rows = []
        for mode, cut, lr, epochs in CANDIDATES:
            t = time.perf_counter()
            _, scores = _train(splits, maps() if mode == "cached" else None, mode, cut, lr, epochs, 0, cfg, watch=True)
            rows.append({"mode": mode, "cut": cut, "lr": lr, "val_map_50_per_epoch": scores,
                         "seconds": time.perf_counter() - t})
            say(f"selection {mode} from {cut or 'everything'} lr={lr:g}: best val mAP@0.5 {max(scores):.3f} "
                f"(epoch {scores.index(max(scores)) + 1} of {epochs}, {rows[-1]['seconds']:.0f} s)")
        best = max(((r, e) for r in rows for e in range(len(r["val_map_50_per_epoch"]))),
                   key=lambda re: re[0]["val_map_50_per_epoch"][re[1]])
        cfg.update(mode=best[0]["mode"], cut=best[0]["cut"], lr=best[0]["lr"], epochs=best[1] + 1)
        selection = {"selected_on": "val", "seed": 0, "candidates": rows,
                     "chosen": {k: cfg[k] for k in ("mode", "cut", "lr", "epochs")}}
        say(f"chosen on validation: {cfg['mode']} from {cfg['cut'] or 'everything'}, lr {cfg['lr']:g}, "
            f"{cfg['epochs']} epochs")
    runs = []
    for seed in cfg["seeds"]:
        t = time.perf_counter()
        model, _ = _train(splits, maps() if cfg["mode"] == "cached" else None, cfg["mode"], cfg["cut"], cfg["lr"],
                          cfg["epochs"], seed, cfg)
        secs = time.perf_counter() - t
        r = evaluate(model, splits.test)
        runs.append({"seed": seed, "map_50": r["map_50"], "map": r["map"], "mar_100": r["mar_100"], "train_seconds": secs,
                     "osbs_029": _osbs(model, splits)})
        say(f"seed {seed}: test mAP@0.5 {r['map_50']:.3f}, mAP@0.5:0.95 {r['map']:.3f} ({secs:.0f} s)")
    scratch = []
    for seed in cfg["scratch_seeds"]:
        t = time.perf_counter()
        model, _ = _train(splits, None, "end-to-end", None, cfg["lr"], cfg["epochs"], seed, cfg, weights=None)
        r = evaluate(model, splits.test)
        scratch.append({"seed": seed, "map_50": r["map_50"], "map": r["map"], "train_seconds": time.perf_counter() - t})
        say(f"from scratch, seed {seed}: test mAP@0.5 {r['map_50']:.3f} ({scratch[-1]['train_seconds']:.0f} s)")
    summary = {"map_50": _stats([r["map_50"] for r in runs]), "map": _stats([r["map"] for r in runs]),
               "scratch_map_50": _stats([r["map_50"] for r in scratch]) if scratch else None,
               "wall_seconds": time.perf_counter() - start, "train_tiles": len(splits.train),
               "test_tiles": len(splits.test), "test_boxes": splits.test.n_boxes}
    config = {**cfg, "model": "yolov3_tiny (COCO, Darknet)", "data": splits.name, "selected_on": "val"}
    return {"config": config, "selection": selection, "runs": runs, "scratch": scratch, "summary": summary}


def format_detection_full(result: dict[str, Any]) -> str:
    """A few lines: the chosen configuration, per-seed mAP, mean ± std, the from-scratch baseline, wall time."""
    c, s = result["config"], result["summary"]
    lines = [f"YOLOv3-tiny (COCO), {c['mode']} from {c['cut'] or 'everything'}, lr {c['lr']:g}, {c['epochs']} epochs "
             f"(chosen on {c['selected_on']})"]
    lines += [f"  seed {r['seed']}: test mAP@0.5 {r['map_50']:.3f}, mAP@0.5:0.95 {r['map']:.3f}  ({r['train_seconds']:.0f} s)"
              for r in result["runs"]]
    m, m2 = s["map_50"], s["map"]
    lines.append(f"test mAP@0.5: {m['mean']:.3f} ± {m['std']:.3f}; mAP@0.5:0.95: {m2['mean']:.3f} ± {m2['std']:.3f}")
    if s.get("scratch_map_50"):
        lines.append(f"from scratch, same epochs: test mAP@0.5 {s['scratch_map_50']['mean']:.3f} "
                     f"({s['scratch_map_50']['n']} seed(s))")
    lines.append(f"wall time {s['wall_seconds'] / 60:.1f} min")
    return "\n".join(lines)
