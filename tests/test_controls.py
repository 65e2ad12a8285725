"""Overfitting controls and the evidence helpers of lesson 04: L2-SP, spread over seeds, the spread figure."""
import pytest
import torch
from tiny import Tiny, tiny_loaders

import ftlab as ft


def _distance_and_head(alpha, weight_decay=0.0):
    torch.manual_seed(0)
    m = Tiny()
    start = m.body[0].weight.detach().clone()
    callbacks = [ft.L2SP(alpha)] if alpha is not None else []
    ft.fit(m, tiny_loaders(), epochs=3, lr=0.05, weight_decay=weight_decay, callbacks=callbacks,
           restore_best=False, progress=False, seed=0)
    body = m.body[0].weight.detach()
    return (body - start).norm().item(), m.head.weight.norm().item(), start.norm().item(), body.norm().item()


def test_l2sp_pulls_pretrained_weights_toward_their_start_and_the_head_toward_zero():
    free, head_free, *_ = _distance_and_head(None)
    zero, head_zero, *_ = _distance_and_head(0.0)
    pulled, head_pulled, *_ = _distance_and_head(5.0)
    decayed, head_decayed, norm0, norm_decayed = _distance_and_head(None, weight_decay=5.0)
    assert zero == pytest.approx(free) and head_zero == pytest.approx(head_free)     # alpha 0: no effect
    assert pulled < 0.9 * free                        # closer to θ₀ than without a penalty
    assert decayed > pulled                           # weight decay of the same strength moves them further
    assert norm_decayed < norm0                       # ... because it shrinks them toward zero
    assert head_pulled < head_free                    # the new head decays toward zero


def test_l2sp_leaves_frozen_weights_alone_and_rejects_bad_strength():
    torch.manual_seed(0)
    m = Tiny()
    ft.freeze(m.stem)
    before = m.stem[0].weight.detach().clone()
    ft.fit(m, tiny_loaders(), epochs=1, lr=0.05, weight_decay=0.0, callbacks=[ft.L2SP(10.0)], progress=False, seed=0)
    assert torch.equal(m.stem[0].weight, before)
    with pytest.raises(ft.errors.UsageError, match="alpha"):
        ft.L2SP(-1.0)


def test_spread_over_seeds():
    s = ft.lab.spread([0.80, 0.81, 0.83])
    assert s.n == 3 and s.mean == pytest.approx(0.8133333) and s.std == pytest.approx(0.0152753, rel=1e-4)
    assert (s.low, s.high) == (0.80, 0.83)
    assert str(s) == "81.3 % ± 1.5 (n=3)"
    one = ft.lab.spread([0.8])
    assert one.std is None and str(one) == "80.0 % (one seed)" and "±" not in str(one)
    assert ft.lab.spread([1.2, 1.3]).format(percent=False) == "1.25 ± 0.071 (n=2)"
    with pytest.raises(ft.errors.UsageError):
        ft.lab.spread([])


def test_spread_figure_spans_every_seed_the_error_bars_and_the_baseline():
    fig = ft.plot.spread({"a": [0.70, 0.90], "b": [0.80]}, baseline=0.6)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    mean_a, std_a = ft.lab.spread([0.70, 0.90]).mean, ft.lab.spread([0.70, 0.90]).std
    assert lo < 0.6 and hi > mean_a + std_a
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    texts = [t.get_text() for t in ax.texts]
    assert "80.0 % (one seed)" in texts and any("majority class 60.0%" in t for t in texts)
    with pytest.raises(ft.errors.UsageError):
        ft.plot.spread({"a": []})
