"""The full-quality run (``ftlab full``): 2-class answers from the 4-class model, one extraction, the CLI."""
import json

import pytest
import torch

import ftlab as ft
from ftlab.lab import cli
from ftlab.lab.full_images import coarsen, format_full, full_run


def test_two_class_labels_are_the_upper_two_levels():
    s2, s4 = ft.vision.elpv(classes=2), ft.vision.elpv(classes=4)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(s2, split).targets, (getattr(s4, split).targets >= 2).long())
        assert torch.equal(getattr(s2, split).images, getattr(s4, split).images)


def test_coarsen_sums_the_levels():
    p = torch.tensor([[0.1, 0.3, 0.4, 0.2], [0.7, 0.2, 0.05, 0.05]])
    assert torch.allclose(coarsen(p), torch.tensor([[0.4, 0.6], [0.9, 0.1]]))
    with pytest.raises(ft.FtlabError, match="4 ELPV levels"):
        coarsen(torch.ones(2, 2))


def test_freeze_to_takes_a_group_name():
    model = ft.vision.pretrained(num_classes=2)
    ft.freeze_to(model, "blocks.5")
    trainable = [g.name for g in ft.layer_groups(model) if any(p.requires_grad for p in g.parameters())]
    assert trainable == ["blocks.5", "blocks.6", "final_conv", "head"]
    with pytest.raises(ft.FtlabError, match="No layer group named 'blocks.9'.*blocks.6"):
        ft.freeze_to(model, "blocks.9")


@pytest.mark.slow
def test_tiny_full_run_and_cli(tmp_path, tmp_cache, capsys):
    kwargs = dict(seeds=(0, 1), image_size=32, epochs=1, subset=8, log=None)
    result = full_run(**kwargs)
    s = result["summary"]
    assert [r["seed"] for r in result["runs"]] == [0, 1] and s["test_cells"] == 656 and s["train_cells"] == 32
    for r in result["runs"]:
        assert 0 <= r["acc4"] <= 1 and 0 <= r["acc2"] <= 1 and r["train_images_per_s"] > 0
    assert s["acc2"]["min"] <= s["acc2"]["mean"] <= s["acc2"]["max"]
    assert "2-class test accuracy" in format_full(result) and "target" not in format_full(result)
    files = list((tmp_cache / "features").iterdir())
    assert len(files) == 3                          # train, val, test: extracted once for both seeds
    again = full_run(**kwargs)                      # a rerun loads them and trains the same models
    assert [r["acc4"] for r in again["runs"]] == [r["acc4"] for r in result["runs"]]
    assert len(list((tmp_cache / "features").iterdir())) == 3

    out = tmp_path / "full"
    args = ["full", "--image-size", "32", "--epochs", "1", "--seeds", "0", "--subset", "8", "--out", str(out)]
    assert cli.main(args) == 0
    saved = json.loads((out / "full.json").read_text())
    assert saved["config"]["image_size"] == 32 and len(saved["runs"]) == 1
    assert "4-class test accuracy" in capsys.readouterr().out
    before = (out / "full.json").read_text()
    assert cli.main(args) == 2                      # never overwrites a result by accident
    assert "exists" in capsys.readouterr().err and (out / "full.json").read_text() == before


@pytest.mark.slow
def test_selection_reads_only_train_and_val_and_its_choice_is_run(tmp_cache, monkeypatch):
    from ftlab.lab import full_images as fullrun

    small = (dict(model="efficientnet_lite0", image_size=32, cut="blocks.6"),
             dict(model="efficientnet_lite1", image_size=32, cut="blocks.6"))
    sel = fullrun.select_full(small, (1e-2, 3e-3), epochs=1, subset=8, log=None)
    assert sel["selected_on"] == "val" and [r["stage"] for r in sel["rows"]] == [1, 1, 2]
    assert len(list((tmp_cache / "features").iterdir())) == 4           # train and val of two models; no test
    winner = max(sel["rows"][:2], key=lambda r: (round(r["val_acc4"], 6), -r["val_loss"]))
    assert sel["rows"][2]["model"] == winner["model"] and sel["rows"][2]["lr"] == 3e-3
    assert sel["chosen"] in [{k: r[k] for k in ("model", "image_size", "cut", "lr")} for r in sel["rows"]]
    json.dumps(sel)

    monkeypatch.setattr(fullrun, "CANDIDATES", small[:1])
    monkeypatch.setattr(fullrun, "LEARNING_RATES", (1e-2,))
    result = fullrun.full_run(seeds=(0,), epochs=1, subset=8, select=True, log=None)
    c = result["config"]
    assert (c["model"], c["image_size"], c["cut"], c["lr"], c["selected_on"]) == ("efficientnet_lite0", 32, "blocks.6",
                                                                                  1e-2, "val")
    assert result["selection"]["epochs"] == fullrun.SELECT["epochs"] and len(result["selection"]["rows"]) == 1
    text = format_full(result)
    assert "selection on val" in text and "chosen on val" in text


def test_make_full_runs_what_the_shipped_selection_chose():
    from ftlab.lab.full_images import FULL, load_full

    shipped = load_full()
    assert shipped["config"]["selected_on"] == "val" and shipped["selection"]["selected_on"] == "val"
    chosen = shipped["selection"]["chosen"]
    assert chosen == {"model": FULL["model"], "image_size": FULL["image_size"], "cut": FULL["cut"], "lr": FULL["lr"]}
    assert {k: shipped["config"][k] for k in chosen} == chosen
    assert {"mean", "std", "min", "max", "n"} <= set(shipped["summary"]["acc2"]) and len(shipped["runs"]) == 3
