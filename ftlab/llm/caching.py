"""The decoder in the caching engine: token states at a frozen layer, stored once, the layers above trained on them.

A decoder layer takes the token states, the causal attention mask and the rotary position
embeddings. With the padding on the right (``ft.llm.instruction_loader``), a real token attends
only to the real tokens before it and sits at the same position with or without padding, so its
state at any layer does not depend on the padding: the states of the real tokens are stored, one
ragged row per example (with its labels), and a cached batch is re-padded on the right, its mask
rebuilt and its positions counted again. ``ft.fit_cached(model, (train, val), ..., step=ft.llm.lm_step)``
then trains the layers from the cut up with the same losses as end-to-end training of those
layers (``tests/test_llm.py`` checks it), while the 30 - k layers below run once.

Every prompt of a task starts with the same tokens (the system turn and the question), so their
stored states are the same in every row of a batch. :class:`DecoderTop` finds that shared start
(:func:`shared_start`: the leading positions where every row's stored state is identical) and runs
the layers above the cut on it **once per batch**, then the rest of every row against its keys and
values (:func:`run_layers` with ``shared``): the same states and gradients (causal attention: a
token never sees what comes after it), and less work per training step. Extraction does the same
below the cut, on the shared token ids.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from ..caching.adapter import CacheAdapter, register_cache_adapter
from ..errors import UsageError
from ..groups import layer_groups
from .data import IGNORE, InstructionSet, length_grouped

__all__ = ["DecoderAdapter", "DecoderTop", "run_layers", "shared_start"]

SHARED_MIN = 8         # a shared start at least this many tokens long runs once per batch


def run_layers(model: nn.Module, h: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int,
               shared: int = 0) -> torch.Tensor:
    """Token states ``h`` through decoder layers ``start`` to ``stop - 1`` (causal mask, rotary positions 0..L-1).

    ``shared``: the first ``shared`` positions hold the same states in every row (a prompt prefix,
    see :func:`shared_start`); they run once, for row 0, and the rest of every row attends to their
    keys and values (the model's cache, with gradients). The result is the same, with less work.
    """
    from transformers.masking_utils import create_causal_mask

    if start >= stop:
        return h
    if shared < 1 or h.shape[0] < 2:
        pos = torch.arange(h.shape[1], device=h.device)[None]
        mask = create_causal_mask(model.config, h, attention_mask, None, pos)
        emb = model.model.rotary_emb(h, position_ids=pos)
        for layer in model.model.layers[start:stop]:
            h = layer(h, attention_mask=mask, position_embeddings=emb, position_ids=pos)
        return h
    from transformers import DynamicCache

    cache, layers = DynamicCache(config=model.config), model.model.layers[start:stop]
    head, pos = h[:1, :shared], torch.arange(shared, device=h.device)[None]
    mask = create_causal_mask(model.config, head, attention_mask[:1, :shared], None, pos)
    emb = model.model.rotary_emb(head, position_ids=pos)
    for layer in layers:
        head = layer(head, attention_mask=mask, position_embeddings=emb, position_ids=pos, cache=cache, use_cache=True)
    cache.batch_repeat_interleave(h.shape[0])
    rest, pos = h[:, shared:], torch.arange(shared, h.shape[1], device=h.device)[None]
    mask = create_causal_mask(model.config, rest, attention_mask, cache, pos, layer_idx=layers[0].self_attn.layer_idx)
    emb = model.model.rotary_emb(rest, position_ids=pos)
    for layer in layers:
        rest = layer(rest, attention_mask=mask, position_embeddings=emb, position_ids=pos, cache=cache, use_cache=True)
    return torch.cat([head.expand(h.shape[0], -1, -1), rest], 1)


def shared_start(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading positions hold the very same state (bit for bit) in every row of a padded batch.

    ``hidden_states`` is ``[rows, positions, ...]``: token states, or token ids with a last axis of 1.

    Prompts that start with the same tokens (system turn, question) have the same stored states
    there: the layers below the cut saw the same tokens at the same positions. It stops before
    each row's last real token, so every row keeps a position of its own; 0 for a single row or a
    start shorter than ``SHARED_MIN`` (not worth a second pass).
    """
    if hidden_states.shape[0] < 2:
        return 0
    limit = int(attention_mask.sum(1).min()) - 1
    same = (hidden_states[1:, :limit] == hidden_states[:1, :limit]).all(-1).all(0)
    n = int(same.long().cumprod(0).sum()) if limit > 0 else 0
    return n if n >= SHARED_MIN else 0


class DecoderTop(nn.Module):
    """The decoder from layer group ``cut`` up (layers, final norm, the tied output layer), on stored token states.

    ``top(hidden_states=..., attention_mask=...)`` returns what the model returns (``.logits`` for
    every position); the parameters are the model's own. ``share``: run the start that every row
    of a batch shares once per batch (:func:`shared_start`); False runs every row whole.
    """

    def __init__(self, model: nn.Module, cut: int, share: bool = True):
        super().__init__()
        self.model, self.cut, self.share = model, cut, share
        self._groups = layer_groups(model)

    def ftlab_layer_groups(self):
        return self._groups

    def token_states(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor):
        """``(states, 0, lm_head)``: the final-norm states of every stored token (what ``ft.llm.lm_step`` reads)."""
        h = run_layers(self.model, hidden_states, attention_mask, self.cut - 1, len(self.model.model.layers),
                       shared=shared_start(hidden_states, attention_mask) if self.share else 0)
        return self.model.model.norm(h), 0, self.model.lm_head

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, labels=None):
        from transformers.modeling_outputs import CausalLMOutput

        h, _, head = self.token_states(hidden_states, attention_mask)
        return CausalLMOutput(logits=head(h))


def _decoder(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForCausalLM") and hasattr(getattr(model, "model", None), "layers")


class DecoderAdapter(CacheAdapter):
    """A Llama-style causal LM on the batches of ``ft.llm.instruction_loader``."""

    kind = "decoder"
    extract_batch_size = 16

    def accepts(self, model: nn.Module) -> bool:
        return _decoder(model)

    def _dataset(self, data) -> InstructionSet:
        ds = data.dataset if isinstance(data, DataLoader) else data
        if not isinstance(ds, InstructionSet) or not isinstance(data, DataLoader):
            raise UsageError("A decoder's token states are extracted from ft.llm.instruction_loader(...) (its collate "
                             f"pads and masks each batch), not from a {type(data).__name__}.")
        return ds

    def batches(self, model, data):
        ds = self._dataset(data)
        by_length = sorted(range(len(ds)), key=lambda i: len(ds[i]["input_ids"]))       # little padding
        for start in range(0, len(ds), self.extract_batch_size):
            ids = by_length[start:start + self.extract_batch_size]
            batch = data.collate_fn([ds[i] for i in ids])
            yield ids, batch, [torch.tensor(ds[i]["labels"]) for i in ids]

    def content(self, data) -> list:
        return [self._dataset(data).cache_key()]

    def targets(self, data):
        return [torch.tensor(it["labels"]) for it in self._dataset(data).items]

    def below(self, model, batch, cut):
        if cut < 1:
            raise UsageError("The embeddings are the decoder's first group: cut at layers.0 or above.")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        # the prompt start every example shares (same token ids) runs once per batch here too
        return run_layers(model, model.model.embed_tokens(ids), mask, 0, cut - 1, shared=shared_start(ids[..., None], mask))

    def unbatch(self, state, batch):
        return [h[m.bool()] for h, m in zip(state, batch["attention_mask"])]

    def ragged(self, cut, groups) -> bool:
        return True

    def above(self, model, cut):
        return DecoderTop(model, cut)

    def batch_sampler(self, feats, batch_size, generator):
        return None if feats.lengths is None else length_grouped(feats.lengths, batch_size, generator)

    def collate(self, items, cut):
        states, labels = zip(*items)
        lengths = torch.tensor([len(s) for s in states])
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        return {"hidden_states": pad_sequence(list(states), batch_first=True), "attention_mask": mask,
                "labels": pad_sequence([torch.as_tensor(t) for t in labels], batch_first=True, padding_value=IGNORE)}

    def check(self, model, cut, batch, state) -> bool:
        # the final-norm states of every token, not the logits: the output layer (49,152 words a token) would
        # cost more than the check's two passes, and it maps equal states to equal logits anyway
        keep = batch["attention_mask"].bool()
        full = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[keep]
        top = self.above(model, cut).token_states(state, batch["attention_mask"])[0][keep]
        return torch.allclose(top, full, atol=1e-3, rtol=1e-3)


register_cache_adapter(DecoderAdapter())
