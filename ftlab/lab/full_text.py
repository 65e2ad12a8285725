"""The full text run: MiniLM on all Rotten Tomatoes training snippets, configuration chosen on validation.

``ftlab full --task text`` (or :func:`text_full_run`). The protocol:

1. **Selection on validation** (``select=True``, seed 0 only): every candidate of
   :data:`CANDIDATES` (cut point, learning rate) trains on the training split; after each epoch
   its validation accuracy is measured. The candidate and epoch count with the best validation
   accuracy become the configuration. The test split is not read.
2. **The run**: the chosen configuration trains once per seed for exactly that many epochs;
   each seed's model is scored on the test split once. The summary is mean ± std over the
   seeds and the ensemble of the seeds (averaged probabilities).

Speed on a 2-core CPU comes from cut-point caching (:func:`ftlab.extract` on token states): the
layers below the cut are run once over all snippets and shared by every seed and candidate;
only the top layers and the head train.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from ..batches import seed_everything
from ..caching import extract, fit_cached
from ..freezing import freeze_to
from ..text.data import rotten_tomatoes
from ..text.loading import loaders as make_loaders
from ..text.models import pretrained, tokenizer
from ..train import predict
from .protocol import choose_candidate_epoch, per_seed, say_from, settings, summarise

__all__ = ["TEXT_FULL", "CANDIDATES", "text_full_run", "format_text_full"]

# The documented full configuration (README, "Full text run"): cut, lr and epochs as chosen on the
# validation split by `ftlab full --task text --select` (docs/results/text_full.json, "selection").
TEXT_FULL: dict[str, Any] = dict(cut="layer.3", lr=1e-4, lr_mult=1.0, epochs=2, weight_decay=0.01, batch_size=32,
                                 max_length=64, seeds=(0, 1, 2))
# What selection compares: (cut, lr); each for up to TEXT_FULL["epochs"] epochs.
CANDIDATES: tuple[tuple[str, float], ...] = (("layer.4", 1e-4), ("layer.4", 3e-4), ("layer.3", 1e-4), ("layer.3", 3e-4))


def _train(feats: dict, cut: str, lr: float, epochs: int, seed: int, cfg: dict, with_val: bool):
    """A fresh MiniLM classifier trained from ``cut`` up on that cut's cached states ``feats`` (train, val)."""
    model = pretrained(num_classes=2)
    freeze_to(model, cut)
    seed_everything(seed)
    model.classifier.reset_parameters()
    history = fit_cached(model, (feats["train"], feats["val"] if with_val else None), epochs, lr=lr,
                         lr_mult=cfg["lr_mult"], weight_decay=cfg["weight_decay"], batch_size=cfg["batch_size"],
                         seed=seed, restore_best=False, device="cpu", progress=False)
    return model, history


def _text_features(cfg: dict, subset, say) -> tuple[Any, Callable[[str], dict]]:
    """The splits, and the hidden states below a cut of every split (extracted once per cut, on first use)."""
    splits = rotten_tomatoes()
    L = make_loaders(splits, tokenizer(), max_length=cfg["max_length"], batch_size=cfg["batch_size"], subset=subset)
    base = pretrained(num_classes=2)
    feats: dict[str, dict[str, Any]] = {}

    def features(cut: str) -> dict[str, Any]:
        if cut not in feats:
            t = time.perf_counter()
            freeze_to(base, cut)
            feats[cut] = {s: extract(base, getattr(L, s), cut, device="cpu") for s in ("train", "val", "test")}
            say(f"hidden states below {cut} of {sum(len(f) for f in feats[cut].values())} snippets: "
                f"{time.perf_counter() - t:.0f} s")
        return feats[cut]

    return splits, features


def _select_text(cfg: dict, features, say) -> dict[str, Any]:
    """Every candidate trained on seed 0 with its validation accuracy after each epoch; the best (candidate, epochs)."""
    rows = []
    for cut, lr in CANDIDATES:
        t = time.perf_counter()
        _, h = _train(features(cut), cut, lr, cfg["epochs"], 0, cfg, with_val=True)
        accs = [r["val_acc"] for r in h.rows]
        rows.append({"cut": cut, "lr": lr, "val_acc_per_epoch": accs, "seconds": time.perf_counter() - t})
        say(f"selection {cut} lr={lr:g}: val accuracy per epoch {', '.join(f'{a:.1%}' for a in accs)}")
    best, epochs, choice = choose_candidate_epoch(rows, "val_acc_per_epoch", on="val")
    cfg.update(cut=best["cut"], lr=best["lr"], epochs=epochs)
    say(f"chosen on validation: cut {cfg['cut']}, lr {cfg['lr']:g}, {cfg['epochs']} epochs")
    return {"selected_on": "val", "seed": 0, "candidates": rows, "choice": choice,
            "chosen": {"cut": cfg["cut"], "lr": cfg["lr"], "epochs": cfg["epochs"]}}


def text_full_run(seeds: Sequence[int] = TEXT_FULL["seeds"], select: bool = False, subset: int | float | None = None,
                  progress: bool | Callable[[str], None] = True, **overrides: Any) -> dict[str, Any]:
    """Run the full text configuration (optionally choosing it on validation first).

    Args:
        seeds: one model per seed, each scored on the test split once.
        select: first choose cut, learning rate and epochs among :data:`CANDIDATES` by validation accuracy (seed 0).
        subset: training snippets per class or a fraction (a quick check; the full run uses all).
        progress: print progress lines (or a function that takes them).
        **overrides: keys of :data:`TEXT_FULL` (``cut``, ``lr``, ``epochs``, ...).

    Returns:
        ``{"config", "selection", "runs", "summary"}``, JSON-ready.
    """
    cfg, say = settings(TEXT_FULL, overrides, seeds), say_from(progress)
    start = time.perf_counter()
    splits, features = _text_features(cfg, subset, say)
    selection = _select_text(cfg, features, say) if select else None
    test = features(cfg["cut"])["test"]
    probs = []

    def run_one(seed: int) -> dict[str, Any]:
        t = time.perf_counter()
        model, _ = _train(features(cfg["cut"]), cfg["cut"], cfg["lr"], cfg["epochs"], seed, cfg,
                          with_val=False)
        probs.append(predict(model, test, device="cpu").probs)
        return {"acc": float((probs[-1].argmax(1) == test.y).float().mean()), "train_seconds": time.perf_counter() - t}

    runs = per_seed(cfg["seeds"], run_one, say, lambda r: f"test accuracy {r['acc']:.1%} ({r['train_seconds']:.0f} s)")
    y = test.y
    summary = {**summarise(runs, ["acc"]), "ensemble_acc": float((torch.stack(probs).mean(0).argmax(1) == y).float().mean()),
               "majority_acc": float((y == y.bincount().argmax()).float().mean()),
               "wall_seconds": time.perf_counter() - start, "train_snippets": len(features(cfg["cut"])["train"]),
               "test_snippets": len(y)}
    config = {**cfg, "subset": subset, "model": "all-MiniLM-L6-v2", "data": splits.name, "selected_on": "val",
              "torch_threads": torch.get_num_threads()}
    return {"config": config, "selection": selection, "runs": runs, "summary": summary}


def format_text_full(result: dict[str, Any]) -> str:
    """A few lines: the chosen configuration, per-seed accuracies, mean ± std, ensemble, wall time."""
    c, s = result["config"], result["summary"]
    lines = [f"MiniLM, trained from {c['cut']} up, lr {c['lr']:g}, {c['epochs']} epochs (chosen on {c['selected_on']})"]
    lines += [f"  seed {r['seed']}: test {r['acc']:.1%}  ({r['train_seconds']:.0f} s)" for r in result["runs"]]
    a = s["acc"]
    lines += [f"test accuracy: {a['mean']:.2%} ± {a['std']:.2%} (min {a['min']:.1%}, max {a['max']:.1%}); "
              f"ensemble {s['ensemble_acc']:.1%}; majority class {s['majority_acc']:.1%}",
              f"wall time {s['wall_seconds'] / 60:.1f} min on {c['torch_threads']} threads"]
    return "\n".join(lines)
