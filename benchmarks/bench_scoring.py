"""Scoring many fine-tuned copies of one network: from what the frozen part already computed, against from the raw inputs.

Lessons 07 and 09 score every seed's model of every strategy. What lies below their cut is the
pretrained network in all of them, so its output can be computed once. Three measurements, each
two ways side by side on the same model and data (alternating A B A B, medians), each with its check
that both ways give the same numbers:

* ``detector``: ``ft.detection.evaluate(model, tiles)`` against ``evaluate(model, maps)`` on the tree-crown
  test and training tiles, the maps from ``ft.extract(model, tiles, cut="neck")`` (made once, not timed:
  lesson 07 caches them for training anyway); a trained neck and head, as in the lesson. Check: the same
  mAP@0.5 and loss.
* ``perplexity``: ``ft.llm.perplexity(model, tok, headlines)`` against ``perplexity(..., cut="layers.26")``
  for a LoRA copy of SmolLM2 (adapters in layers 26-29, as in lesson 09); the states below the cut are
  read from the features cache (computed by an untimed first call), so the cached way's time includes
  hashing the 120 M weights below the cut, as every call does. Check: the same per-headline values.
* ``few_shot``: ``ft.llm.predict_choices`` on lesson 09's 4-shot prompts in batches of similar length (what
  it does) against batches in the data set's order (patched back), at batch 16. Check: the same
  predictions, logits to 1e-3.

Target: the cached ways at least 2x faster (detector, perplexity), batches by length at least 1.1x
(``pass`` needs all three and every check).
"""
from __future__ import annotations

import copy

import torch
from _common import log, main, median, parser, rnd, timed

import ftlab as ft
from ftlab.caching import engine

TARGETS = {"detector": 2.0, "perplexity": 2.0, "few_shot": 1.1}


def side_by_side(a, b, repeats: int):
    """Median seconds of ``a()`` and ``b()``, alternating (one untimed warm-up of each), and their last results."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t, ra = timed(a)
        ta.append(t)
        t, rb = timed(b)
        tb.append(t)
    return median(ta), median(tb), ra, rb


def detector(repeats: int, quick: bool) -> dict:
    trees = ft.detection.tree_crowns()
    model = ft.detection.pretrained(num_classes=1, class_names=["Tree"])
    ft.freeze_to(model, "neck")
    train = trees.train.subset(list(range(8))) if quick else trees.train
    maps = {s: ft.extract(model, d, cut="neck", cache=False) for s, d in (("test", trees.test), ("train", train))}
    ft.fit_cached(model, maps["train"], 1 if quick else 3, lr=3e-3, batch_size=8, seed=0, progress=False)

    def on(parts):
        return [ft.detection.evaluate(model, p) for p in parts]

    t_tiles, t_maps, r_tiles, r_maps = side_by_side(lambda: on([trees.test, train]), lambda: on(maps.values()), repeats)
    same = all(abs(x["map_50"] - y["map_50"]) < 1e-6 and abs(x["loss"] - y["loss"]) <= 1e-4 * abs(x["loss"])
               for x, y in zip(r_tiles, r_maps))
    return {"tiles_seconds_median": rnd(t_tiles), "maps_seconds_median": rnd(t_maps), "speedup": rnd(t_tiles / t_maps, 2),
            "same_map_and_loss": same, "map_50": [rnd(r["map_50"]) for r in r_maps],
            "tiles": [len(trees.test), len(train)]}


def perplexity(repeats: int, quick: bool) -> dict:
    base, tok = ft.llm.pretrained(), ft.llm.tokenizer()
    model = ft.llm.add_lora(copy.deepcopy(base), r=8, layers=range(26, 30))
    with torch.no_grad():                                      # a trained-looking adapter, so the two models differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    headlines = ft.llm.headlines(10 if quick else 50)
    ft.llm.perplexity(model, tok, headlines, per_text=True, cut="layers.26")        # the states below the cut, once
    t_whole, t_cut, whole, cut = side_by_side(lambda: ft.llm.perplexity(model, tok, headlines, per_text=True),
                                              lambda: ft.llm.perplexity(model, tok, headlines, per_text=True,
                                                                        cut="layers.26"), repeats)
    return {"whole_seconds_median": rnd(t_whole), "cut_seconds_median": rnd(t_cut), "speedup": rnd(t_whole / t_cut, 2),
            "max_abs_difference_nats": float((whole - cut).abs().max()),
            "same_values": bool(torch.allclose(whole, cut, atol=1e-5)),
            "headlines": len(headlines)}


def few_shot(repeats: int, quick: bool) -> dict:
    model, tok = ft.llm.pretrained(), ft.llm.tokenizer()
    splits = ft.text.rotten_tomatoes()
    val = ft.llm.task_pairs(splits.val, per_class=10 if quick else 50, seed=0)
    train = ft.llm.task_pairs(splits.train, per_class=80, seed=0)
    by_class = [sorted((p for p in train if p[1] == c), key=lambda p: len(p[0]))[:2] for c in splits.classes]
    shots = [p for pair in zip(*by_class) for p in pair]
    loader = ft.llm.instruction_loader(val, tok, batch_size=16, max_length=512, shots=shots)
    sorted_batches = engine.by_length

    def in_order(ds, lengths, batch_size, collate):
        return sorted_batches(ds, list(range(len(lengths))), batch_size, collate)

    def run(patched: bool):
        engine.by_length = in_order if patched else sorted_batches
        try:
            return ft.llm.predict_choices(model, loader, tok, splits.classes)
        finally:
            engine.by_length = sorted_batches

    t_order, t_length, r_order, r_length = side_by_side(lambda: run(True), lambda: run(False), repeats)
    pad = {}
    for name, lengths in (("in_order", list(range(len(loader.dataset)))), ("by_length", None)):
        dl = sorted_batches(loader.dataset, lengths or [len(it["input_ids"]) for it in loader.dataset.items], 16,
                            loader.collate_fn)
        total = sum(b["input_ids"].numel() for b in dl)
        pad[name] = rnd(1 - sum(int(b["attention_mask"].sum()) for b in dl) / total, 3)
    return {"in_order_seconds_median": rnd(t_order), "by_length_seconds_median": rnd(t_length),
            "speedup": rnd(t_order / t_length, 2), "padding_share": pad,
            "same_predictions": bool(torch.equal(r_order.preds, r_length.preds)
                                     and torch.allclose(r_order.logits, r_length.logits, atol=1e-3)),
            "prompts": len(val)}


def run(args) -> dict:
    repeats = 2 if args.quick else args.repeats
    out = {}
    for name, fn in (("detector", detector), ("perplexity", perplexity), ("few_shot", few_shot)):
        log(f"{name} ...")
        out[name] = {**fn(repeats, args.quick), "target_speedup": TARGETS[name]}
    checks = [out["detector"]["same_map_and_loss"], out["perplexity"]["same_values"], out["few_shot"]["same_predictions"]]
    return {"benchmark": "scoring", **out, "repeats": repeats,
            "pass": all(checks) and all(out[k]["speedup"] >= t for k, t in TARGETS.items())}


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=416)
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each way (medians)")
    main(run, p.parse_args())
