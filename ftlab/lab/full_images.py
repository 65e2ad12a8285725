"""The full-quality ELPV run: all training cells, 224 px, EfficientNet-Lite0, 3 seeds, on a CPU.

``ftlab full`` (or :func:`full_run`) is the documented full configuration of the README's results
section, chosen on the validation split only: ``ftlab full --select`` (:func:`select_full`) ranks the
:data:`CANDIDATES` (backbone Lite0/1/2, input size, cut) and :data:`LEARNING_RATES` on validation
and runs the winner; the test split is read once per seed. It is fast on a 2-core CPU because of three of ftlab's speed tools:

* **cut-point caching** (:func:`ftlab.extract` with a cut): layer groups ``stem`` to
  ``blocks.4`` stay frozen, so their activations are computed once and stored; only
  ``blocks.5`` to the head are trained, on the stored activations;
* **cached symmetries** (``views=8``, :data:`~ftlab.vision.D4`): the 8 flips and quarter turns of a square cell are
  exact symmetries, so their activations are cached too. Every epoch shows each cell in a random
  one of its 8 views (augmentation at cached speed), and the test score averages the predictions
  over the 8 views (test-time augmentation);
* **one extraction for everything**: the features do not depend on the seed or on the labels, so
  the three seeds share them.

One 4-class model is trained per seed. The 2-class answer (functional: defect probability
0 or 1/3; defective: 2/3 or 1, exactly the labels of ``ftlab.elpv(classes=2)``) is read off
the same model as ``P(defective) = p(2/3) + p(1) >= 0.5``: the finer labels teach the
model more than the binary ones (``two_class="trained"`` trains separate 2-class models instead,
for comparison).
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..batches import seed_everything
from ..caching import extract, fit_cached
from ..errors import UsageError
from ..files import atomic_write_text, repo_root
from ..freezing import freeze_to
from ..train import predict
from ..vision.data import elpv
from ..vision.loading import loaders as make_loaders
from ..vision.models import preprocessing, pretrained
from .protocol import per_seed, say_from, summarise

__all__ = ["FULL", "CANDIDATES", "LEARNING_RATES", "SELECT", "full_run", "select_full", "coarsen", "format_full",
           "save_full", "load_full"]

# The documented full configuration (README, "Full run"): model, image_size, cut and lr as chosen by
# select_full on the validation split (docs/results/full.json, "selection"); the rest fixed beforehand.
FULL: dict[str, Any] = dict(model="efficientnet_lite0", image_size=224, cut="blocks.5", views=8, epochs=12, lr=1e-2,
                            lr_mult=10.0, weight_decay=0.05, batch_size=32, seeds=(0, 1, 2))


def coarsen(probs4: torch.Tensor) -> torch.Tensor:
    """4-level ELPV probabilities ``[N, 4]`` -> 2-class ``[N, 2]``: (p(0) + p(1/3), p(2/3) + p(1))."""
    if probs4.ndim != 2 or probs4.shape[1] != 4:
        raise UsageError(f"coarsen needs [N, 4] probabilities of the 4 ELPV levels, got {tuple(probs4.shape)}.")
    return torch.stack([probs4[:, :2].sum(1), probs4[:, 2:].sum(1)], 1)


def _acc(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float((probs.argmax(1) == y).float().mean())


PROTOCOL = ("backbone, input size, cut and learning rate chosen on the 197 validation cells (select_full: one view, "
            "seed 0); epochs: the weights of the epoch with the lowest validation loss are kept; the 656 test cells "
            "are read once per seed, after training")

# What `ftlab full --select` compares, on the validation split only (docs/results/full.json, "selection").
# Stage 1: backbone, input size and cut at one learning rate; stage 2: the winner's learning rate.
# Every candidate is one whose full run (8 cached views, 3 seeds) was estimated from measured images/s to
# fit 30 minutes on 2 cores; Lite1/Lite2 trained from blocks.5 were estimated at 35 min and more, so are absent.
CANDIDATES: tuple[dict[str, Any], ...] = (
    dict(model="efficientnet_lite0", image_size=224, cut="blocks.5"),
    dict(model="efficientnet_lite0", image_size=224, cut="blocks.6"),
    dict(model="efficientnet_lite0", image_size=300, cut="blocks.6"),
    dict(model="efficientnet_lite1", image_size=240, cut="blocks.6"),
    dict(model="efficientnet_lite2", image_size=260, cut="blocks.6"),
    dict(model="efficientnet_lite2", image_size=300, cut="blocks.6"),
)
LEARNING_RATES: tuple[float, ...] = (1e-2, 3e-3, 3e-2)      # stage 1 uses the first
# Selection runs: one view (8x cheaper to extract than the final run's 8), seed 0, up to 10 epochs, the
# weights of the epoch with the lowest validation loss kept (as in the full run).
SELECT: dict[str, Any] = dict(views=1, epochs=10, seed=0)


def _splits_features(model, splits, size: int, cut: str, views: int, batch_size: int, subset, parts, device):
    dl = make_loaders(splits, preprocessing(model), image_size=size, batch_size=batch_size, subset=subset)
    return {s: extract(model, getattr(dl, s), cut=cut, views=views, device=device)
            for s in parts}


def select_full(candidates: Sequence[dict[str, Any]] | None = None, learning_rates: Sequence[float] | None = None,
                epochs: int = SELECT["epochs"], seed: int = SELECT["seed"], subset: int | float | None = None,
                device: str = "auto", log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Choose backbone, input size, cut and learning rate on the validation split; the test split is not read.

    Stage 1 trains every candidate (default :data:`CANDIDATES`) at ``learning_rates[0]``; stage 2 tries
    the other rates (default :data:`LEARNING_RATES`) on the stage-1 winner. The winner has the highest
    4-class validation accuracy (ties: lower validation loss) at its kept epoch. One view, one seed
    (:data:`SELECT`): selection costs a fraction of a full run.

    Returns:
        ``{"selected_on": "val", "rows": [...], "chosen": {model, image_size, cut, lr}, "seconds"}``.
    """
    candidates, learning_rates = candidates or CANDIDATES, learning_rates or LEARNING_RATES
    say = log or (lambda _: None)
    start = time.perf_counter()
    splits = elpv(classes=4)
    rows: list[dict[str, Any]] = []
    feats_of: dict[tuple, dict] = {}

    def train(c: dict[str, Any], lr: float, stage: int) -> dict[str, Any]:
        key = (c["model"], c["image_size"], c["cut"])
        m = pretrained(c["model"], num_classes=4)
        freeze_to(m, c["cut"])
        if key not in feats_of:
            feats_of[key] = _splits_features(m, splits, c["image_size"], c["cut"], SELECT["views"], FULL["batch_size"],
                                             subset, ("train", "val"), device)
        f = feats_of[key]
        seed_everything(seed)
        t = time.perf_counter()
        h = fit_cached(m, (f["train"], f["val"]), epochs, lr=lr, lr_mult=FULL["lr_mult"], weight_decay=FULL["weight_decay"],
                     batch_size=FULL["batch_size"], seed=seed, device=device, progress=False)
        row = {**c, "lr": lr, "stage": stage, "val_acc4": h.best["val_acc"], "val_loss": h.best["val_loss"],
               "best_epoch": h.best_epoch, "val_acc4_per_epoch": [r["val_acc"] for r in h.rows],
               "train_seconds": time.perf_counter() - t}
        say(f"  {c['model']} {c['image_size']} px from {c['cut']}, lr {lr:g}: val 4-class {row['val_acc4']:.1%} "
            f"(loss {row['val_loss']:.3f}, kept epoch {row['best_epoch'] + 1}, {row['train_seconds']:.0f} s)")
        rows.append(row)
        return row

    def best(rs):
        return max(rs, key=lambda r: (round(r["val_acc4"], 6), -r["val_loss"]))

    say(f"selection on the validation split (seed {seed}, one view, up to {epochs} epochs):")
    winner = best([train(c, learning_rates[0], 1) for c in candidates])
    for lr in learning_rates[1:]:
        train({k: winner[k] for k in ("model", "image_size", "cut")}, lr, 2)
    chosen = best(rows)
    return {"selected_on": "val", "seed": seed, "views": SELECT["views"], "epochs": epochs, "rows": rows,
            "chosen": {k: chosen[k] for k in ("model", "image_size", "cut", "lr")},
            "seconds": time.perf_counter() - start}



def full_run(seeds: Sequence[int] = FULL["seeds"], image_size: int = FULL["image_size"], cut: str = FULL["cut"],
             views: int = FULL["views"], epochs: int = FULL["epochs"], lr: float = FULL["lr"],
             lr_mult: float = FULL["lr_mult"], weight_decay: float = FULL["weight_decay"],
             batch_size: int = FULL["batch_size"], two_class: str = "derived", subset: int | float | None = None,
             model_name: str = FULL["model"], select: bool = False, device: str = "auto", progress: bool = False,
             log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train the full configuration once per seed and score it on the 656 test cells.

    Args:
        seeds: one trained model per seed (initialisation, shuffling, view sampling).
        image_size: input side length.
        cut: the first trained layer group; everything below it is frozen and cached.
        views: 8 (flips and rotations cached, test-time averaging) or 1.
        epochs, lr, lr_mult, weight_decay, batch_size: training of the top groups (see :func:`ftlab.fit`).
        two_class: ``"derived"`` (2-class answer from the 4-class model) or ``"trained"``
            (also train a 2-class model per seed).
        subset: training cells (fraction or per class) for quick checks; None = all 1,771.
        model_name: the backbone (``"efficientnet_lite0"``, ``"_lite1"``, ``"_lite2"``).
        select: first choose ``model_name``, ``image_size``, ``cut`` and ``lr`` on the validation split
            (:func:`select_full`); the chosen values replace the arguments.
        log: progress lines (None = quiet).

    Returns:
        ``{"config", "selection", "runs": [per-seed rows], "summary": {"acc4", "acc2": mean/std/min/max,
        "ensemble_acc4", "ensemble_acc2", "wall_seconds", "extract_seconds", "train_images_per_s"}}``.
    """
    _check_full(views, two_class, seeds)
    say, selection = say_from(log), None
    if select:
        selection = select_full(subset=subset, device=device, log=log)
        model_name, image_size, cut, lr = (selection["chosen"][k] for k in ("model", "image_size", "cut", "lr"))
        say(f"chosen on val: {model_name} at {image_size} px, trained from {cut}, lr {lr:g}")
    start = time.perf_counter()
    model = pretrained(model_name, num_classes=4)
    freeze_to(model, cut)
    say(f"extracting {views} view(s) of the cells at {image_size} px below {cut} (cached on disk after the first run) ...")
    t = time.perf_counter()
    feats = _splits_features(model, elpv(classes=4), image_size, cut, views, batch_size, subset, ("train", "val", "test"),
                             device)
    extract_seconds = time.perf_counter() - t
    recipe = dict(model_name=model_name, cut=cut, epochs=epochs, lr=lr, lr_mult=lr_mult, weight_decay=weight_decay,
                  batch_size=batch_size, two_class=two_class, device=device, progress=progress)
    probs: dict[str, list] = {"acc4": [], "acc2": []}
    line = lambda r: (f"4-class {r['acc4']:.1%}, 2-class {r['acc2']:.1%} ({r['train_seconds']:.0f} s, "  # noqa: E731
                      f"{r['train_images_per_s']:.0f} images/s)")
    runs = per_seed(seeds, lambda seed: _one_seed(feats, seed, recipe, probs), say, line)
    summary = {**summarise(runs, ["acc4", "acc2"] + (["acc2_trained"] if two_class == "trained" else [])),
               "ensemble_acc4": _acc(torch.stack(probs["acc4"]).mean(0), feats["test"].y),
               "ensemble_acc2": _acc(torch.stack(probs["acc2"]).mean(0), (feats["test"].y >= 2).long()),
               "wall_seconds": time.perf_counter() - start, "extract_seconds": extract_seconds,
               "train_images_per_s": statistics.fmean(r["train_images_per_s"] for r in runs),
               "test_cells": len(feats["test"].y), "train_cells": len(feats["train"].y)}
    config = dict(image_size=image_size, cut=cut, views=views, epochs=epochs, lr=lr, lr_mult=lr_mult,
                  weight_decay=weight_decay, batch_size=batch_size, seeds=list(seeds), two_class=two_class,
                  subset=subset, model=model_name, torch_threads=torch.get_num_threads(),
                  selected_on="val", protocol=PROTOCOL)
    return {"config": config, "selection": selection, "runs": runs, "summary": summary}


def _check_full(views: int, two_class: str, seeds: Sequence[int]) -> None:
    if views not in (1, 8):
        raise UsageError(f"views must be 1 or 8 (the flips and quarter turns of a square cell), not {views!r}.")
    if two_class not in ("derived", "trained"):
        raise UsageError(f"two_class must be 'derived' or 'trained', not {two_class!r}.")
    if not seeds:
        raise UsageError("full_run needs at least one seed.")


def _one_seed(feats: dict, seed: int, r: dict, probs: dict[str, list]) -> dict[str, Any]:
    """One seed of the full run: a fresh 4-class model trained on the cached features and read on test once."""
    def trained(num_classes: int, relabel=lambda f: f):
        seed_everything(seed)               # the new head's initialisation too
        m = pretrained(r["model_name"], num_classes=num_classes)
        freeze_to(m, r["cut"])
        h = fit_cached(m, (relabel(feats["train"]), relabel(feats["val"])), r["epochs"], lr=r["lr"], lr_mult=r["lr_mult"],
                       weight_decay=r["weight_decay"], batch_size=r["batch_size"], seed=seed, device=r["device"],
                       progress=r["progress"])
        return m, h

    y2 = {s: (f.y >= 2).long() for s, f in feats.items()}       # == ftlab.elpv(classes=2) labels (tested)
    t = time.perf_counter()
    m, h = trained(4)
    train_seconds = time.perf_counter() - t
    p4 = predict(m, feats["test"], device=r["device"]).probs
    p2 = coarsen(p4)
    probs["acc4"].append(p4)
    probs["acc2"].append(p2)
    row = {"acc4": _acc(p4, feats["test"].y), "acc2": _acc(p2, y2["test"]), "val_acc4": h.best["val_acc"],
           "best_epoch": h.best_epoch, "train_seconds": train_seconds,
           "train_images_per_s": r["epochs"] * len(feats["train"].y) / train_seconds}
    if r["two_class"] == "trained":
        m2, _ = trained(2, lambda f: f.with_targets((f.y >= 2).long()))
        row["acc2_trained"] = _acc(predict(m2, feats["test"], device=r["device"]).probs, y2["test"])
    return row


def save_full(result: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """Write a full-run result as JSON, atomically; an existing file is replaced only with ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists: pass another --out, or --overwrite to replace it.")
    return atomic_write_text(path, json.dumps(result, indent=1))


def load_full(path: str | Path | None = None) -> dict[str, Any] | None:
    """A saved ``full.json`` (``ftlab full``); None = the repository's ``docs/results/full.json``.

    Returns None when the default file is missing; a given path that is missing is an error.
    """
    root = repo_root()
    default = root / "docs" / "results" / "full.json" if root is not None else Path("full.json")
    target = Path(path) if path else default
    if not target.is_file():
        if path:
            raise UsageError(f"No full-run results at {target}: run `ftlab full --out FOLDER` and pass FOLDER/full.json.")
        return None
    try:
        return json.loads(target.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{target} is not a full-run result (bad JSON: {err}).") from err


def format_full(result: dict[str, Any]) -> str:
    """A few lines: per-seed accuracies, mean ± std, the ensemble of the seeds, wall time."""
    s, lines, c = result["summary"], [], result["config"]
    if result.get("selection"):
        sel = result["selection"]
        lines.append(f"selection on {sel['selected_on']} (seed {sel['seed']}, {sel['views']} view, up to {sel['epochs']} "
                      f"epochs; test not read):")
        for r in sel["rows"]:
            lines.append(f"  {r['model']} {r['image_size']} px from {r['cut']}, lr {r['lr']:g}: val 4-class "
                         f"{r['val_acc4']:.1%} (loss {r['val_loss']:.3f}, kept epoch {r['best_epoch'] + 1})")
    chosen_on = c.get("selected_on", "test, in an earlier exploration")
    lines.append(f"{c.get('model', 'efficientnet_lite0')} at {c['image_size']} px, trained from {c['cut']}, lr {c['lr']:g}, "
                 f"{c['views']} views, up to {c['epochs']} epochs (chosen on {chosen_on})")
    for r in result["runs"]:
        lines.append(f"  seed {r['seed']}: 4-class {r['acc4']:.1%}  2-class {r['acc2']:.1%}"
                     + (f" (2-class model: {r['acc2_trained']:.1%})" if "acc2_trained" in r else "")
                     + f"  {r['train_seconds']:.0f} s")
    for name, key in (("2-class test accuracy", "acc2"), ("4-class test accuracy", "acc4")):
        v = s[key]
        lines.append(f"{name}: {v['mean']:.2%} ± {v['std']:.2%} (min {v['min']:.1%}, max {v['max']:.1%})")
    lines += [f"ensemble of the seeds: 2-class {s['ensemble_acc2']:.1%}, 4-class {s['ensemble_acc4']:.1%}",
              f"wall time {s['wall_seconds'] / 60:.1f} min (extraction {s['extract_seconds'] / 60:.1f} min; "
              f"training {s['train_images_per_s']:.0f} images/s)"]
    return "\n".join(lines)
