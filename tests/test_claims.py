"""Claims as code: recorded next to the metrics, shown held or not, summarised by the runner."""
import json

import numpy as np
import pytest
import torch

import ftlab as ft
from ftlab.lab import lessons
from ftlab.train import Predictions


def test_claim_records_the_condition_and_the_evidence():
    c = ft.lab.claim("pretrained beats random", np.float64(0.83) > 0.71 + 0.05, pretrained=np.float64(0.83), random=0.71)
    assert c.holds is True and c.evidence == {"pretrained": 0.83, "random": 0.71}
    assert repr(c).startswith("✓ holds: pretrained beats random") and "pretrained=0.830" in repr(c)
    bad = ft.lab.claim("augmentation narrows the gap", torch.tensor(0.1) < 0.05, gap=torch.tensor(0.1))
    assert bad.holds is False and bad.verdict == "fails" and "the lesson says HOLDS" in repr(bad)
    assert "#d55e00" in bad._repr_html_()
    unknown = ft.lab.claim("top 4 beats top 2", None, expect="undecided")
    assert unknown.verdict == "undecided" and unknown.as_declared and repr(unknown).startswith("? undecided: top 4")
    table = ft.lab.claims_table([c, bad, unknown])
    assert table.title == "1 hold, 1 undecided, 1 fail (1 not as the lesson says) in this run"
    assert "augmentation narrows the gap" in table.text() and "fails (lesson: holds)" in table.text()
    edge = ft.lab.claim("partial beats the probe", True, expect=ft.lab.BORDERLINE)
    assert "holds (borderline: the lesson declares holds or undecided)" in ft.lab.claims_table([edge]).text()
    with pytest.raises(ValueError, match="expect= is the verdict"):
        ft.lab.claim("x", True, expect="maybe")
    assert ft.lab.claim("no runs of top 4 to compare", None, above=0.0).verdict == "undecided"
    with pytest.raises(ValueError, match="bound an estimate"):
        ft.lab.claim("x", 0.3 > 0.2, above=0.0)
    with pytest.raises(ValueError, match="needs its sentence"):
        ft.lab.claim("", True)


def test_claims_are_stored_with_the_metrics_and_summarised(tmp_path):
    claims = [ft.lab.claim("a", True, x=1.0), ft.lab.claim("b is bigger", False, b=0.5)]
    ft.lab.record("01_x", tmp_path, claims=claims, acc=0.9)
    ft.lab.record("02_y", tmp_path, acc=0.8, choices=[ft.lab.choose("best of two", {"a": 0.1, "b": 0.2}, on="val")])
    saved = json.loads((tmp_path / "metrics" / "01_x.json").read_text())
    assert saved["claims"] == [{"claim": "a", "verdict": "holds", "expect": "holds", "holds": True, "evidence": {"x": 1.0}},
                               {"claim": "b is bigger", "verdict": "fails", "expect": "holds", "holds": False,
                                "evidence": {"b": 0.5}}]
    rows = lessons.summary_rows(tmp_path, {"01_x": 1.0, "02_y": 2.0}, {"01_x": "ok", "02_y": "ok"})
    assert rows[0]["claims"] == "1 hold, 0 undecided, 1 fail (1 not as the lesson says)"
    assert rows[0]["not as declared"] == "b is bigger (fails, lesson: holds)"
    assert rows[0]["metrics"] == "acc=0.900" and rows[1]["claims"] == "-"
    assert rows[0]["choices"] == "-" and rows[1]["choices"] == "1 on val" and rows[1]["metrics"] == "acc=0.800"
    md, _ = lessons.write_summary(tmp_path, rows)
    assert "1 fail" in md.read_text() and "b is bigger" in md.read_text()
    with pytest.raises(ValueError, match="ft.lab.claim"):
        ft.lab.record("03_z", None, claims=["not a claim"])


def test_check_claims_shows_them_and_raises_only_when_strict(monkeypatch):
    claims = [ft.lab.claim("holds", True), ft.lab.claim("noise", None, expect="undecided"), ft.lab.claim("fails", False, x=1)]
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)
    assert ft.lab.check_claims(claims).title == "1 hold, 1 undecided, 1 fail (1 not as the lesson says) in this run"
    monkeypatch.setenv("FTLAB_STRICT_CLAIMS", "1")
    assert ft.lab.check_claims(claims[:2]).title == "1 hold, 1 undecided, 0 fail (all as the lesson says) in this run"
    with pytest.raises(ft.lab.ClaimNotHeld, match="not the one the lesson declares at these settings: ✗ fails"):
        ft.lab.check_claims(claims)
    with pytest.raises(ft.lab.ClaimNotHeld, match="undecided — the lesson says HOLDS"):
        ft.lab.check_claims([ft.lab.claim("a difference", None)])


def test_a_choice_is_made_on_validation_and_recorded(tmp_path):
    c = ft.lab.choose("strategy", {"head": 0.80, "top2": ft.lab.spread([0.82, 0.84]), "full": float("nan")}, on="val")
    assert (c.best, c.on) == ("top2", "val") and set(c.scores) == {"head", "top2"}
    assert ft.lab.choose("lr", {1e-3: 0.5, 1e-2: 0.4}, on="train", higher=False).best == 1e-2
    with pytest.raises(ft.UsageError, match="not on 'test'"):
        ft.lab.choose("strategy", {"head": 0.8}, on="test")
    ft.lab.record("00_demo", tmp_path, choices=[c])
    saved = json.loads((tmp_path / "metrics" / "00_demo.json").read_text())["choices"][0]
    assert saved["best"] == "top2" and saved["on"] == "val" and saved["scores"]["top2"] == pytest.approx(0.83)


def _arms(rng, n=400, seeds=1, p_a=0.80, lost=0.08):
    """Two arms scored on the same examples: b is a, with a fraction ``lost`` of a's right answers wrong (paired)."""
    a = (rng.random((seeds, n)) < p_a).astype(float)
    return a, a * (rng.random((seeds, n)) >= lost)


def test_paired_bootstrap_with_one_seed_matches_scipy():
    from scipy.stats import bootstrap

    a, b = _arms(np.random.default_rng(0))
    d = ft.lab.paired(a[0], b[0], resamples=8000)
    assert d.seeds == 1 and d.n == 400 and d.value == pytest.approx((a - b).mean())
    ref = bootstrap(((a - b)[0],), np.mean, confidence_level=0.95, method="percentile", n_resamples=8000,
                    random_state=1).confidence_interval
    assert d.low == pytest.approx(ref.low, abs=0.004) and d.high == pytest.approx(ref.high, abs=0.004)
    assert d.over == "test examples (paired bootstrap)" and str(d).startswith(f"{100 * d.value:+.1f} points [")


def test_seed_noise_widens_the_interval_and_the_verdicts_follow_it():
    rng = np.random.default_rng(1)
    a, b = _arms(rng, n=600, seeds=3)
    shifted = a + np.array([[0.0], [0.06], [-0.06]])          # the same examples, a seed that moves every score
    one = ft.lab.paired(a, b)
    noisy = ft.lab.paired(shifted, b)
    assert noisy.seeds == 3 and "two-way" in noisy.over
    assert (noisy.high - noisy.low) > 1.5 * (one.high - one.low)
    clear = ft.lab.claim("a beats b", one, above=0.0)
    assert clear.verdict == "holds" and clear.evidence["low"] > 0 and clear.evidence["above"] == 0.0
    assert ft.lab.claim("b beats a", one, below=0.0).verdict == "fails"
    assert ft.lab.claim("a beats b by 20 points", one, above=0.2).verdict == "fails"
    straddles = ft.lab.paired(a, a[:, ::-1].copy())           # two arms of the same quality, unrelated errors
    assert ft.lab.claim("a beats its shuffle", straddles, above=0.0).verdict == "undecided"
    equivalent = ft.lab.claim("a and its shuffle are equivalent within 10 points", straddles, within=0.10)
    assert equivalent.verdict == "holds" and "(90 % two one-sided tests)" in equivalent.evidence["equivalence_interval"]
    assert ft.lab.claim("a and b are equivalent within 1 point", one, within=0.01).verdict == "fails"
    acc = ft.lab.estimate(a)
    assert acc.low < a.mean() < acc.high and acc.what == "mean" and " %" in str(acc)


def test_paired_takes_predictions_and_refuses_unpaired_arms():
    targets = torch.tensor([0, 1, 1, 0, 1] * 20)
    right = Predictions(None, targets.clone(), targets, None)
    wrong_some = Predictions(None, torch.where(torch.arange(100) % 10 == 0, 1 - targets, targets), targets, None)
    d = ft.lab.paired([right, right], [wrong_some, wrong_some])
    assert d.seeds == 2 and d.value == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same seeds and test examples"):
        ft.lab.paired(np.ones(100), np.ones(90))
    with pytest.raises(ValueError, match="exactly one of above="):
        ft.lab.claim("x", d, above=0.0, below=1.0)
    with pytest.raises(ValueError, match="NaN"):
        ft.lab.estimate([1.0, float("nan")])


def test_a_paired_difference_in_the_scores_own_units_is_not_shown_in_points():
    rng = np.random.default_rng(0)
    before = rng.normal(6.5, 0.5, size=(2, 50))                       # per-text log-perplexities, 2 seeds
    after = before + 0.02 + rng.normal(0, 0.01, size=(2, 50))
    shares, nats = ft.lab.paired(after, before), ft.lab.paired(after, before, percent=False)
    assert (nats.value, nats.low, nats.high) == (shares.value, shares.low, shares.high)
    assert "points" in str(shares) and "points" not in str(nats) and str(nats).startswith(f"{nats.value:+.3f} [{nats.low:+.3f}, ")
    c = ft.lab.claim("within 0.1 nats (equivalence)", nats, within=0.1)
    assert c.verdict == "holds" and "points" not in c.evidence["estimate"]


def test_unpaired_compares_two_groups_of_examples():
    rng = np.random.default_rng(3)
    often, rarely = (rng.random(300) < 0.7).astype(float), (rng.random(200) < 0.4).astype(float)
    d = ft.lab.unpaired(often, rarely)
    assert d.value == pytest.approx(often.mean() - rarely.mean()) and d.low < d.value < d.high and d.low > 0.15
    assert d.n == 500 and "each resampled" in d.over
    assert ft.lab.claim("the first group scores higher", d, above=0.0).verdict == "holds"
    with pytest.raises(ValueError, match="1-D per-example"):
        ft.lab.unpaired(np.ones((2, 5)), np.ones(5))


def test_a_share_of_one_run_gets_the_wilson_interval_not_an_empty_bootstrap():
    from scipy.stats import binomtest
    all_right = ft.lab.estimate(np.ones(64))
    assert all_right.value == 1.0 and all_right.high == 1.0 and all_right.low == pytest.approx(64 / (64 + 1.959964 ** 2))
    assert "Wilson" in all_right.over and "[94.3, 100.0]" in str(all_right)
    for right, n in ((0, 10), (19, 205), (523, 656)):
        ci = binomtest(right, n).proportion_ci(confidence_level=0.95, method="wilson")
        est = ft.lab.estimate(np.r_[np.ones(right), np.zeros(n - right)])
        assert (est.low, est.high) == pytest.approx((ci.low, ci.high), abs=1e-9)
        assert est.interval(0.90) == pytest.approx(tuple(binomtest(right, n).proportion_ci(0.90, method="wilson")), abs=1e-9)
    assert ft.lab.claim("at 300 px most functional cells are called defective", all_right, above=0.5).verdict == "holds"
    several = ft.lab.estimate(np.ones((3, 64)))                      # several seeds: the two-way bootstrap as before
    assert several.counts is None and "two-way" in several.over


def test_the_majority_baseline_takes_its_class_from_the_training_labels():
    right = ft.lab.majority_baseline([0, 1, 1, 1], [0, 0, 0, 1])          # class 1 from training, though test is mostly 0
    assert right.tolist() == [0.0, 0.0, 0.0, 1.0] and right.mean().item() == 0.25
    with pytest.raises(ValueError, match="neither may be empty"):
        ft.lab.majority_baseline([], [0, 1])


def test_a_borderline_claim_declares_two_verdicts_and_fails_only_on_the_third():
    from ftlab.lab.claims import verdict_counts

    edge = ft.lab.paired(np.r_[np.ones(60), np.zeros(40)], np.r_[np.ones(52), np.zeros(48)])   # +8 points, wide
    near = ft.lab.claim("a beats b, barely", edge, above=0.0, expect=ft.lab.BORDERLINE)
    assert near.expect == "holds|undecided" and near.as_declared
    assert ft.lab.claim("a beats b by 30 points", edge, above=0.30, expect=ft.lab.BORDERLINE).as_declared is False
    assert verdict_counts([near]).endswith("(all as the lesson says)")
    with pytest.raises(ValueError, match="BORDERLINE"):
        ft.lab.claim("x", True, expect=("holds", "maybe"))
