"""One fine-tuning experiment as a function: task, data, strategy, data budget, augmentation, seed → metrics.

What ``notebooks/experiment.ipynb`` (and so ``ftlab sweep``) and lesson 05 run, for every modality:

* ``task="images"``: an EfficientNet-Lite on ELPV (or an image folder), accuracy;
* ``task="text"``: MiniLM on the Rotten Tomatoes snippets, accuracy;
* ``task="detection"``: YOLOv3-tiny on the NEON tree crowns, mean average precision;
* ``task="llm"``: SmolLM2-135M-Instruct asked "fresh or rotten?" about the Rotten Tomatoes snippets,
  scored by its likelier answer token (lesson 09): ``zero_shot`` (the prompt, its decision threshold
  chosen on validation), ``top<k>`` (the top k layer groups on cached token states: ``top5`` is
  layers 26-29 and the final norm) or ``lora`` (LoRA r=8 in the top four layers), accuracy.

The strategies and their training are the lab's (:mod:`ftlab.lab.strategies`: ``linear_probe``,
``head``, ``top<k>``, ``full``, ``scratch``; detection has no linear probe); this adds each task's
model (pretrained, or random weights for ``scratch``), its loaders and, for boxes, its score.
"""
from __future__ import annotations

import re
import time
from typing import Any

from ..batches import seed_everything
from ..caching import fit_cached
from ..errors import UsageError
from ..freezing import train_top, trainable_count
from ..groups import layer_groups
from ..splits import Splits
from ..train import fit
from .strategies import STRATEGIES, run_strategy, strategy_top

__all__ = ["TASKS", "experiment_data", "run_experiment", "correct_from_text"]

TASKS = ("images", "text", "detection", "llm")
TASK_DATA = {"images": "elpv", "text": "rotten_tomatoes", "detection": "tree_crowns", "llm": "rotten_tomatoes"}
LLM_LORA_LAYERS = 4          # ``lora``: LoRA r=8 in the decoder's top four layers (lesson 09)


def experiment_data(task: str = "images", name: str | None = None, classes: int = 2) -> Splits:
    """A task's data set by name (default: ELPV, the Rotten Tomatoes snippets, the NEON tree crowns);
    ``classes`` is ELPV's 2 or 4 and ignored elsewhere; an image task also takes a folder path."""
    if task not in TASKS:
        raise UsageError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    name = name or TASK_DATA[task]
    if task == "images":
        from ..vision.loading import dataset
    elif task in ("text", "llm"):
        from ..text.data import dataset
    else:
        from ..detection.data import dataset
    return dataset(name, **({"classes": classes} if name == "elpv" else {}))


def _model_and_loaders(task: str, splits: Splits, weights: bool, strategy: str, image_size: int, subset, augment: str,
                       batch_size: int | None, seed: int, model_name: str | None, eval_subset=None):
    """The task's fresh model (its new head seeded by ``seed``) and its loaders."""
    seed_everything(seed)           # the new head's initialisation depends on the seed, not on earlier runs
    if task == "images":
        from ..vision.loading import loaders
        from ..vision.models import preprocessing, pretrained
        model = pretrained(model_name or "efficientnet_lite0", num_classes=len(splits.classes),
                           weights="imagenet" if weights else None)
        strategy_top(model, strategy)   # an unknown strategy fails before any data is prepared
        return model, loaders(splits, preprocessing(model), image_size=image_size, batch_size=batch_size or 32,
                              subset=subset, eval_subset=eval_subset, augment=augment if strategy != "linear_probe" else "none",
                              seed=seed)
    if task == "text":
        from ..text.loading import loaders
        from ..text.models import pretrained
        model = pretrained(model_name, num_classes=len(splits.classes), weights="pretrained" if weights else None)
        strategy_top(model, strategy)
        return model, loaders(splits, model, batch_size=batch_size or 32, augment=augment, subset=subset,
                              eval_subset=eval_subset, seed=seed)
    from ..detection.data import loaders
    from ..detection.models import pretrained
    if strategy == "linear_probe":
        raise UsageError("A detector has no linear probe: use head, top<k>, full or scratch for task='detection'.")
    model = pretrained(model_name, num_classes=len(splits.classes), class_names=list(splits.classes),
                       weights="pretrained" if weights else None)
    strategy_top(model, strategy)
    return model, loaders(splits, model, batch_size=batch_size or 8, augment=augment, subset=subset,
                          eval_subset=eval_subset, seed=seed)


def _detection_strategy(model, loaders, strategy: str, epochs: int, lr: float, lr_mult: float, weight_decay: float,
                        seed: int, device: str) -> dict[str, Any]:
    """Train a detector's top ``k`` groups (on cached maps when the bottom is frozen and nothing is augmented)
    and score it by mAP on the validation and test tiles."""
    from ..detection.predict import evaluate

    start = time.perf_counter()
    k = strategy_top(model, strategy)
    train_top(model, k)
    cached = k < len(layer_groups(model)) and getattr(loaders.train.dataset, "transform", None) is None
    kw = dict(lr=lr, lr_mult=lr_mult if k > 1 else None, weight_decay=weight_decay, seed=seed, device=device,
              progress=False, restore_best=False)
    history = fit_cached(model, (loaders.train, None), epochs, **kw) if cached else fit(model, (loaders.train, None),
                                                                                         epochs, **kw)
    val, test = evaluate(model, loaders.val, device=device), evaluate(model, loaders.test, device=device)
    return {"strategy": strategy, "test_map_50": test["map_50"], "test_map": test["map"], "val_map_50": val["map_50"],
            "trainable": trainable_count(model), "epochs_run": len(history), "cached": cached,
            "seconds": time.perf_counter() - start}


def _llm_strategy(strategy: str, groups: int | None = None) -> int:
    """How many layer groups from the top a decoder strategy trains (0: the prompt; ``groups``: the model's count)."""
    if strategy == "zero_shot":
        return 0
    if strategy == "lora":
        return LLM_LORA_LAYERS + 1                    # its layers and the final norm
    k = int(strategy[3:]) if re.fullmatch(r"top\d+", strategy) else 0
    if not k or (groups is not None and k >= groups):
        raise UsageError(f"Unknown decoder strategy {strategy!r}: use zero_shot, lora or top<k> with k from 1 to "
                         f"{groups - 1 if groups else 'the number of layer groups above the embeddings'} (the top k "
                         "layer groups, trained on cached token states).")
    return k


def _llm_experiment(splits: Splits, strategy: str, subset, eval_subset, epochs: int, lr: float, seed: int,
                    device: str) -> dict[str, Any]:
    """The decoder asked fresh or rotten (lesson 09): the prompt as it is, or its top layers / LoRA trained on token states."""
    from ..caching import extract
    from ..freezing import freeze_to
    from ..groups import group_names
    from ..llm import add_lora, decide, instruction_loader, lm_step, margin_threshold, predict_choices, task_pairs
    from ..llm.models import pretrained, tokenizer

    _llm_strategy(strategy)                          # a misspelt strategy fails before the model is loaded
    start, model, tok = time.perf_counter(), pretrained(), tokenizer()
    names = group_names(model)
    k = _llm_strategy(strategy, len(names))
    cut = names[-max(k, 1)]                          # the prompt: states below the final norm, every layer run once
    freeze_to(model, cut)
    pairs = {"train": task_pairs(splits.train, per_class=subset, seed=seed),        # the seed draws the training snippets
             "val": task_pairs(splits.val, per_class=eval_subset), "test": task_pairs(splits.test, per_class=eval_subset)}
    states = {s: extract(model, instruction_loader(p, tok, batch_size=8), cut=cut, device=device)
              for s, p in pairs.items() if s != "train" or k}
    if k:
        if strategy == "lora":
            add_lora(model, r=8, layers=cut)
        fit_cached(model, (states["train"], None), epochs, lr=lr, seed=seed, batch_size=8, step=lm_step,
                   restore_best=False, device=device, progress=False)
    val, test = (predict_choices(model, states[s], tok, list(splits.classes), device=device) for s in ("val", "test"))
    if k:
        val_right, test_right = (p.preds == p.targets for p in (val, test))
    else:                                            # the prompt: its threshold chosen on validation, applied to test
        threshold = margin_threshold(val)
        val_right, test_right = (decide(p, threshold) == p.targets for p in (val, test))
    return {"strategy": strategy, "test_acc": test_right.float().mean().item(), "test_correct": test_right,
            "val_acc": val_right.float().mean().item(), "trainable": trainable_count(model) if k else 0,
            "seconds": time.perf_counter() - start, "train_images": len(pairs["train"]) if k else 0}


def run_experiment(splits: Splits, strategy: str = "head", image_size: int = 96, subset: int | float | None = None,
                   augment: str = "none", epochs: int = 5, lr: float = 3e-3, lr_mult: float = 10.0,
                   weight_decay: float = 0.01, batch_size: int | None = None, seed: int = 0,
                   model_name: str | None = None, device: str = "auto", task: str = "images",
                   eval_subset: int | float | None = None) -> dict[str, Any]:
    """Train one strategy on a task's data and score it on the fixed test split.

    Args:
        splits: the data (``ft.vision.elpv(classes=...)``, ``ft.text.rotten_tomatoes()``, ``ft.detection.tree_crowns()``).
        strategy: a name of :data:`ftlab.lab.strategies.STRATEGIES` or ``top<k>``.
        image_size: input side length (images only).
        subset: training-set size (a fraction, or items per class; tiles for detection); None = all.
        augment: augmentation preset (the cached strategies then train end to end; text has none).
        epochs: training epochs.
        lr: head learning rate; earlier groups get down to ``lr / lr_mult``.
        batch_size: default 32 (images, text), 8 (detection).
        seed: seed of subset, shuffling and the new head's initialisation.
        model_name: the task's model (default EfficientNet-Lite0, MiniLM, YOLOv3-tiny).
        task: ``"images"``, ``"text"``, ``"detection"`` or ``"llm"`` (strategies ``zero_shot``, ``top<k>``, ``lora``).
        eval_subset: validation and test items per class (a quick run; None: the whole splits, as a sweep
            that is compared should use).

    Returns:
        Images and text: ``{"strategy", "test_acc", "test_correct", "val_acc", "trainable", "seconds",
        "train_images", ...}`` (no history); ``test_correct`` is one character per test example, ``"1"``
        right and ``"0"`` wrong (in the test loader's order), so that a sweep's runs can be compared
        pairwise (:func:`ftlab.lab.paired` takes :func:`correct_from_text` of it). Detection:
        ``test_map_50``, ``test_map`` (mAP@0.5:0.95) and ``val_map_50`` instead of the accuracies.
    """
    if task not in TASKS:
        raise UsageError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    if not isinstance(splits, Splits):
        raise UsageError(f"run_experiment needs the Splits of a data set, not {type(splits).__name__}.")
    if task == "llm":
        row = _llm_experiment(splits, strategy, subset, eval_subset, epochs, lr, seed, device)
        row["test_correct"] = "".join("1" if v else "0" for v in row["test_correct"].tolist())
        return {**row, "task": task, "image_size": None, "augment": "none", "seed": seed, "epochs": epochs}
    weights = STRATEGIES.get(strategy, {"pretrained": True})["pretrained"]
    model, loaders = _model_and_loaders(task, splits, weights, strategy, image_size, subset, augment, batch_size, seed,
                                        model_name, eval_subset)
    if task == "detection":
        row = _detection_strategy(model, loaders, strategy, epochs, lr, lr_mult, weight_decay, seed, device)
    else:
        row = run_strategy(model, loaders, strategy, epochs=epochs, lr=lr, lr_mult=lr_mult, weight_decay=weight_decay,
                           seed=seed, device=device)
        row.pop("history", None)
        row["test_correct"] = "".join("1" if v else "0" for v in row["test_correct"].tolist())
    return {**row, "task": task, "image_size": image_size if task == "images" else None, "augment": augment,
            "seed": seed, "train_images": len(loaders.train.dataset), "epochs": epochs}


def correct_from_text(text: str):
    """The per-example scores of a recorded run (``"0110..."``, see :func:`run_experiment`) as a float array."""
    import numpy as np

    if not isinstance(text, str) or not text or set(text) - {"0", "1"}:
        raise UsageError("test_correct is a string of 0s and 1s, one per test example (runs made before it was "
                         "recorded have none: rerun the sweep).")
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")
