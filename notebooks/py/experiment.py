# ---
# jupyter:
#   jupytext:
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
# # One fine-tuning experiment
#
# Not a lesson: the unit of work of `ftlab sweep`. It trains one strategy on one training-set
# size with one augmentation and one seed, scores it on the task's fixed test split, and records
# the result: ELPV cells (`TASK = "images"`, accuracy), Rotten Tomatoes snippets (`"text"`,
# accuracy), NEON tree crowns (`"detection"`, mAP) or the decoder SmolLM2 asked "fresh or rotten?" about
# the snippets (`"llm"`, accuracy of its likelier answer token; strategies `zero_shot`, `top<k>`, `lora`). `ftlab sweep docs/results/sweep.yaml` runs it
# over a grid, one fresh kernel per run (on a process pool or a cluster with `--executor`); lesson 05
# reads the gathered `results.csv`.

# %% tags=["parameters"]
# Parameters
TASK = "images"       # images (ELPV cells), text (Rotten Tomatoes snippets), detection (NEON tree crowns), llm (SmolLM2)
DATASET = None  # type: str|None - None: the task's own data set (elpv, rotten_tomatoes, tree_crowns)
CLASSES = 2           # ELPV: 2 or 4 classes
STRATEGY = "head"     # head, top<k> (top 2, 4 ...), full, scratch, linear_probe (not detection); llm: zero_shot, top<k>, lora
IMAGE_SIZE = 64       # images only
SUBSET = 0.25  # type: float|int|None - training-set size: a fraction of the training split, or items per class (tiles)
EVAL_SUBSET = None  # type: float|int|None - validation and test items per class for a quick run; None: all
AUGMENT = "none"      # none, light, strong (text: none)
EPOCHS = 3
LR = 3e-3
SEED = 0
DEVICE = "auto"
OUT_DIR = None

# %%
import ftlab as ft

splits = ft.lab.experiment_data(TASK, DATASET, classes=CLASSES)
result = ft.lab.run_experiment(splits, STRATEGY, task=TASK, image_size=IMAGE_SIZE, subset=SUBSET, eval_subset=EVAL_SUBSET,
                               augment=AUGMENT, epochs=EPOCHS, lr=LR, seed=SEED, device=DEVICE)
result

# %%
ft.lab.record("experiment", OUT_DIR, classes=CLASSES, subset=SUBSET, **result)
