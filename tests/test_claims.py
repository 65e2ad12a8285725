"""Claims as code: recorded next to the metrics, shown held or not, summarised by the runner."""
import json

import numpy as np
import pytest
import torch

import ftlab as ft
from ftlab.lab import lessons


def test_claim_records_the_condition_and_the_evidence():
    c = ft.lab.claim("pretrained beats random", np.float64(0.83) > 0.71 + 0.05, pretrained=np.float64(0.83), random=0.71)
    assert c.holds is True and c.evidence == {"pretrained": 0.83, "random": 0.71}
    assert repr(c).startswith("✓ holds: pretrained beats random") and "pretrained=0.830" in repr(c)
    bad = ft.lab.claim("augmentation narrows the gap", torch.tensor(0.1) < 0.05, gap=torch.tensor(0.1))
    assert bad.holds is False and "DOES NOT HOLD" in repr(bad) and "#d55e00" in bad._repr_html_()
    table = ft.lab.claims_table([c, bad])
    assert table.title == "1 of 2 claims hold in this run" and "augmentation narrows the gap" in table.text()
    with pytest.raises(ValueError, match="needs its sentence"):
        ft.lab.claim("", True)


def test_claims_are_stored_with_the_metrics_and_summarised(tmp_path):
    claims = [ft.lab.claim("a", True, x=1.0), ft.lab.claim("b is bigger", False, b=0.5)]
    ft.lab.record("01_x", tmp_path, claims=claims, acc=0.9)
    ft.lab.record("02_y", tmp_path, acc=0.8)
    saved = json.loads((tmp_path / "metrics" / "01_x.json").read_text())
    assert saved["claims"] == [{"claim": "a", "holds": True, "evidence": {"x": 1.0}},
                               {"claim": "b is bigger", "holds": False, "evidence": {"b": 0.5}}]
    rows = lessons.summary_rows(tmp_path, {"01_x": 1.0, "02_y": 2.0}, {"01_x": "ok", "02_y": "ok"})
    assert rows[0]["claims"] == "1/2 hold" and rows[0]["not holding"] == "b is bigger"
    assert rows[0]["metrics"] == "acc=0.900" and rows[1]["claims"] == "-"
    md, _ = lessons.write_summary(tmp_path, rows)
    assert "1/2 hold" in md.read_text() and "b is bigger" in md.read_text()
    with pytest.raises(ValueError, match="ft.lab.claim"):
        ft.lab.record("03_z", None, claims=["not a claim"])


def test_check_claims_shows_them_and_raises_only_when_strict(monkeypatch):
    claims = [ft.lab.claim("holds", True), ft.lab.claim("fails", False, x=1)]
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)
    assert ft.lab.check_claims(claims).title == "1 of 2 claims hold in this run"
    monkeypatch.setenv("FTLAB_STRICT_CLAIMS", "1")
    assert ft.lab.check_claims(claims[:1]).title == "1 of 1 claims hold in this run"
    with pytest.raises(ft.lab.ClaimNotHeld, match="do not hold at these settings: ✗ DOES NOT HOLD in this run: fails"):
        ft.lab.check_claims(claims)


def test_a_choice_is_made_on_validation_and_recorded(tmp_path):
    c = ft.lab.choose("strategy", {"head": 0.80, "top2": ft.lab.spread([0.82, 0.84]), "full": float("nan")}, on="val")
    assert (c.best, c.on) == ("top2", "val") and set(c.scores) == {"head", "top2"}
    assert ft.lab.choose("lr", {1e-3: 0.5, 1e-2: 0.4}, on="train", higher=False).best == 1e-2
    with pytest.raises(ft.UsageError, match="not on 'test'"):
        ft.lab.choose("strategy", {"head": 0.8}, on="test")
    ft.lab.record("00_demo", tmp_path, choices=[c])
    saved = json.loads((tmp_path / "metrics" / "00_demo.json").read_text())["choices"][0]
    assert saved["best"] == "top2" and saved["on"] == "val" and saved["scores"]["top2"] == pytest.approx(0.83)
