"""The lab: what ftlab's lessons and experiments are built with, apart from the library they use.

The library (``ftlab`` and its modality packages) is what your own fine-tuning code imports:
layer groups, freezing, optimizer groups, ``fit``, caching, checkpoints. The lab sits on top of
it and nothing in the library imports the lab (``tests/test_structure.py`` checks it), the way
torchvision keeps its training references outside the package:

* a lesson's evidence: :func:`claim` with three verdicts, :func:`choose` (on a named split, never
  test), :func:`check_claims`, :func:`record`, :func:`read_metrics` (:mod:`ftlab.lab.claims`);
  paired differences with bootstrap intervals over test examples and seeds (:func:`paired`,
  :func:`estimate`, :mod:`ftlab.lab.evidence`); the spread over seeds (:func:`spread`, :func:`aggregate`);
  costs timed side by side, as ratios that hold on a shared machine (:func:`step_seconds`); training
  sets drawn anew for each seed from the whole split, extracted once (:class:`~ftlab.splits.Draws`);
* graded exercises: :func:`exercise` checks what a student wrote; student copies and grading
  (``ftlab student``, ``ftlab grade``, :mod:`ftlab.lab.grading`);
* strategies of fine-tuning and one run of each: :data:`STRATEGIES`, :func:`run_strategy`, and the
  experiment :func:`run_experiment` (images, text, boxes or the decoder) that ``notebooks/experiment.ipynb`` runs
  (:mod:`ftlab.lab.strategies`, :mod:`ftlab.lab.experiment`), and the :class:`TrainPanel` widget;
* papermill sweeps (:mod:`ftlab.lab.sweep`), the headless lesson runner (:mod:`ftlab.lab.lessons`);
* the full runs of the README's results sections (:mod:`ftlab.lab.full_images`,
  :mod:`ftlab.lab.full_text`, :mod:`ftlab.lab.full_detection`, :mod:`ftlab.lab.full_llm`) and the ``ftlab`` command
  (:mod:`ftlab.lab.cli`).

Use it as ``ft.lab.<name>`` (``import ftlab as ft``; it loads on first use).
"""
from ..splits import Draws
from ..summary import Spread, spread
from .claims import (
    BORDERLINE,
    STRICT_ENV,
    VERDICTS,
    Choice,
    Claim,
    ClaimNotHeld,
    check_claims,
    choose,
    claim,
    claims_table,
    read_metrics,
    record,
)
from .evidence import Estimate, estimate, majority_baseline, paired, paired_metric, unpaired
from .experiment import TASKS, correct_from_text, experiment_data, run_experiment
from .full_detection import DETECTION_FULL, detection_full_run, format_detection_full
from .full_images import FULL, coarsen, format_full, full_run, load_full, save_full, select_full
from .full_llm import LLM_FULL, format_llm_full, llm_full_run
from .full_text import TEXT_FULL, format_text_full, text_full_run
from .grading import exercise
from .strategies import STRATEGIES, run_strategy, strategy_top
from .sweep import aggregate, collect_results, load_config, read_results, run_sweep, save_sweep_figures
from .timing import step_seconds

__all__ = ["STRICT_ENV", "VERDICTS", "BORDERLINE", "Choice", "choose", "Claim", "ClaimNotHeld", "check_claims", "claim",
           "claims_table", "exercise",
           "read_metrics", "record", "Estimate", "estimate", "paired", "paired_metric", "unpaired", "majority_baseline",
           "STRATEGIES", "run_strategy", "strategy_top", "run_experiment", "experiment_data", "TASKS", "correct_from_text",
           "TrainPanel",
           "step_seconds", "Draws",
           "Spread", "spread", "aggregate", "collect_results", "load_config", "read_results", "run_sweep", "save_sweep_figures",
           "FULL", "coarsen", "format_full", "full_run", "load_full", "save_full", "select_full",
           "TEXT_FULL", "format_text_full", "text_full_run", "DETECTION_FULL", "detection_full_run", "format_detection_full",
           "LLM_FULL", "llm_full_run", "format_llm_full"]


def __getattr__(name: str):
    if name == "TrainPanel":                     # ipywidgets loads on first use
        from .panels import TrainPanel

        return TrainPanel
    raise AttributeError(f"module 'ftlab.lab' has no attribute {name!r}")
