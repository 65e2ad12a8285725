"""The full decoder run: SmolLM2-135M-Instruct asked fresh or rotten, its top layers tuned on cached token states.

``ftlab full --task llm`` (or :func:`llm_full_run`), lesson 09 at full size. The protocol:

1. **Token states once.** The 26 frozen layers below the cut run once over a training pool, the
   validation snippets and the **whole** test split of lesson 06 (2,558 snippets); every
   candidate, epoch and seed trains the layers above the cut on the stored states.
2. **The prompt as it is, calibrated on validation**: the zero-shot decision threshold
   (:func:`ftlab.llm.margin_threshold`) is chosen on the validation snippets and applied to the
   test snippets once — the baseline the fine-tuned decoder is compared with.
3. **Selection on validation** (``select=True``, seed 0 only): every candidate of
   :data:`CANDIDATES` (what trains — the top layers fully, or LoRA in them — and the learning
   rate) trains for up to ``epochs`` epochs; after each epoch the validation accuracy (the likelier
   answer token) is measured. The best (candidate, epoch count) becomes the configuration.
4. **The run**: the chosen configuration trains once per seed (each seed draws its own
   ``train_per_class`` snippets per class from the pool and its own batch order) and is scored on
   the test split once. The summary: mean ± std over the seeds, and the paired difference with the
   calibrated zero-shot prompt over test snippets and seeds (:func:`ftlab.lab.paired`).
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..caching import extract, fit_cached
from ..callbacks import Callback
from ..errors import UsageError
from ..freezing import freeze_to
from ..llm import add_lora, decide, instruction_loader, lm_step, margin_threshold, predict_choices, task_pairs
from ..llm.models import pretrained, tokenizer
from ..text.data import rotten_tomatoes
from .evidence import majority_baseline, paired
from .protocol import choose_candidate_epoch, per_seed, say_from, settings, summarise

__all__ = ["LLM_FULL", "CANDIDATES", "llm_full_run", "format_llm_full"]

# The documented configuration (README, "Full decoder run"): strategy, lr and epochs as chosen on the
# validation split by `ftlab full --task llm --select` (docs/results/llm_full.json, "selection").
LLM_FULL: dict[str, Any] = dict(cut="layers.26", strategy="top", lr=1e-3, epochs=3, lora_rank=8, batch_size=8,
                                max_length=128, pool_per_class=500, train_per_class=400, val_per_class=250,
                                test_per_class=None, seeds=(0, 1, 2))
# What selection compares: (what trains above the cut, lr); each for up to LLM_FULL["epochs"] epochs.
CANDIDATES: tuple[tuple[str, float], ...] = (("top", 1e-3), ("top", 3e-4), ("lora", 3e-3), ("lora", 1e-2))


class _ValChoices(Callback):
    """After every epoch, the validation accuracy of the likelier answer token (what the run is scored by)."""

    def __init__(self, model, val, tok, choices):
        # the whole decoder: fit sees only the part above the cut
        self.model, self.val, self.tok, self.choices, self.accs = model, val, tok, choices, []

    def on_epoch_end(self, state):
        p = predict_choices(self.model, self.val, self.tok, self.choices, device="cpu")    # eval_mode gives modes back
        self.accs.append(float((p.preds == p.targets).float().mean()))


def _draw(pairs: Sequence[tuple[str, str]], per_class: int, seed: int) -> list[int]:
    """``per_class`` indices of each answer, drawn with ``seed`` (nested: a larger draw holds a smaller one)."""
    rng = np.random.default_rng(seed)
    keep = []
    for answer in sorted({a for _, a in pairs}):
        own = [i for i, (_, a) in enumerate(pairs) if a == answer]
        keep += [own[j] for j in rng.permutation(len(own))[:per_class]]
    return sorted(keep)


def _states(cfg: dict, say) -> tuple[Any, Any, Any, dict, dict]:
    """The pretrained decoder, its tokenizer, the splits, the (instruction, answer) pairs and their token states."""
    splits, tok, model = rotten_tomatoes(), tokenizer(), pretrained()
    pairs = {"train": task_pairs(splits.train, per_class=cfg["pool_per_class"]),
             "val": task_pairs(splits.val, per_class=cfg["val_per_class"]),
             "test": task_pairs(splits.test, per_class=cfg["test_per_class"])}       # None: the whole test split
    t = time.perf_counter()
    freeze_to(model, cfg["cut"])
    states = {k: extract(model, instruction_loader(v, tok, batch_size=cfg["batch_size"], max_length=cfg["max_length"]),
                         cut=cfg["cut"], device="cpu") for k, v in pairs.items()}
    say(f"token states below {cfg['cut']} of {sum(len(v) for v in pairs.values()):,} snippets: "
        f"{time.perf_counter() - t:.0f} s")
    return model, tok, splits, pairs, states


def _build(model, cfg: dict, strategy: str):
    """A copy of the decoder that trains above the cut: every weight there (``top``) or LoRA in those layers."""
    m = copy.deepcopy(model)
    if strategy == "top":
        freeze_to(m, cfg["cut"])
        return m
    return add_lora(m, r=cfg["lora_rank"], layers=cfg["cut"])


def _train(m, train, lr: float, epochs: int, seed: int, cfg: dict, callbacks=()):
    """``m`` (from :func:`_build`) trained above the cut on the token states ``train``, no validation during the run."""
    fit_cached(m, (train, None), epochs, lr=lr, seed=seed, batch_size=cfg["batch_size"], step=lm_step,
               restore_best=False, callbacks=callbacks, device="cpu", progress=False)
    return m


def _select(model, tok, choices, pairs, states, cfg: dict, say) -> dict[str, Any]:
    """Every candidate on seed 0's draw, validation accuracy after each epoch; the best (candidate, epochs)."""
    train = states["train"].subset(_draw(pairs["train"], cfg["train_per_class"], 0))
    rows = []
    for strategy, lr in CANDIDATES:
        t, m = time.perf_counter(), _build(model, cfg, strategy)
        watch = _ValChoices(m, states["val"], tok, choices)
        _train(m, train, lr, cfg["epochs"], 0, cfg, callbacks=[watch])
        rows.append({"strategy": strategy, "lr": lr, "val_acc_per_epoch": watch.accs, "seconds": time.perf_counter() - t})
        say(f"selection {strategy} lr={lr:g}: val accuracy per epoch {', '.join(f'{a:.1%}' for a in watch.accs)}")
    best, epochs, choice = choose_candidate_epoch(rows, "val_acc_per_epoch", on="val")
    cfg.update(strategy=best["strategy"], lr=best["lr"], epochs=epochs)
    say(f"chosen on validation: {cfg['strategy']}, lr {cfg['lr']:g}, {cfg['epochs']} epoch(s)")
    return {"selected_on": "val", "seed": 0, "candidates": rows, "choice": choice,
            "chosen": {"strategy": cfg["strategy"], "lr": cfg["lr"], "epochs": cfg["epochs"]}}


def llm_full_run(seeds: Sequence[int] = LLM_FULL["seeds"], select: bool = False,
                 progress: bool | Callable[[str], None] = True, **overrides: Any) -> dict[str, Any]:
    """Run the full decoder configuration (optionally choosing it on validation first).

    Args:
        seeds: one model per seed (its own draw of training snippets), each scored on the test split once.
        select: first choose the strategy, learning rate and epochs among :data:`CANDIDATES` by
            validation accuracy (seed 0).
        progress: print progress lines (or a function that takes them).
        **overrides: keys of :data:`LLM_FULL` (``cut``, ``lr``, ``epochs``, ``train_per_class``, ...).

    Returns:
        ``{"config", "selection", "runs", "summary"}``, JSON-ready.
    """
    cfg, say = settings(LLM_FULL, overrides, seeds), say_from(progress)
    if cfg["train_per_class"] > cfg["pool_per_class"]:
        raise UsageError(f"train_per_class ({cfg['train_per_class']}) is more than the pool it is drawn from "
                         f"(pool_per_class {cfg['pool_per_class']}): raise pool_per_class or lower train_per_class.")
    if cfg["strategy"] not in ("top", "lora"):
        raise UsageError(f"strategy must be 'top' (the top layers, every weight) or 'lora', not {cfg['strategy']!r}.")
    start = time.perf_counter()
    model, tok, splits, pairs, states = _states(cfg, say)
    choices = list(splits.classes)
    zero = {k: predict_choices(model, states[k], tok, choices, device="cpu") for k in ("val", "test")}
    threshold = margin_threshold(zero["val"])
    zero_right = (decide(zero["test"], threshold) == zero["test"].targets).float()
    say(f"zero-shot, threshold {threshold:.2f} chosen on validation: test {zero_right.mean():.1%}")
    selection = _select(model, tok, choices, pairs, states, cfg, say) if select else None
    right = []

    def run_one(seed: int) -> dict[str, Any]:
        t = time.perf_counter()
        train = states["train"].subset(_draw(pairs["train"], cfg["train_per_class"], seed))
        m = _train(_build(model, cfg, cfg["strategy"]), train, cfg["lr"], cfg["epochs"], seed, cfg)
        p = predict_choices(m, states["test"], tok, choices, device="cpu")
        right.append((p.preds == p.targets).float())
        return {"acc": float(right[-1].mean()), "train_seconds": time.perf_counter() - t}

    runs = per_seed(cfg["seeds"], run_one, say, lambda r: f"test accuracy {r['acc']:.1%} ({r['train_seconds']:.0f} s)")
    y = zero["test"].targets
    gain = paired(right, [zero_right] * len(right))
    summary = {**summarise(runs, ["acc"]), "zero_shot_calibrated_acc": float(zero_right.mean()),
               "zero_shot_threshold": threshold, "gain_over_zero_shot": {**gain.summary(), "text": gain.format()},
               "majority_acc": float(majority_baseline(splits.train.targets, y).mean()),     # the training split's class
               "wall_seconds": time.perf_counter() - start, "train_snippets": 2 * cfg["train_per_class"],
               "test_snippets": len(y)}
    config = {**cfg, "model": "SmolLM2-135M-Instruct", "data": "rotten_tomatoes", "selected_on": "val",
              "torch_threads": torch.get_num_threads()}
    return {"config": config, "selection": selection, "runs": runs, "summary": summary}


def format_llm_full(result: dict[str, Any]) -> str:
    """A few lines: the chosen configuration, per-seed accuracies, mean ± std, the gain over the prompt, wall time."""
    c, s = result["config"], result["summary"]
    what = "its top layers" if c["strategy"] == "top" else f"LoRA r={c['lora_rank']} in its top layers"
    lines = [f"SmolLM2-135M-Instruct, {what} from {c['cut']} up, lr {c['lr']:g}, {c['epochs']} epoch(s) "
             f"(chosen on {c['selected_on']}), {s['train_snippets']:,} training snippets per seed"]
    lines += [f"  seed {r['seed']}: test {r['acc']:.1%}  ({r['train_seconds']:.0f} s)" for r in result["runs"]]
    a = s["acc"]
    lines += [f"test accuracy on {s['test_snippets']:,} snippets: {a['mean']:.2%} ± {a['std']:.2%}; zero-shot prompt, "
              f"calibrated on validation, {s['zero_shot_calibrated_acc']:.1%}; majority class {s['majority_acc']:.1%}",
              f"fine-tuned - calibrated prompt: {s['gain_over_zero_shot']['text']}",
              f"wall time {s['wall_seconds'] / 60:.1f} min on {c['torch_threads']} threads"]
    return "\n".join(lines)
