"""A linear probe: how much a frozen network's features know, read by logistic regression."""
from __future__ import annotations

from typing import Mapping

import torch

from ..errors import UsageError
from .engine import Features

__all__ = ["linear_probe"]


def linear_probe(train: Features, test: Features | Mapping[str, Features], C: float = 1.0,
                 seed: int = 0, per_example: bool = False):
    """Accuracy of a logistic-regression classifier trained on frozen features (a linear probe).

    Features are standardised first; the classifier is scikit-learn's ``LogisticRegression``. Its
    linear algebra runs on one BLAS thread: beside PyTorch's threads, several are many times slower
    on a small CPU (lesson 01's 18 probes: 31 s against under 2 s).

    Args:
        train: features to fit on (``ft.extract(..., cut="head")``).
        test: features to score on, or ``{name: features}`` to score one fitted probe on several
            sets (e.g. validation and test).
        C: inverse regularisation strength.
        seed: random state of the solver.
        per_example: return each example's score (1.0 right, 0.0 wrong; a float tensor in the
            features' order) instead of the accuracy, e.g. for a paired comparison (:func:`ftlab.lab.paired`).

    Returns:
        Accuracy in [0, 1] (or per-example scores), or ``{name: ...}`` when ``test`` is a mapping.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    sets = dict(test) if isinstance(test, Mapping) else {"test": test}
    if not all(isinstance(f.x, type(train.x)) and getattr(f.x, "ndim", 0) == 2 for f in [train, *sets.values()]):
        raise UsageError("A linear probe needs pooled features, one vector per example: extract with cut='head'.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    with threadpool_limits(1, user_api="blas"):
        clf.fit(train.x.numpy(), train.y.numpy())
        right = {name: torch.from_numpy(clf.predict(f.x.numpy()) == f.y.numpy()).float() for name, f in sets.items()}
    scores = right if per_example else {name: float(r.mean()) for name, r in right.items()}
    return scores if isinstance(test, Mapping) else scores["test"]
