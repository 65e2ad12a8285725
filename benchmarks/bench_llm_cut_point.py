"""Decoder cut-point caching: SmolLM2's top layers trained on stored token states against end-to-end training.

Two trained parts, each trained two ways on the same (instruction, answer) pairs of lesson 09
(Rotten Tomatoes snippets asked "fresh or rotten?", the loss on the answer tokens only,
``step=ft.llm.lm_step``), same seed, same batches, same learning rate:

* ``lora``: LoRA r=8 on the attention projections of the top four layers (``layers.26``-``29``),
  every weight frozen but those adapters and the final norm — the lesson's LoRA arm;
* ``top``: every weight of the top four layers and the final norm (``ft.freeze_to(model, "layers.26")``).

**End to end:** ``ft.fit`` on ``ft.llm.instruction_loader`` batches: all 30 layers run on every batch
of every epoch. **Cut-point cached:** ``ft.extract(model, loader, cut="layers.26")`` once for train
and val (timed, included in the total), then ``ft.fit_cached`` on the stored token states: only the
four top layers run. The frozen part runs without dropout, so both compute the same updates: the
JSON shows both runs' per-epoch losses as the check (they must agree to 1e-3; float32 sums in
another order).

Memory: each (part, way) also runs once in a fresh process (spawned, the model loaded from the
cache) and reports its resident set size with the model loaded and its peak during the run (the
peak is reset after the load, which peaks higher than either way of training).

Target (issue 25): the top layers on cached states >= 3x faster **per epoch** than end-to-end
training of the same trained part, with the same losses.
"""
from __future__ import annotations

import copy
import gc
import multiprocessing as mp
import resource

import torch
from _common import log, main, median, parser, rnd, setup, timed

import ftlab as ft

TARGET_SPEEDUP = 3.0
CUT, LR = "layers.26", 1e-3
PARTS = ("lora", "top")


def build(base, part: str, seed: int = 0):
    """The trained part on a copy of the decoder; LoRA's random A matrices drawn with ``seed`` (the same for both ways)."""
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    if part == "top":
        ft.freeze_to(model, CUT)
        return model
    return ft.llm.add_lora(model, r=8, layers=range(26, 30))


def loaders(texts: int, tok):
    splits = ft.text.rotten_tomatoes()
    pairs = {"train": ft.llm.task_pairs(splits.train, per_class=texts),
             "val": ft.llm.task_pairs(splits.val, per_class=max(4, texts // 2))}
    return {k: ft.llm.instruction_loader(v, tok, batch_size=8, shuffle=k == "train", max_length=128)
            for k, v in pairs.items()}


def plain(base, L, part, epochs, seed):
    model = build(base, part, seed)
    return timed(lambda: ft.fit(model, (L["train"], L["val"]), epochs, lr=LR, seed=seed, step=ft.llm.lm_step,
                                restore_best=False, device="cpu", progress=False))


def cached(base, L, part, epochs, seed):
    model = build(base, part, seed)
    t_x, (tr, va) = timed(lambda: [ft.extract(model, L[k], cut=CUT, cache=False, device="cpu") for k in ("train", "val")])
    t_fit, h = timed(lambda: ft.fit_cached(model, (tr, va), epochs, lr=LR, batch_size=8, seed=seed, step=ft.llm.lm_step,
                                           restore_best=False, device="cpu", progress=False))
    return t_x + t_fit, h, t_x


def _status_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak(way: str, part: str, texts: int, epochs: int, threads: int, queue) -> None:
    """One run in a fresh process: its resident memory with the model loaded, and its peak during the run (MB).

    Loading the decoder (its cached copy) peaks higher than either way of training; so the peak is reset
    (Linux: ``/proc/self/clear_refs``) after the load and read (``VmHWM``) after the run.
    """
    setup(threads)
    base, tok = ft.llm.pretrained(), ft.llm.tokenizer()
    L = loaders(texts, tok)
    gc.collect()
    loaded = _status_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:                       # not Linux, or not allowed: the peak then includes the load
        reset = False
    (plain if way == "plain" else cached)(base, L, part, epochs, 0)
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"loaded": loaded, "peak": peak, "peak_reset_after_load": reset})


def peak_mb(way: str, part: str, texts: int, epochs: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak, args=(way, part, texts, epochs, threads, q))
    p.start()
    mb = q.get()
    p.join()
    return mb


def compare(base, L, part, epochs, repeats) -> dict:
    plain_s, cached_s, extract_s, per_epoch_p, per_epoch_c, diffs, losses = [], [], [], [], [], [], []
    for r in range(repeats):
        sp, hp = plain(base, L, part, epochs, seed=r)
        sc, hc, tx = cached(base, L, part, epochs, seed=r)
        plain_s.append(sp), cached_s.append(sc), extract_s.append(tx)
        per_epoch_p.append(median([x["seconds"] for x in hp.rows]))
        per_epoch_c.append(median([x["seconds"] for x in hc.rows]))
        diffs.append(max(max(abs(a["train_loss"] - b["train_loss"]), abs(a["val_loss"] - b["val_loss"]))
                         for a, b in zip(hp.rows, hc.rows)))
        losses.append({"seed": r, "plain_train_loss": [rnd(x["train_loss"], 5) for x in hp.rows],
                       "cached_train_loss": [rnd(x["train_loss"], 5) for x in hc.rows],
                       "plain_val_loss": [rnd(x["val_loss"], 5) for x in hp.rows],
                       "cached_val_loss": [rnd(x["val_loss"], 5) for x in hc.rows]})
        log(f"  {part} repeat {r}: end to end {sp:.1f}s, cached {sc:.1f}s (extraction {tx:.1f}s); "
            f"max loss difference {diffs[-1]:.1e}")
    return {"trainable": ft.trainable_count(build(base, part)),
            "speedup_per_epoch": rnd(median(per_epoch_p) / median(per_epoch_c), 2),
            "speedup_extraction_included": rnd(median(plain_s) / median(cached_s), 2),
            "plain_epoch_seconds_median": rnd(median(per_epoch_p), 2),
            "cached_epoch_seconds_median": rnd(median(per_epoch_c), 2),
            "extract_seconds_median": rnd(median(extract_s), 2),
            "plain_seconds": [rnd(s, 2) for s in plain_s], "cached_seconds": [rnd(s, 2) for s in cached_s],
            "max_loss_difference": max(diffs), "same_losses": max(diffs) <= 1e-3, "losses": losses}


def run(args) -> dict:
    texts = 8 if args.quick else args.texts
    epochs = 1 if args.quick else args.epochs
    repeats = 1 if args.quick else args.repeats
    base, tok = ft.llm.pretrained(), ft.llm.tokenizer()
    L = loaders(texts, tok)
    log(f"decoder cut point {CUT}: {len(L['train'].dataset)} train / {len(L['val'].dataset)} val snippets, "
        f"{epochs} epoch(s), {repeats} repeat(s)")
    parts = {part: compare(base, L, part, epochs, repeats) for part in PARTS}
    if not args.no_memory:
        for part in PARTS:
            parts[part]["memory_mb"] = {way: {k: rnd(v, 0) if not isinstance(v, bool) else v
                                              for k, v in peak_mb(way, part, texts, epochs, args.threads).items()}
                                        for way in ("plain", "cached")}
            log(f"  {part} memory: {parts[part]['memory_mb']}")
    ok = all(p["speedup_per_epoch"] >= TARGET_SPEEDUP and p["same_losses"] for p in parts.values())
    return {
        "benchmark": "llm_cut_point",
        "target": f"the decoder's top layers on cached token states >= {TARGET_SPEEDUP:g}x faster per epoch than "
                  "end-to-end training of the same trained part (LoRA in the top four layers; the top four layers "
                  "fully), with the same losses (within 1e-3)",
        "pass": ok, "parts": parts, "cut": CUT, "lr": LR, "n_texts": len(L["train"].dataset),
        "n_val_texts": len(L["val"].dataset), "epochs": epochs, "batch_size": 8, "repeats": repeats,
    }


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0], image_size=0)
    p.add_argument("--texts", type=int, default=32, help="training snippets per class")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each run")
    p.add_argument("--repeats", type=int, default=2, help="end-to-end / cached pairs per trained part")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs in fresh processes")
    main(run, p.parse_args())
