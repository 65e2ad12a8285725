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
# # Lesson 02 — Train only a new head
#
# Fine-tuning has five steps: freeze, put a new head on, train the head, unfreeze part of the
# network, train on. This lesson does steps 1-3: **load a pretrained model and freeze it; put a
# new head on it; train only the head.**
#
# **Learning goals**
#
# 1. Freeze a network by hand with `requires_grad` and train a new `nn.Linear` head with a plain
#    PyTorch loop (the way the classic PyTorch tutorial does).
# 2. Do the same with `ft.freeze_to` and `ft.fit`, and read the training history.
# 3. Make it faster by caching the frozen features, and see where the speed-up comes from
#    (this run measures it).
# 4. Look at the errors: the confusion matrix and the defects the model misses, the worst
#    predictions, and where the model looks (Grad-CAM), including what Grad-CAM cannot show
#    at a small input size.

# %% tags=["parameters"]
# Parameters
DATASET = "elpv"
CLASSES = 2
IMAGE_SIZE = 96       # 224 is the model's own size: better and ~5x slower
SUBSET = 0.25  # type: float|int|None - share of the training split (or images per class); None for all 1,771
EPOCHS = 3
BATCH_SIZE = 32
LR = 3e-3
SEED = 0
DEVICE = "auto"
OUT_DIR = None

# %%
import time

import torch
from torch import nn

import ftlab as ft

ft.seed_everything(SEED)
splits = ft.vision.dataset(DATASET, **({"classes": CLASSES} if DATASET == "elpv" else {}))
config = ft.vision.preprocessing(ft.vision.pretrained())
loaders = ft.vision.loaders(splits, config, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, subset=SUBSET, seed=SEED)
print(f"train {len(loaders.train.dataset)}  val {len(loaders.val.dataset)}  test {len(loaders.test.dataset)} images")

# %% [markdown]
# ## 1. The plain PyTorch way
#
# Freeze every parameter, then replace the 1,000-way ImageNet classifier by a new `nn.Linear`
# with one output per class. A new module's parameters require gradients by default, so only
# the head trains. The optimizer gets only the head's parameters. The model and every batch go
# to `device`: the `DEVICE` parameter, resolved by `ft.batches.resolve_device` (`"auto"` picks CUDA if
# there is a GPU, else Apple's MPS, else the CPU).

# %%
device = ft.batches.resolve_device(DEVICE)
model = ft.vision.pretrained()                      # ImageNet model, 1,000 outputs
for p in model.parameters():
    p.requires_grad = False                  # 1. freeze
model.classifier = nn.Linear(model.classifier.in_features, len(splits.classes))   # 2. new head
model.to(device)
optimizer = torch.optim.AdamW(model.classifier.parameters(), lr=LR)               # 3. train only the head
criterion = nn.CrossEntropyLoss()
plain_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(device)
plain_trainable

# %%
start = time.perf_counter()
plain_losses = []                            # (mean, last batch) per epoch
for epoch in range(EPOCHS):
    model.train()
    loss_sum = seen = 0
    for x, y in loaders.train:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)        # the mean loss of this batch
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        seen += len(y)
    plain_losses.append((loss_sum / seen, loss.item()))
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loaders.val:
            x, y = x.to(device), y.to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    print(f"epoch {epoch + 1}: mean train loss {loss_sum / seen:.3f} (last batch {loss.item():.3f}), "
          f"val accuracy {correct / total:.1%}")
seconds_plain = time.perf_counter() - start
plain_acc = ft.evaluate(model, loaders.test, device=device)["acc"]
print(f"{seconds_plain:.1f} s on this run, test accuracy {plain_acc:.1%}")

# %% [markdown]
# That is the whole idea. The training loss to watch is the mean over all training images of the epoch (what `ft.fit`
# reports too). The loss of one batch of a few dozen images jumps up and down from batch to batch,
# so the *last* batch's loss, which many tutorials print, says little: at the defaults the mean
# falls in every epoch while the last batch's loss does not (checked at the end). The mean is
# taken while the weights still change, so it lags a little behind the model at the end of the
# epoch.
#
# One subtle thing: `model.train()` also switches the frozen
# BatchNorm layers to training mode, so their running statistics drift away from the
# pretrained ones although no parameter trains. Lesson 03 shows it; ftlab avoids it.
#
# ## 2. The same with ftlab
#
# `ft.vision.pretrained(num_classes=...)` puts the new head on, `ft.freeze_to(model, -1)` freezes all
# layer groups but the last (the head), and `ft.fit` runs the loop: one-cycle learning rate,
# validation every epoch, the best weights kept, BatchNorm policy applied, progress bars.

# %%
model = ft.vision.pretrained(num_classes=len(splits.classes))
ft.freeze_to(model, -1)
ft.trainable_summary(model)

# %%
start = time.perf_counter()
history = ft.fit(model, loaders, epochs=EPOCHS, lr=LR, seed=SEED, device=DEVICE)
seconds_fit = time.perf_counter() - start
fit_acc = ft.evaluate(model, loaders.test, device=DEVICE)["acc"]
print(f"{seconds_fit:.1f} s on this run (plain loop {seconds_plain:.1f} s), "
      f"test accuracy {fit_acc:.1%} (plain loop {plain_acc:.1%})")
history

# %%
ft.plot.history(history)

# %% [markdown]
# Both runs train the same parameters, the new head (checked at the end), but they differ in
# several things at once: the learning-rate schedule (one-cycle against constant), the BatchNorm
# policy, keeping the best epoch's weights, and the head's random start. So the difference in
# test accuracy printed above, whatever its size, cannot be pinned on any one of them — and a
# difference of a point or two may be no difference at all: one standard error of an accuracy near
# 80 % on 656 test cells is about 1.6 points (lesson 03 compares runs with an interval). The times differ too: `ft.fit`
# does more per epoch (metrics, best weights), but it feeds the network in the *channels-last*
# memory format, which CPU convolutions prefer, where the plain loop keeps PyTorch's default
# layout. Which one is faster on your machine, and by how much, the two times above tell; they
# depend on the machine and on what else it is doing.

# %% [markdown]
# ## 3. Faster: cache the frozen features
#
# What does an epoch of section 2 compute? A forward pass of the whole backbone over every
# training and validation image, then a backward pass that stops at the head (nothing below it
# needs a gradient). The backbone's part is the same computation with the same result in every
# epoch, because the images do not change (no augmentation here). Caching does it **once**:
# `ft.extract` runs the backbone over the images and stores the features on disk, and
# `ft.fit_cached` trains the head on the stored features, where an epoch needs only the head's
# small matrix multiplications. (`ft.fit_cached(model, loaders, ...)` does both in one call; here they are separate
# so that they can be timed.) The catch: stored features cannot be augmented (ftlab warns when a
# loader has augmentation).

# %%
cached_model = ft.vision.pretrained(num_classes=len(splits.classes))
ft.freeze_to(cached_model, -1)
on_disk = ft.files.cached_names("features")         # stored by earlier runs (or in a class's shared cache)
start = time.perf_counter()
train_features = ft.extract(cached_model, loaders.train, cut="head", device=DEVICE)
val_features = ft.extract(cached_model, loaders.val, cut="head", device=DEVICE)
seconds_features = time.perf_counter() - start
features_loaded = all(any(f.key in name for name in on_disk) for f in (train_features, val_features))
start = time.perf_counter()
cached_history = ft.fit_cached(cached_model, (train_features, val_features), EPOCHS, lr=LR,
                             batch_size=BATCH_SIZE, seed=SEED, device=DEVICE, progress=False)
seconds_cached = seconds_features + time.perf_counter() - start
test_features = ft.extract(cached_model, loaders.test, cut="head", device=DEVICE)   # stored for reruns
cached_preds = ft.predict(cached_model, test_features, device=DEVICE)
cached_acc = (cached_preds.preds == cached_preds.targets).float().mean().item()
print(f"features: train {tuple(train_features.x.shape)}, val {tuple(val_features.x.shape)}; "
      f"test accuracy {fit_acc:.1%} end-to-end, {cached_acc:.1%} cached")

# %% [markdown]
# Where did the time go? `History` records the seconds of every epoch:

# %%
epoch_fit, once_fit = history.seconds / len(history), seconds_fit - history.seconds
epoch_head, once_cached = cached_history.seconds / len(cached_history), seconds_cached - cached_history.seconds
how = ("loaded from disk: an earlier run extracted them" if features_loaded else
       f"extracted on this run: {seconds_features / epoch_fit:.1f} end-to-end epochs")
print(f"end-to-end: {seconds_fit:5.1f} s = {len(history)} epoch(s) of about {epoch_fit:.2f} s + {once_fit:.1f} s once (setup)")
print(f"cached:     {seconds_cached:5.1f} s = {len(cached_history)} epoch(s) of about {epoch_head:.2f} s "
      f"+ {once_cached:.1f} s once\n            (features {seconds_features:.1f} s, {how})")
print(f"on this run, cached training was {seconds_fit / seconds_cached:.1f}x faster\n")
print("estimated for more epochs from this run's per-epoch times and one-time costs:")
for n in sorted({EPOCHS, 10, 30}):
    fit_n, cached_n = once_fit + n * epoch_fit, once_cached + n * epoch_head
    print(f"  {n:3d} epoch{'s' if n > 1 else ' '}: end-to-end {fit_n:6.0f} s, cached {cached_n:6.1f} s, {fit_n / cached_n:5.1f}x")

# %% [markdown]
# The speed-up has two parts. Per epoch, cached training skips the backbone: compare the two
# per-epoch times. Once, it pays for the features (and a little setup). Extracting them is the
# same forward pass over the same images as one end-to-end epoch, so it costs roughly one
# end-to-end epoch (the line above gives the ratio when they were extracted on this run); if
# extraction cost exactly one epoch, caching with *E* epochs could be at most about *E* times faster
# (more when extraction is cheaper than an epoch, as the ratio above may show, since it runs in eval mode and
# without a backward pass). Loading features stored
# by an earlier run (a rerun, or `make test`) costs far less, which is why the speed-up printed
# above differs from run to run. Either way the one-time cost is shared by all epochs, so the more
# epochs reuse the cache, the closer the speed-up gets to the ratio of the per-epoch times (the
# estimate above; try `ft.fit_cached(cached_model, loaders, epochs=30, lr=LR)` and time it).

# %% [markdown]
# ## 4. Look at the errors
#
# Accuracy is one number; the confusion matrix shows *which* mistakes. Predict the test set once
# with `ft.predict` (probabilities, predicted and true classes) and read everything from that.

# %%
test_preds = ft.predict(model, loaders.test, device=DEVICE)
fig = ft.plot.confusion_matrix(test_preds, classes=splits.classes)
print(fig.classification_report)
fig

# %% [markdown]
# For a quality inspector the question is not the accuracy but: **how many defective cells get
# through?** That is the *recall* of the defective class, the share of the truly defective cells
# that the model flags (the bottom row of the matrix). Count it from the predictions:

# %%
positive = len(splits.classes) - 1                 # the last class: "defective" in 2-class ELPV
is_positive = test_preds.targets == positive
flagged = test_preds.preds == positive
n_positive = int(is_positive.sum())
missed = int((is_positive & ~flagged).sum())
false_alarms = int((~is_positive & flagged).sum())
recall = 1 - missed / n_positive
majority = ft.lab.majority_baseline(splits.train.targets, splits.test.targets).mean().item()
print(f"{splits.classes[positive]} cells: recall {recall:.0%}, {missed} of {n_positive} missed; "
      f"{false_alarms} of {len(is_positive) - n_positive} other cells flagged by mistake")
print(f"test accuracy {fit_acc:.1%}; always answering the majority class scores {majority:.1%}")

# %% [markdown]
# At the defaults the head lets a large share of the defective cells through — more than a third
# of them even at the low end of the interval (checked at the end) — while it gets the functional
# cells right far more often (also checked). Accuracy hides the misses because defective cells are
# the minority of the test set: the many functional cells the head gets right outweigh the defects
# it misses, and a model that never flags anything would still score the majority share printed
# above. For an inspector the two mistakes do not cost the same: a good cell flagged by mistake
# costs a second look, a defective cell that gets through ends up in a solar module. So report
# how many defects are missed (and how many good cells are flagged to find the rest), not the
# accuracy. The rule "defective if its probability is above 0.5" is one choice among many:
# exercise 4 moves the threshold.
#
# The worst predictions: the highest loss, i.e. confidently wrong.

# %%
ft.plot.top_losses(model, loaders.test, k=8)

# %% [markdown]
# Look closely: some cells labelled *defective* look clean at this small size. Experts
# labelled ELPV at full resolution (300 px) and gave a defect probability of 1/3 or 2/3 where they
# were unsure. Are the missed defects the unsure ones? The 4-class labels of the same test cells
# tell:

# %%
elpv_levels = DATASET == "elpv" and CLASSES == 2
if elpv_levels:
    levels = ft.vision.dataset("elpv", classes=4).test.targets    # 0, 1/3, 2/3, 1 for the same test cells
    assert torch.equal((levels >= 2).long(), test_preds.targets)
    missed_at = {level: (~flagged[levels == level]).float() for level in (2, 3)}   # 1.0: a defect that got through
    missed_sure, missed_unsure = int(missed_at[3].sum()), int(missed_at[2].sum())
    for level, who in ((3, "p=1 (the experts were sure)"), (2, "p=2/3 (unsure)")):
        print(f"defective cells labelled {who:28}: {int(missed_at[level].sum()):3d} of {len(missed_at[level]):3d} missed "
              f"({missed_at[level].mean():.0%})")
    unsure_minus_sure = ft.lab.unpaired(missed_at[2], missed_at[3])
    print(f"miss rate, unsure minus sure: {unsure_minus_sure}")

# %% [markdown]
# Most missed defects are p=1 cells — but only because most defective cells are p=1. The rate is
# what answers the question, and per level it points the other way (at the defaults, checked at the
# end): an **unsure** defect (p=2/3) is missed much more often than a **sure** one (p=1). So the
# experts' doubt and the model's misses go together. It does not explain all the misses: the head
# still lets a share of the sure defects through. What remains is what the model can see and learn:
# a small image of a 300 px cell (96 px at the defaults), and ImageNet features that were never
# trained on cracks. Exercise 3 and lesson 03 change those.
#
# Grad-CAM weights a convolutional layer's activation maps by how much they raise a class score:
# it shows where the evidence for that class lies, at the resolution of that layer. Here it
# explains the class *defective* on the first three defective test cells that the head catches
# and the first three that it misses (red titles: wrong predictions).

# %%
shown = ((is_positive & flagged).nonzero().flatten()[:3].tolist()
         + (is_positive & ~flagged).nonzero().flatten()[:3].tolist())
images = torch.stack([loaders.test.dataset[i][0] for i in shown])
labels = test_preds.targets[shown]
fig = ft.plot.gradcam(model, images, classes=splits.classes, targets=positive, labels=labels)
stride = IMAGE_SIZE // fig.grid[0]
print(f"layer {fig.layer}: {fig.grid[0]} x {fig.grid[1]} positions for a {IMAGE_SIZE} px image, "
      f"one per {stride} x {stride} px")
fig

# %% [markdown]
# That grid is all a map can resolve. The network halves the resolution five times on the way to
# its last convolutional layer (`conv_head`, the one Grad-CAM uses by default), so at the default
# 96 px it has 3 × 3 positions, and the smooth colours are those nine numbers blurred by
# upsampling. A crack at this size is a line a pixel or two wide: a 3 × 3 map can at best say
# which ninth of the cell holds the evidence. It cannot show the shape of a crack. There are two ways to a
# finer map, and each has a price.
#
# **A larger input.** The network is fully convolutional and averages its last feature map over
# all positions, so it accepts the full 300 px cell, and `conv_head` then has 10 × 10 positions.
# But the head was trained on the features of small images. At 300 px every structure (busbars,
# edges, cracks) spans more than three times as many positions in each direction, the averaged
# features change, and the head no longer sees what it was trained on. Check it on functional test cells:

# %%
full_size = splits.test.images.shape[-1]                 # the data set's own size: 300 px for ELPV
functional = (~is_positive).nonzero().flatten()[:64]
cells_full = splits.test.subset(functional).with_transform(ft.vision.preprocess(config, full_size))
at_full = ft.predict(model, torch.utils.data.DataLoader(cells_full, batch_size=BATCH_SIZE), device=DEVICE)
flags_small, flags_full = flagged[functional].float(), (at_full.preds == positive).float()   # per cell
flagged_small, flagged_full = int(flags_small.sum()), int(flags_full.sum())
print(f"{len(functional)} functional test cells called {splits.classes[positive]}: "
      f"{flagged_small} at {IMAGE_SIZE} px, {flagged_full} at {full_size} px")

# %% [markdown]
# At the defaults the head calls most of these functional cells defective at 300 px (checked at
# the end): at that size it is a different and much worse classifier, and a Grad-CAM map of it
# would explain that classifier, not the one we trained. A fine map of a model that works needs a
# model trained at the larger size (exercise 3: at 224 px `conv_head` has 7 × 7 positions).
#
# **An earlier layer.** `blocks.2` halves the resolution only three times: 12 × 12 positions at
# 96 px, in the classifier we trained. The price: more layers lie between it and the class score,
# and its activations tend to respond to edges and texture more than to a class, so its maps are noisier
# and less specific.

# %%
fig = ft.plot.gradcam(model, images, target_layer="blocks.2", classes=splits.classes, targets=positive, labels=labels)
print(f"layer {fig.layer}: {fig.grid[0]} x {fig.grid[1]} positions")
fig

# %% [markdown]
# What do the maps show? ELPV has no outlines of the cracks, so nothing here can measure whether
# a map covers a crack; we can look, and measure something simpler. One thing can be measured on
# all test cells: how much of each map's weight lies in the cell's frame (the outer eighth on each
# side), compared with the frame's share of the area — on the defective cells, and, as the
# baseline a heat map needs, on the functional cells (the same map of the evidence for
# *defective*, on cells that have no defect).

# %%
band = IMAGE_SIZE // 8
frame_area = 1 - (1 - 2 * band / IMAGE_SIZE) ** 2


def frame_shares(cells):
    """Per blocks.2 map with some positive evidence: the share of its weight in the frame."""
    images = torch.stack([loaders.test.dataset[i][0] for i in cells.nonzero().flatten().tolist()])
    maps = ft.plot.gradcam_maps(model, images, "blocks.2", targets=positive)
    maps = maps[maps.amax((1, 2)) > 0]
    return 1 - maps[:, band:-band, band:-band].sum((1, 2)) / maps.sum((1, 2))


frame = {"defective": frame_shares(is_positive), "functional": frame_shares(~is_positive)}
for kind, share in frame.items():
    print(f"{kind:10}: {len(share)} maps, on average {share.mean():.0%} of the weight in the frame "
          f"({ft.lab.estimate(share)}), which is {frame_area:.0%} of the area")
frame_gap = ft.lab.unpaired(frame["defective"], frame["functional"])
print(f"defective minus functional: {frame_gap}")

# %% [markdown]
# In the two figures above, at the defaults: the 3 × 3 `conv_head` maps of the cells the head
# catches are coarse patches, and those of the cells it misses are empty: at that layer,
# nothing in them raises the score of *defective*. The 12 × 12 `blocks.2` maps light up small
# spots, many of them at the cell's edges and corners and at the ends of the busbars. Some may
# mark real defects, but no map follows a crack along its length. The measurement agrees: at the
# defaults the `blocks.2` maps of defective cells put clearly more of their weight on the frame
# than its share of the area — and so do the maps of **functional** cells, by about the same amount
# (equivalent within 5 points, checked at the end). The baseline changes the reading: weight on the
# frame is not a sign of a defect; it is where this layer's evidence for *defective* lies on any cell.
#
# What this does and does not say: the frame (dark edges, cut corners, busbar ends) carries part
# of what raises this head's score for *defective*, on defective and functional cells alike. It
# does not say why, nor that the head ignores cracks: Grad-CAM is a gradient-weighted summary of
# one layer, not an experiment. It does say not to read "the model found the crack" into a heat
# map without a baseline and a check.

# %% [markdown]
# ## 5. What this run shows, checked
#
# The sentences above that numbers support, written down with the condition that makes each
# true and checked against this run (timings are shown above but not claimed: they depend on
# the machine and on what else it is doing).

# %%
right = (test_preds.preds == test_preds.targets).float()                     # per test cell, the head trained by ft.fit
majority_right = ft.lab.majority_baseline(splits.train.targets, test_preds.targets)      # its class from training
claims = [
    ft.lab.claim("the plain loop and ft.fit train the same parameters: the new head only",
             plain_trainable == ft.trainable_count(model) == model.classifier.weight.numel() + model.classifier.bias.numel(),
             plain_loop=plain_trainable, fit=ft.trainable_count(model)),
    ft.lab.claim("the head alone beats always answering the majority class by more than 5 points",
                 ft.lab.paired(right, majority_right), above=0.05),
    ft.lab.claim("the epoch's mean training loss falls in every epoch; the last batch's loss does not",
             all(a[0] > b[0] for a, b in zip(plain_losses, plain_losses[1:]))
             and not all(a[1] > b[1] for a, b in zip(plain_losses, plain_losses[1:])),
             mean=[round(m, 3) for m, _ in plain_losses], last_batch=[round(b, 3) for _, b in plain_losses]),
    ft.lab.claim("the head trained on cached features matches end-to-end head training within 2 points (equivalence)",
                 ft.lab.paired((cached_preds.preds == cached_preds.targets).float(), right), within=0.02),
    ft.lab.claim("the head misses more than a third of the defective test cells",
                 ft.lab.estimate((~flagged[is_positive]).float()), above=1 / 3),
    ft.lab.claim("the head gets functional cells right far more often than defective ones (by more than 10 points): "
                 "why its accuracy hides the misses",
                 ft.lab.unpaired(right[~is_positive], right[is_positive]), above=0.10),
    ft.lab.claim("at 300 px the head calls most functional cells defective",
                 ft.lab.estimate(flags_full), above=0.5, cells=len(functional)),
    ft.lab.claim("at its own size it calls fewer than a quarter of the same cells defective",
                 ft.lab.estimate(flags_small), below=0.25, cells=len(functional)),
    ft.lab.claim("the blocks.2 maps of defective cells put more weight on the frame than its share of the area (by 5 points)",
                 ft.lab.estimate(frame["defective"]), above=frame_area + 0.05),
    ft.lab.claim("... and so do the maps of functional cells: they too weight the frame above its share of the area",
                 ft.lab.estimate(frame["functional"]), above=frame_area + 0.05),
    ft.lab.claim("defective and functional cells' maps put the same share of weight on the frame (equivalence, 5 points)",
                 frame_gap, within=0.05),
]
if elpv_levels:
    claims.append(ft.lab.claim("an unsure defect (p=2/3) is missed more often than a sure one (p=1)", unsure_minus_sure,
                               above=0.0, missed_sure=missed_sure, missed_unsure=missed_unsure))
ft.lab.check_claims(claims)

# %%
ft.lab.record("02_head_only", OUT_DIR, claims=claims, majority=majority,
          plain_test_acc=plain_acc, fit_test_acc=fit_acc, cached_test_acc=cached_acc,
          defective_recall=recall, defective_missed=missed, defective_test=n_positive, false_alarms=false_alarms,
          seconds_plain=seconds_plain, seconds_fit=seconds_fit, seconds_cached=seconds_cached,
          seconds_features=seconds_features, features_loaded=features_loaded,
          cached_speedup=seconds_fit / seconds_cached, best_val_acc=history.best["val_acc"],
          frame_share=frame['defective'].mean(), frame_share_functional=frame['functional'].mean(),
          frame_area=frame_area)

# %% [markdown]
# ## Graded exercises
#
# Now write the first three steps yourself, in plain PyTorch. Each exercise cell is followed by a **check
# cell**: run it and it says what is right and what is not, with a hint. The checks are statements like the
# lesson's own (a tensor stayed as it was, the optimizer holds what trains, a head beats the majority class
# on validation); your teacher's copy has a few more hidden checks, and grading runs them all
# (`ftlab grade`, see the README's "Teaching with ftlab"). Use the validation split: the test split is
# read once, and the lesson has read it.

# %% [markdown]
# **Exercise 02.1 · Freeze and a new head.** Load the ImageNet model again as `my_model`
# (`ft.vision.pretrained()`), freeze every one of its tensors, and give it a new head: an `nn.Linear`
# in `my_model.classifier` with one output per class of `splits.classes`.

# %%
### BEGIN SOLUTION
my_model = ft.vision.pretrained()
for p in my_model.parameters():
    p.requires_grad = False
my_model.classifier = nn.Linear(my_model.classifier.in_features, len(splits.classes))
### END SOLUTION

# %%
with ft.lab.exercise("02.1", "freeze the network, give it a new head", out_dir=OUT_DIR) as ex:
    ex.check("my_model.classifier is a new nn.Linear with one output per class",
             lambda: isinstance(my_model.classifier, nn.Linear) and my_model.classifier.out_features == len(splits.classes),
             hint="nn.Linear(my_model.classifier.in_features, len(splits.classes))")
    ex.check("only the head trains: every other tensor is frozen",
             lambda: ft.lab.grading.trains_only(my_model, "head"), hint="set requires_grad = False before the new head")
    ### BEGIN HIDDEN TESTS
    ex.check("the tensors below the head are still ImageNet's",
             lambda: ft.lab.grading.unchanged(my_model, ft.lab.grading.snapshot(ft.vision.pretrained()),
                                              *ft.group_names(my_model)[:-1]))
    ### END HIDDEN TESTS

# %% [markdown]
# **Exercise 02.2 · The optimizer that sees the head, and training it.** Make `my_optimizer`, an AdamW at
# rate `LR` over what trains in `my_model`, and train the head on the cached features of section 3
# (`train_features.x` are the head's inputs, `train_features.y` the labels; if they hold several views,
# take view 0) for 20 epochs of mini-batches of 32. Then put the head's predictions on the validation
# features in `my_val_preds` (a tensor of class indices, one per validation cell).

# %%
### BEGIN SOLUTION
my_optimizer = torch.optim.AdamW([p for p in my_model.parameters() if p.requires_grad], lr=LR)
xs = train_features.x if train_features.views == 1 else train_features.x[:, 0]
order = torch.Generator().manual_seed(SEED)
my_model.classifier.train()
for epoch in range(20):
    for idx in torch.randperm(len(xs), generator=order).split(32):
        my_optimizer.zero_grad()
        nn.functional.cross_entropy(my_model.classifier(xs[idx]), train_features.y[idx]).backward()
        my_optimizer.step()
my_model.classifier.eval()
with torch.no_grad():
    val_x = val_features.x if val_features.views == 1 else val_features.x[:, 0]
    my_val_preds = my_model.classifier(val_x).argmax(1)
### END SOLUTION

# %%
with ft.lab.exercise("02.2", "an optimizer over what trains; the head trained on cached features", out_dir=OUT_DIR) as ex:
    ex.check("my_optimizer holds every trainable tensor of my_model and no frozen one",
             lambda: ft.lab.grading.optimizer_sees(my_optimizer, my_model))
    ex.check("the head learns at LR", lambda: ft.lab.grading.rate_of(my_optimizer, my_model, "head") == LR,
             hint=f"torch.optim.AdamW(..., lr=LR) with LR = {LR}")
    ex.check("one prediction per validation cell", lambda: len(my_val_preds) == len(val_features.y))
    ### BEGIN HIDDEN TESTS
    ex.check("the head beats the majority class on validation (paired, 95 % interval above 0)",
             lambda: ft.lab.claim("my head beats the majority class on validation",
                                  ft.lab.paired((my_val_preds == val_features.y).float(),
                                                ft.lab.majority_baseline(splits.train.targets, val_features.y)),
                                  above=0.0))
    ### END HIDDEN TESTS

# %% [markdown]
# ## Exercises
#
# 1. Train the cached head for 30 epochs. Does validation accuracy keep improving?
#    <details><summary>Hint</summary>Watch the gap between train and validation loss in
#    `ft.plot.history`; the head alone has 2,562 parameters but can still overfit a small subset.</details>
# 2. Find a learning rate with the range test: `ft.plot.lr_find(ft.lr_find(model, loaders, steps=40))`.
#    <details><summary>Solution</summary>Pick a rate a bit below the steepest descent (the marked
#    suggestion); for a new head on frozen features it is typically around 1e-3 to 1e-2.</details>
# 3. Set `SUBSET = None` and `IMAGE_SIZE = 224`. How much does the head-only model gain, how many
#    defects does it miss, how do the plain/cached timings change, and what do the Grad-CAM maps
#    of `conv_head` (now 7 × 7) show?
# 4. Move the threshold: flag a cell when `test_preds.probs[:, positive] > 0.3` instead of taking
#    the most probable class. How many defects are missed now, and how many good cells are flagged?
#    <details><summary>Hint</summary>A lower threshold flags more cells: fewer missed defects, more
#    false alarms. Which threshold to use depends on what a missed defect costs compared with a
#    second look; choose it on the validation split, not on the test split.</details>
#
# ## Summary
#
# - Freezing is `requires_grad = False`; a new head is a new `nn.Linear`; the optimizer must
#   get the parameters that train; model and batches go to one device.
# - `ft.freeze_to(model, -1)` + `ft.fit` do the same, with validation, best weights and history.
# - With a frozen backbone, **cache the features**: the backbone runs once instead of every
#   epoch, with the same accuracy (within 2 points here); the more epochs reuse the cache, the
#   larger the speed-up.
# - Accuracy hides the misses: for finding defects, count the missed defects (the recall of the
#   defective class).
# - A Grad-CAM map resolves only its layer's grid (3 × 3 at `conv_head` at 96 px); a finer map
#   needs an earlier layer or a model trained on larger images, and a heat map is not proof that
#   the model found the crack.
# - Next: unfreeze part of the network and train on (lesson 03).
