"""Text in the caching engine: the adapter for a BERT-style sentence classifier.

A BERT layer takes the token states *and* the attention mask, so the activations stored at a
cut below the head are the hidden states of every real (unpadded) token, one ragged row per
text: cached batches are re-padded from them and the mask rebuilt. Texts are run in batches of
similar length (less padding), and trained in them too (:class:`~ftlab.text.LengthGroupedBatches`,
the batches ``ft.text.loaders`` gives with the same seed), so cached and end-to-end training
make the same updates. ``cut="head"`` stores the mean-pooled sentence vectors ``[N, D]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from ..caching.adapter import CacheAdapter, Top, register_cache_adapter
from ..errors import UsageError
from ..groups import layer_groups
from .loading import LengthGroupedBatches
from .models import SentenceClassifier, mean_pool

__all__ = ["TextAdapter", "TokenTop"]


def _layers(model: nn.Module, cut: int, groups) -> list[nn.Module]:
    mods = [m for g in groups[cut:-1] for m in g.modules]
    if not all(hasattr(m, "attention") for m in mods):
        raise UsageError(f"Cut-point caching for text needs BERT layers between the cut and the head; "
                         f"{type(model).__name__} has {[type(m).__name__ for m in mods]}. Use cut='head'.")
    return mods


def _mask(config, h: torch.Tensor, attention_mask: torch.Tensor):
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=attention_mask)


class TokenTop(nn.Module):
    """The BERT layers of ``model`` from group ``cut`` up, the pooling and the head, as a module on token states.

    ``top(hidden_states=..., attention_mask=..., labels=...)`` returns what ``model`` returns
    (``.logits``, and ``.loss`` with labels); the parameters are the model's own.
    """

    def __init__(self, model: nn.Module, cut: int):
        super().__init__()
        self.model, self.cut = model, cut
        self._groups = layer_groups(model)
        self._layers = _layers(model, cut, self._groups)

    def ftlab_layer_groups(self):
        """The wrapped model's layer groups (so layer-wise learning rates work on cached training)."""
        return self._groups

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        mask, h = _mask(self.model.config, hidden_states, attention_mask), hidden_states
        for layer in self._layers:
            h = layer(h, mask)
        logits = self.model.classifier(self.model.dropout(mean_pool(h, attention_mask)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TextAdapter(CacheAdapter):
    """:class:`~ftlab.text.SentenceClassifier` on the dict batches of ``ft.text.loaders``."""

    kind = "text"
    extract_batch_size = 64

    def accepts(self, model: nn.Module) -> bool:
        return isinstance(model, SentenceClassifier)

    def batches(self, model, data):
        if not isinstance(data, DataLoader) or data.collate_fn is None:
            raise UsageError("Texts are extracted from a loader of ft.text.loaders (its collate pads each batch): "
                             "pass loaders.train, not the data set.")
        ds = data.dataset
        by_length = torch.argsort(torch.as_tensor(ds.lengths), stable=True).tolist()   # batches with little padding
        for start in range(0, len(by_length), self.extract_batch_size):
            ids = by_length[start:start + self.extract_batch_size]
            batch = data.collate_fn([ds[i] for i in ids])
            yield ids, batch, batch["labels"]

    def _head(self, model, cut: int) -> bool:
        return cut == len(layer_groups(model)) - 1

    def below(self, model, batch, cut):
        if self._head(model, cut):
            return model.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        _layers(model, cut, layer_groups(model))
        h = model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        mask = _mask(model.config, h, batch["attention_mask"])
        for g in layer_groups(model)[1:cut]:
            for layer in g.modules:
                h = layer(h, mask)
        return h

    def unbatch(self, state, batch):
        if state.ndim == 2:
            return list(state.unbind(0))
        return [h[m.bool()] for h, m in zip(state, batch["attention_mask"])]

    def ragged(self, cut, groups) -> bool:
        return cut < len(groups) - 1

    def above(self, model, cut):
        if self._head(model, cut):
            return Top(model, cut, lambda x, training: F.dropout(x, model.drop_rate, training))
        return TokenTop(model, cut)

    def collate(self, items, cut):
        states, labels = zip(*items)
        if states[0].ndim == 1:
            return default_collate(list(items))
        lengths = torch.tensor([len(s) for s in states])
        mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
        return {"hidden_states": pad_sequence(list(states), batch_first=True), "attention_mask": mask,
                "labels": torch.as_tensor(labels).long()}

    def check(self, model, cut, batch, state) -> bool:
        full = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        top = self.above(model, cut).eval()
        out = top(state) if state.ndim == 2 else top(state, batch["attention_mask"]).logits
        return torch.allclose(out, full, atol=1e-4, rtol=1e-3)

    def batch_sampler(self, feats, batch_size, generator):
        return None if feats.lengths is None else LengthGroupedBatches(feats.lengths, batch_size, generator)

    def advance(self, model, batch, start, stop):
        """A collated batch of token states at group ``start`` moved up to ``stop``: one row of token states per
        text, or its sentence vector (mean pooling) when ``stop`` is the head."""
        groups = layer_groups(model)
        h, mask = batch["hidden_states"], batch["attention_mask"]
        if start < len(groups) - 1:
            ext = _mask(model.config, h, mask)
            _layers(model, start, groups)                                    # BERT layers up to the head
            for g in groups[start:min(stop, len(groups) - 1)]:
                for layer in g.modules:
                    h = layer(h, ext)
        if self._head(model, stop):
            return list(mean_pool(h, mask).unbind(0))
        return [row[m.bool()] for row, m in zip(h, mask)]


register_cache_adapter(TextAdapter())
