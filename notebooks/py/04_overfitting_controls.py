# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -slideshow
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ftlab)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 04 — Overfitting controls
#
# With little data, a fine-tuned network memorises its training set: training accuracy climbs
# to 100 % while validation accuracy stalls. This lesson creates that situation on purpose and
# tries the standard controls, **each alone and all together**, on several seeds, and reads what
# they change: the train–validation gap, the weights, and the accuracy on unseen cells.
#
# **Learning goals**
#
# 1. Recognise overfitting: the gap between training and validation accuracy, measured on the same weights.
# 2. Use data augmentation (and check it keeps the label true), weight decay (toward zero, or toward the
#    pretrained weights: L2-SP), dropout and early stopping.
# 3. Decide with evidence — paired differences on the same test cells and seeds, with their intervals —
#    which controls help on this data, and say so when the data cannot tell.

# %% tags=["parameters"]
# Parameters
DATASET = "elpv"
CLASSES = 2
IMAGE_SIZE = 64
SUBSET = 0.1  # type: float|int|None - 10 % of the training split: the small-data regime
EPOCHS = 8
BATCH_SIZE = 16
LR = 2e-3             # the head's peak rate; the lowest trained group gets LR / 10
TOP = 3               # train the top 3 layer groups, the head counted (enough capacity to overfit)
SCHEDULE = "cosine"   # the rate only falls: no warm-up for early stopping to mistake for overfitting
WEIGHT_DECAY = 5.0    # strong enough to shrink the weights measurably in this short run (section 5)
DROPOUT = 0.5
PATIENCE = 2          # early stopping: epochs without a better validation loss
SEEDS = 3             # every setting runs on seeds 0 .. SEEDS-1
STRENGTHS = [0.5, 50.0]   # more strengths of weight decay and L2-SP (section 5b), next to WEIGHT_DECAY
DEVICE = "auto"
OUT_DIR = None

# %%
import ftlab as ft
import torch

splits = ft.vision.dataset(DATASET, **({"classes": CLASSES} if DATASET == "elpv" else {}))
n_classes = len(splits.classes)
print(f"{len(ft.stratified_subset(splits.train, SUBSET, 0))} training images, {len(splits.val)} for validation, "
      f"{len(splits.test)} for the test")

# %% [markdown]
# ## 1. Augmentation: does it keep the label true?
#
# Before adding augmentation, look at it. A solar cell is square; flipping it or turning it by
# 90 degrees moves the busbars but keeps every crack a crack, so the label stays true. The
# `strong` preset adds random crops and brightness/contrast changes. Use the explorer to redraw.

# %%
ft.plot.augmentations(splits.train, index=3, preset="strong", n=7, size=IMAGE_SIZE)

# %%
ft.widgets.AugmentationExplorer(splits.train, size=IMAGE_SIZE)

# %% [markdown]
# **Can a crop change the label?** Yes. `strong` keeps 60–100 % of the area, so a crop may cut
# away up to about a fifth of each side, and cracks often start at the edge of a cell, next to
# the soldered ribbons. A crop that removes the only crack turns a defective cell into a picture
# of a good one, still labelled defective. ELPV records no crack positions, so we cannot count how
# often that happens. Brightness changes are safer: the defects stay visible.
#
# This lesson therefore augments with the **8 exact symmetries** of a square (flips and quarter
# turns, `ft.vision.D4`), which can never change a label. They have a second advantage:
# they are a fixed set, so their activations can be cached (next section).

# %% [markdown]
# ## 2. Compute the frozen bottom once
#
# Every run freezes the same pretrained bottom and trains the top `TOP` layer groups. As in
# lesson 02, the frozen part's output is computed once and cached: `cut="auto"` cuts at the
# first trainable group. The training cells are cached twice, as they are and in all 8
# symmetries; training on the symmetries shows each cell in a random one of them every epoch.
# Training on cached activations gives the same result as `ft.fit` end-to-end, several times
# faster — which is what makes several seeds of every setting affordable here.

# %%
base = ft.vision.pretrained(num_classes=n_classes)
ft.train_top(base, TOP)
def drawn(seed):
    """A seed's own training cells (a stratified draw of SUBSET): the seed varies the data, not only the head."""
    return ft.vision.loaders(splits, ft.vision.preprocessing(base), image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                             subset=SUBSET, seed=seed)


loaders_of = {seed: drawn(seed) for seed in range(SEEDS)}
draws = {seed: (ft.extract(base, L.train, cut="auto", device=DEVICE),
                ft.extract(base, L.train, cut="auto", device=DEVICE, views=8)) for seed, L in loaders_of.items()}
train, train_sym = draws[0]                                # seed 0's, for the printouts
loaders = loaders_of[0]
val = ft.extract(base, loaders.val, cut="auto", device=DEVICE)
test = ft.extract(base, loaders.test, cut="auto", device=DEVICE)
majority = ft.lab.majority_baseline(train.y, test.y).mean().item()      # the class from the training cells
print(f"cut before {ft.group_names(base)[train.cut]}: training activations {tuple(train.x.shape)}, "
      f"with symmetries {tuple(train_sym.x.shape)}")
print(f"always answering the majority class scores {majority:.1%} on the test cells")


# %% [markdown]
# ## 3. The runs
#
# One function trains a fresh model with a given set of controls. Everything else is equal:
#
# - **the same start**: the seed is set *before* the model is built, so at a given seed every
#   control starts from the same random head (and sees the batches in the same order);
# - **the same weights for every score**: the runs keep their last epoch's weights, and train
#   accuracy (on the training cells without augmentation), validation and test accuracy are all
#   measured on them. Early stopping is the exception by design: it ends on the weights of its
#   best epoch (lowest validation loss), and those are the weights that are scored;
# - **several seeds, the same test cells**: each seed draws its own training cells (the same number, in the
#   classes' shares) and its own head, and at a seed every control trains on that same draw; a control and
#   none are compared paired, at each seed and on each test cell, so the interval of a difference holds both
#   kinds of noise: which cells trained, and which cells tested.
#
# Weight decay pulls every trained weight toward zero; **L2-SP** (`ft.L2SP`) pulls each
# pretrained weight back toward its pretrained value θ₀ instead, with the same strength (the
# new head, which has no θ₀, decays toward zero in both).

# %%
def pretrained_weights(model):
    """The trainable pretrained weight tensors (not the new head, not biases or norms)."""
    head = {id(p) for m in ft.layer_groups(model)[-1].modules for p in m.parameters()}
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1 and id(p) not in head]


def run(seed, symmetries=False, weight_decay=0.0, l2sp=0.0, dropout=0.0, early_stopping=None, monitor="val_loss"):
    ft.seed_everything(seed)                               # the same random head for every control
    model = ft.vision.set_dropout(ft.vision.pretrained(num_classes=n_classes), dropout)
    ft.train_top(model, TOP)
    start = [p.detach().clone() for p in pretrained_weights(model)]
    train, train_sym = draws[seed]                          # this seed's own training cells
    history = ft.fit_cached(model, (train_sym if symmetries else train, val), EPOCHS, lr=LR, lr_mult=10,
                            batch_size=BATCH_SIZE, weight_decay=weight_decay, scheduler=SCHEDULE,
                            callbacks=[ft.L2SP(l2sp)] if l2sp else [], early_stopping=early_stopping, monitor=monitor,
                            restore_best=early_stopping is not None, seed=seed, device=DEVICE, progress=False)
    end = pretrained_weights(model)
    norm0 = torch.cat([w.flatten() for w in start]).norm()
    acc = {split: ft.evaluate(model, feats, device=DEVICE)["acc"] for split, feats in (("train", train), ("val", val))}
    scored = ft.predict(model, test, device=DEVICE)
    acc["test"] = (scored.preds == scored.targets).float().mean().item()
    kept = history.kept_epoch + 1                          # the epoch whose weights the run ends with
    return {**acc, "gap": acc["train"] - acc["val"], "epochs": len(history), "kept": kept, "history": history, "scored": scored,
            "norm": (torch.cat([w.flatten() for w in end]).norm() / norm0 - 1).item(),
            "moved": (torch.cat([(w - w0).flatten() for w, w0 in zip(end, start)]).norm() / norm0).item()}


# %%
controls = {
    "none": {},
    "symmetries": {"symmetries": True},
    "weight decay": {"weight_decay": WEIGHT_DECAY},
    "L2-SP": {"l2sp": WEIGHT_DECAY},
    "dropout": {"dropout": DROPOUT},
    "early stopping": {"early_stopping": PATIENCE},
    "all together": {"symmetries": True, "weight_decay": WEIGHT_DECAY, "dropout": DROPOUT, "early_stopping": PATIENCE},
}
runs = {name: [run(seed, **kwargs) for seed in range(SEEDS)] for name, kwargs in controls.items()}


def across(name, key):
    """One metric of one control over the seeds, with its spread."""
    return ft.lab.spread([r[key] for r in runs[name]])


# %% [markdown]
# ## 4. The curves
#
# Solid lines are training, dashed lines validation (seed 0). Without controls the training
# accuracy runs away from the validation accuracy; compare the run on the symmetries.
# A star marks the epoch whose weights a run kept: the last one, since these runs do not go back
# to their best epoch; a hollow circle marks the epoch with the lowest validation loss where that is
# another one.

# %%
ft.plot.history([runs["none"][0]["history"], runs["symmetries"][0]["history"]], labels=["none", "symmetries"])


# %% [markdown]
# ## 5. The evidence
#
# The table gives every control's mean ± standard deviation over the seeds, all measured on the
# weights each run ended with. The gap is training minus validation accuracy. The last column
# gives the epochs each seed ran and, for early stopping, the epoch whose weights it kept.

# %%
def epochs(r):
    return str(r["epochs"]) if r["kept"] == r["epochs"] else f"{r['epochs']} (kept {r['kept']})"


rows = [[name, *[str(across(name, k)) for k in ("train", "val", "gap", "test")], " / ".join(epochs(r) for r in runs[name])]
        for name in runs]
rows.append(["majority class", "", "", "", f"{majority:.1%}", ""])
ft.Table(["control", "train acc", "val acc", "gap", "test acc", "epochs run per seed"], rows,
         title=f"{SEEDS} seeds, top {TOP} groups trained, {len(train.y)} training cells")

# %%
ft.plot.spread({name: [r["gap"] for r in rs] for name, rs in runs.items()},
               xlabel="train - validation accuracy (gap)", title="The gap per seed (dots), mean ± std (bars)")

# %%
ft.plot.spread({name: [r["test"] for r in rs] for name, rs in runs.items()}, baseline=majority)

# %% [markdown]
# Each control against none, **paired**: at a seed both runs start from the same head and are
# scored on the same 656 test cells, so `ft.lab.paired` gives the mean test-accuracy difference with
# a 95 % interval that resamples the test cells and the seeds. An interval that straddles 0 does not
# rank the two.

# %%
vs_none = {c: ft.lab.paired([r["scored"] for r in runs[c]], [r["scored"] for r in runs["none"]]) for c in runs if c != "none"}
for c, d in vs_none.items():
    print(f"{c:15} - none: {d}")

# %% [markdown]
# **What the weight penalties did to the weights.** AdamW's weight decay multiplies each weight by
# `1 - lr × weight_decay` every step. With peak learning rates from `LR / 10` (the lowest trained
# group) to `LR` (the head), falling along the cosine, and about a hundred steps, the usual `weight_decay=0.01` would shrink the weights by less than a tenth of a
# percent: a no-op. That is why `WEIGHT_DECAY` is large here. Below, the norm change of the
# trainable pretrained weights and how far they moved from θ₀ (both relative to ‖θ₀‖).

# %%
for name in ("none", "weight decay", "L2-SP"):
    print(f"{name:13} norm change {across(name, 'norm').mean:+.2%}   moved from θ₀ {across(name, 'moved').mean:.2%}")

# %% [markdown]
# **Why shrinking the weights changes so little here.** Every trained pretrained weight tensor of
# these top groups is a convolution that feeds a BatchNorm layer, and BatchNorm divides by the scale
# of its input: multiply a convolution's weights by any positive factor and, with the batch's own statistics
# (as in training), the next layer sees the same numbers. So the shrinking above hardly changes what
# the network computes; what it changes is the effective step size of the later updates (van Laarhoven 2017,
# *L2 regularization versus batch and weight normalization*). The cancellation is not exact: BatchNorm adds a
# small ε (0.001) to each channel's variance, and some channels here vary little. Try it on a fresh
# model: shrink every trained pretrained weight tensor by 10 % (about what the weight decay above did), or
# move it by the same distance in a random direction, and compare the logits on one batch. (The check
# uses the batch's statistics; a trained model is scored with BatchNorm's running statistics, which
# cancel a shrinking only once they have caught up with it during training.)

# %%
ft.seed_everything(0)                                 # the new head's random start, the same in every run
probe_model = ft.vision.set_dropout(ft.vision.pretrained(num_classes=n_classes), 0.0)
ft.train_top(probe_model, TOP)
probe_model.train()                                   # BatchNorm normalises with the batch's statistics, as in training
batch = next(iter(loaders.val))[0]
weights = pretrained_weights(probe_model)


def logit_change(move):
    """How much the logits of one batch change (relative to their size) when every weight tensor w becomes move(w)."""
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        before = probe_model(batch)
        for w in weights:
            w.copy_(move(w))
        after = probe_model(batch)
        for w, s in zip(weights, saved):
            w.copy_(s)
    return ((after - before).norm() / before.norm()).item()


def random_step(w):
    """w moved by a tenth of its length in a random direction."""
    d = torch.randn_like(w)
    return w + d / d.norm() * 0.1 * w.norm()


bn_scale = logit_change(lambda w: 0.9 * w)
bn_randoms = [logit_change(random_step) for _ in range(5)]    # five random directions: one could be a lucky one
bn_random = sum(bn_randoms) / len(bn_randoms)
print(f"{len(weights)} trained weight tensors, each moved by a tenth of its length; change of the logits:\n"
      f"  shrunk by 10 % (a change of scale)         {bn_scale:6.1%}\n"
      f"  moved in a random direction (mean of 5)    {bn_random:6.1%}   "
      f"(from {min(bn_randoms):.1%} to {max(bn_randoms):.1%})")

# %% [markdown]
# ## 5b. How strong, and stopping on what?
#
# Two settings above were fixed by hand: the penalties' strength and what early stopping watches.
# Both deserve a measurement. First the strength: weight decay and L2-SP at `STRENGTHS` as well as at
# `WEIGHT_DECAY`, each against none on the same seeds and test cells. Then early stopping on the
# validation **accuracy** instead of the validation loss (same patience). The loss can rise while the
# accuracy still improves: the network grows over-confident on the cells it gets wrong, and the loss
# punishes confidence, the accuracy does not.

# %%
for strength in STRENGTHS:
    for name, key in (("weight decay", "weight_decay"), ("L2-SP", "l2sp")):
        runs[f"{name} {strength:g}"] = [run(seed, **{key: strength}) for seed in range(SEEDS)]
runs["early stopping (val acc)"] = [run(seed, early_stopping=PATIENCE, monitor="val_acc") for seed in range(SEEDS)]
extra = [k for k in runs if k not in controls]
rows = [[name, str(across(name, "gap")), f"{across(name, 'norm').mean:+.1%}",
         "(the reference)" if name == "none" else
         str(ft.lab.paired([r["scored"] for r in runs[name]], [r["scored"] for r in runs["none"]])),
         " / ".join(str(r["kept"]) for r in runs[name])]
        for name in ["none", "weight decay", "L2-SP", *[k for k in extra if "stopping" not in k], "early stopping",
                     "early stopping (val acc)"]]
ft.Table(["run", "gap", "norm change", "test - none", "epoch kept per seed"], rows,
         title=f"strengths {STRENGTHS} and {WEIGHT_DECAY:g} (the table above); early stopping on loss and on accuracy")


# %% [markdown]
# Is the loss rising while the accuracy climbs? Without controls, for each seed: the epoch of the lowest
# validation loss, how much the loss has risen from there by the last epoch, and how the validation
# accuracy moved over the same epochs.

# %%
def over_confidence(history):
    loss, acc = history["val_loss"], history["val_acc"]
    low = history.best_epoch               # the lowest validation loss (ft.fit's monitor), recorded by ft.fit
    return {"lowest loss at epoch": low + 1, "loss rise after it": loss[-1] - loss[low],
            "accuracy change after it (points)": 100 * (acc[-1] - acc[low])}


confidence = [over_confidence(r["history"]) for r in runs["none"]]
ft.Table(["seed", *confidence[0]], [[seed, c["lowest loss at epoch"], f'{c["loss rise after it"]:+.3f}',
                                     f'{c["accuracy change after it (points)"]:+.1f}'] for seed, c in enumerate(confidence)],
         title="no controls: validation loss and accuracy after the lowest validation loss")

# %% [markdown]
# At the defaults the validation loss is lowest in the first epochs and then rises on every seed, while
# the validation accuracy ends no lower than it was at that epoch (checked at the end). The network grows
# more confident on the cells it gets wrong — the loss punishes that, the accuracy does not see it. The
# accuracy changes are a few validation cells each: they show that the accuracy did not fall, not that
# it rose. So "the loss rises" is not "the model gets worse" here, and stopping on the loss keeps an
# early epoch (the table above: epochs 1-3).

# %% [markdown]
# At the defaults, read the table row by row (the claims at the end check it):
#
# - **Weight decay** at 50, ten times `WEIGHT_DECAY`, cuts the norm of the trained pretrained weights by
#   almost half and leaves the gap where it was: BatchNorm's scale invariance (section 5) at work. Weaker
#   decay does even less.
# - **L2-SP** at 50 narrows the gap, on every seed (checked below): a pull toward θ₀ is not a change
#   of scale, and it does change what the network computes. At 0.5 and 5 it changes little.
# - **Early stopping** on the validation accuracy keeps different epochs than on the loss (last column;
#   at the defaults, later ones on every seed): the loss can rise while the accuracy still improves
#   (over-confidence), and a discrete accuracy ties often (the earlier epoch is kept), so which rule
#   stops later depends on the run.
# - **Test accuracy**: no strength and neither stopping rule is shown to change it; every interval
#   contains 0.

# %% [markdown]
# ## 6. Reading the evidence
#
# At the defaults (177 cells, 8 epochs, the top 3 groups trained):
#
# - **Overfitting is there**: without controls the network fits its training cells almost
#   perfectly, and the gap to validation is large on every seed.
# - **The symmetries narrow the gap clearly**, on every seed: seeing each cell in eight orientations,
#   the network memorises less in 8 epochs (its training accuracy is still about 90 %).
# - **Weight decay** shrinks the weights, and so moves them *away* from the pretrained values;
#   **L2-SP** keeps them a little closer to θ₀ than no penalty does, on every seed. Neither changes
#   the gap much at this strength, and neither does dropout. For weight decay that is no surprise:
#   the shrinking is a change of scale, and BatchNorm all but cancels it (the check above). In a network
#   without normalisation layers, toward zero would be a real pull away from what pretraining found;
#   for the new head, which has no pretrained values, shrinking scales the logits: a real change that
#   accuracy barely sees.
# - **Early stopping** ends on the epoch with the lowest validation loss. The epoch it keeps changes
#   from seed to seed (the last column of the table): the validation cells are the same at every seed, so the
#   variation comes from the runs themselves (each seed's own training cells, the new layers' start, the order
#   of the batches), read through a small validation set. Where the validation loss rises from the
#   first epochs while the accuracy does not fall (over-confidence, section 5b), stopping on the loss keeps an
#   early epoch that may not have finished learning: stopping on accuracy is the other rule section 5b shows.
# - **Test accuracy**: no control is shown to help or to hurt. Against none, paired over the same
#   test cells and seeds, every interval contains 0 (printed above). For weight decay, L2-SP and
#   dropout the intervals are narrow enough to show that any effect is smaller than 3 points; for
#   the symmetries, early stopping and all together they are too wide even for that: within the
#   noise here, undecided either way. A narrower gap does not by itself mean better accuracy on new
#   cells.
#
# So the answer to *"How do I prevent overfitting?"* is a measurement, not a rule: here the label-preserving
# augmentation narrows the gap on every seed (early stopping about as much on average, but unevenly; all together narrow it more), the penalties need a strength that is printed, not guessed,
# and on the test accuracy that matters in the end no control is shown to beat no controls at all
# (each was compared with none, not with each other) at 177 training and 656 test cells.

# %% [markdown]
# Each statement above, as a claim checked against this run:

# %%
def mean(name, metric):
    return across(name, metric).mean


def key(name):
    return name.replace(" ", "_").replace("-", "")


gaps = {name: [r["gap"] for r in rs] for name, rs in runs.items()}
WIDE = ("symmetries", "early stopping", "all together")
strongest = max(STRENGTHS)    # the prose: too wide to show equivalence at the defaults
claims = [
    ft.lab.claim("without controls, on every seed the validation loss ends above its lowest value while the validation "
                 "accuracy ends no lower than at that epoch (over-confidence)",
                 all(c["loss rise after it"] > 0 and c["accuracy change after it (points)"] >= 0 for c in confidence),
                 loss_rises=[c["loss rise after it"] for c in confidence],
                 accuracy_changes=[c["accuracy change after it (points)"] for c in confidence]),
    ft.lab.claim("without controls the gap between train and validation accuracy is over 10 points on every seed",
             min(gaps["none"]) > 0.10, smallest_gap=min(gaps["none"])),
    ft.lab.claim("the symmetries narrow the gap on every seed, by more than 5 points on average",
             all(s < n for s, n in zip(gaps["symmetries"], gaps["none"]))
             and mean("symmetries", "gap") < mean("none", "gap") - 0.05,
             gap_none=mean("none", "gap"), gap_symmetries=mean("symmetries", "gap")),
    ft.lab.claim("weight decay shrinks the pretrained weights by more than 3 % and moves them further from θ₀ than no penalty",
             mean("weight decay", "norm") < -0.03 and mean("weight decay", "moved") > mean("none", "moved"),
             norm_change=mean("weight decay", "norm"), moved_wd=mean("weight decay", "moved"), moved_none=mean("none", "moved")),
    ft.lab.claim("L2-SP keeps the weights closer to θ₀ than no penalty at all, on every seed (same start at each seed)",
             all(a["moved"] < b["moved"] for a, b in zip(runs["L2-SP"], runs["none"])),
             moved_l2sp=mean("L2-SP", "moved"), moved_none=mean("none", "moved")),
    ft.lab.claim("BatchNorm all but cancels a change of scale: shrinking the trained pretrained weights by 10 % moves "
                 "the logits less than a third as much as a random move of the same size (5 directions)",
                 bn_scale < bn_random / 3,
                 scale=bn_scale, random=bn_random),
    ft.lab.claim("weight decay, L2-SP and dropout each change the mean gap by less than 3 points",
             all(abs(mean(c, "gap") - mean("none", "gap")) < 0.03 for c in ("weight decay", "L2-SP", "dropout")),
             **{f"gap_{key(c)}": mean(c, "gap") for c in ("none", "weight decay", "L2-SP", "dropout")}),
    ft.lab.claim("no control's test accuracy differs from no controls' beyond the noise (every paired interval contains 0)",
                 all(d.low < 0 < d.high for d in vs_none.values()), **{key(c): d.format() for c, d in vs_none.items()}),
    *[ft.lab.claim(f"{c}: test accuracy within 3 points of no controls (equivalence, paired over test cells and seeds)",
                   vs_none[c], within=0.03, expect="undecided" if c in WIDE else "holds") for c in vs_none],
    ft.lab.claim("the epoch early stopping keeps is not the same on every seed",
             len({r["kept"] for r in runs["early stopping"]}) > 1, kept=str([r["kept"] for r in runs["early stopping"]])),
    ft.lab.claim(f"weight decay at {strongest:g} shrinks the trained pretrained weights by more than 30 % and changes "
                 "the mean gap by less than 3 points", mean(f"weight decay {strongest:g}", "norm") < -0.30
                 and abs(mean(f"weight decay {strongest:g}", "gap") - mean("none", "gap")) < 0.03,
                 norm_change=mean(f"weight decay {strongest:g}", "norm"), gap=mean(f"weight decay {strongest:g}", "gap")),
    ft.lab.claim(f"L2-SP at {strongest:g} narrows the gap on every seed (same start at each seed), by more than 2 points "
                 "on average", all(a["gap"] < b["gap"] for a, b in zip(runs[f"L2-SP {strongest:g}"], runs["none"]))
                 and mean(f"L2-SP {strongest:g}", "gap") < mean("none", "gap") - 0.02,
                 gaps_l2sp=str([round(r["gap"], 3) for r in runs[f"L2-SP {strongest:g}"]]),
                 gaps_none=str([round(g, 3) for g in gaps["none"]])),
    *[ft.lab.claim(f"{name}: beats no controls on test accuracy (paired)", ft.lab.paired(
        [r["scored"] for r in runs[name]], [r["scored"] for r in runs["none"]]), above=0.0, expect="undecided")
      for name in extra],
    ft.lab.claim("every run of the seven controls beats always answering the majority class by more than 5 points",
             min(r["test"] for n in controls for r in runs[n]) > majority + 0.05,
             worst=min(r["test"] for n in controls for r in runs[n]), majority=majority),
]
ft.lab.check_claims(claims)

# %%
ft.lab.record("04_overfitting_controls", OUT_DIR, claims=claims, seeds=SEEDS, majority=majority,
          **{f"test_acc_{key(n)}": mean(n, "test") for n in controls},
          **{f"test_std_{key(n)}": across(n, "test").std for n in controls},
          **{f"gap_{key(n)}": mean(n, "gap") for n in controls});

# %% [markdown]
# ## Graded exercises
#
# The controls by your own hand. Each exercise cell is followed by a **check cell**: run it and it says what
# is right and what is not. Your teacher's copy has a few more hidden checks; grading runs them all
# (`ftlab grade`).

# %% [markdown]
# **Exercise 04.1 · A model to control.** Build `my_model`: the pretrained model with a new head for
# `n_classes` classes (`ft.vision.pretrained(num_classes=...)`), dropout `DROPOUT` in front of the head, and the
# top `TOP` layer groups trainable (the head counted), everything below them frozen.

# %%
### BEGIN SOLUTION
my_model = ft.vision.set_dropout(ft.vision.pretrained(num_classes=n_classes), DROPOUT)
ft.train_top(my_model, TOP)
### END SOLUTION

# %%
def dropout_acts(model):
    """Training mode: the same cell gives different outputs (dropout at work); evaluation mode: the same outputs."""
    x = next(iter(loaders.val))[0][:4]
    with torch.no_grad():
        ft.train_mode(model)
        differ = not torch.equal(model(x), model(x))
        model.eval()
        same = torch.equal(model(x), model(x))
    return differ and same


# %%
with ft.lab.exercise("04.1", "a new head, dropout before it, the top groups trainable", out_dir=OUT_DIR) as ex:
    ex.check(f"the top {TOP} groups train, every earlier one is frozen",
             lambda: ft.lab.grading.trains_only(my_model, *ft.group_names(my_model)[-TOP:]),
             hint="ft.train_top(my_model, TOP)")
    ex.check("the head has one output per class", lambda: my_model.get_classifier().out_features == n_classes)
    ### BEGIN HIDDEN TESTS
    ex.check("dropout DROPOUT in front of the head: two training-mode passes differ, evaluation-mode passes do not",
             lambda: my_model.drop_rate == DROPOUT and dropout_acts(my_model))
    ### END HIDDEN TESTS

# %% [markdown]
# **Exercise 04.2 · Weight decay where it belongs, and early stopping's epoch.** (a) Make `my_optimizer`, an
# AdamW over what trains in `my_model`, with weight decay `WEIGHT_DECAY` on the weight matrices and kernels and
# none on biases and normalisation parameters (`ft.param_groups` does this). (b) In the first seed's run without
# controls, `runs["none"][0]["history"]`, find the epoch early stopping would keep — the one with the lowest
# validation loss — with `ft.lab.choose` (on the validation split, of course), and put the choice in
# `my_choice`. (`history.to_list()` gives one dict per epoch, epochs counted from 1.)

# %%
### BEGIN SOLUTION
my_optimizer = torch.optim.AdamW(ft.param_groups(my_model, lr=LR, weight_decay=WEIGHT_DECAY))
epochs = {i + 1: row["val_loss"] for i, row in enumerate(runs["none"][0]["history"].to_list())}
my_choice = ft.lab.choose("the epoch early stopping keeps", epochs, on="val", higher=False)
### END SOLUTION

# %%
with ft.lab.exercise("04.2", "weight decay on weights only; early stopping's epoch chosen on validation",
                     out_dir=OUT_DIR) as ex:
    ex.check("my_optimizer holds every trainable tensor and no frozen one",
             lambda: ft.lab.grading.optimizer_sees(my_optimizer, my_model))
    ex.check("weight decay WEIGHT_DECAY on weight matrices and kernels, 0 on biases and norms",
             lambda: all((g["weight_decay"] == WEIGHT_DECAY) == (p.ndim > 1) for g in my_optimizer.param_groups
                         for p in g["params"]),
             hint="ft.param_groups(my_model, lr=LR, weight_decay=WEIGHT_DECAY) splits them for you")
    ex.check("the choice is made on the validation split", lambda: my_choice.on == "val")
    ### BEGIN HIDDEN TESTS
    reference = ft.lab.choose("the epoch early stopping keeps (the check's own)",
                              {i + 1: row["val_loss"] for i, row in enumerate(runs["none"][0]["history"].to_list())},
                              on="val", higher=False)
    ex.check("it is the epoch with the lowest validation loss", lambda: my_choice.best == reference.best)
    ### END HIDDEN TESTS

# %% [markdown]
# ## Exercises
#
# 1. **Random augmentation needs end-to-end training.** Cached activations cannot see a random crop.
#    Train the top groups with `ft.fit` on `ft.vision.loaders(..., augment="light")` and then `"strong"`
#    (one seed each, `seed=` in `ft.fit`): how do gap and test accuracy compare with the symmetries, and
#    how much longer does a run take?
#    <details><summary>Hint</summary>Build the model after <code>ft.seed_everything(seed)</code>, call
#    <code>ft.train_top(model, TOP)</code>, then <code>ft.fit(model, loaders, EPOCHS, lr=LR, lr_mult=10,
#    scheduler=SCHEDULE, restore_best=False, seed=seed)</code>.</details>
# 2. Set `SUBSET = 1.0` (all training data) and rerun. Which claims still hold? Read the ones that
#    do not: they are findings about more data.
# 3. Set `TOP = 1` (only the head trains): fewer trainable parameters is a control too. What happens to the gap?
# 4. Early stopping on a noisy signal: try `PATIENCE = 4`, or `EPOCHS = 20`. Does the stopping epoch settle?
# 5. Try `WEIGHT_DECAY = 0.01`, the usual default. How much do the weights shrink now (section 5)?
#
# ## Summary
#
# - Overfitting shows as a train–validation gap; measure both on the same weights.
# - Augmentation must keep the label true: for solar cells the flips and quarter turns are exact
#   symmetries; crops can cut a crack away.
# - Weight decay pulls toward zero, L2-SP toward the pretrained weights; print how much they move the weights.
# - Compare controls paired, on the same test cells and seeds, with an interval; at this size none was
#   shown to change the test accuracy, and "undecided" is a finding too.
# - BatchNorm all but cancels a change of the weights' scale: weight decay before a BatchNorm changes the
#   *effective* step size far more than the function, while the running statistics keep up.
