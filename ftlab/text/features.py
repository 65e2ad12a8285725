"""Cut-point caching for a transformer: run the frozen layers once, train the top layers on stored token states.

Introduced in lesson 06; the text form of :mod:`ftlab.features`. A BERT layer takes the token
states *and* the attention mask, so the stored activations are the hidden states of every real
(unpadded) token at the cut, kept with each text's length: batches are re-padded from them and
the mask rebuilt. :func:`extract_hidden` runs the encoder below the cut once, in eval mode, and
caches the result on disk, keyed by the weights below the cut, the token ids and the cut;
:func:`fit_hidden` trains the layers above it (and the head) on those states with ``ft.fit``.
With the frozen part's dropout off (ftlab's policy for frozen parts) and the same seed, the
updates are the ones end-to-end training makes: the same losses, several times faster.

``cut="head"`` stores the mean-pooled sentence vectors instead (:class:`ftlab.Features`, the
kind ``ft.linear_probe`` and ``ft.fit_head`` take).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from ..batches import prepare, to_device
from ..errors import UsageError
from ..features import Features, fit_head, resolve_cut
from ..files import atomic_save, cache_dir, stable_hash
from ..freezing import eval_mode
from ..groups import layer_groups
from ..history import History
from ..train import Predictions, evaluate, fit, predict
from .loading import LengthGroupedBatches
from .models import mean_pool

__all__ = ["TokenFeatures", "TextTop", "extract_hidden",
           "fit_hidden", "evaluate_hidden", "predict_hidden"]


class TokenFeatures(NamedTuple):
    """Hidden states of every real token at layer group ``cut``: ``hidden`` ``[tokens, D]`` (all texts
    one after the other), ``lengths`` ``[N]`` tokens per text, ``y`` ``[N]`` labels, and the cache key."""

    hidden: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor
    cut: int
    key: str

    def __len__(self) -> int:
        return len(self.y)


class _TokenDataset(torch.utils.data.Dataset):
    def __init__(self, feats: TokenFeatures):
        self.f = feats
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), feats.lengths.cumsum(0)]).tolist()

    def __len__(self) -> int:
        return len(self.f.y)

    def __getitem__(self, i: int):
        return self.f.hidden[self.offsets[i]:self.offsets[i + 1]], int(self.f.y[i])


def _collate(items) -> dict:
    states, labels = zip(*items)
    lengths = torch.tensor([len(s) for s in states])
    mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
    return {"hidden_states": pad_sequence(list(states), batch_first=True), "attention_mask": mask,
            "labels": torch.tensor(labels)}


def _layers(model: nn.Module, cut: int, groups) -> list[nn.Module]:
    mods = [m for g in groups[cut:-1] for m in g.modules]
    if not all(hasattr(m, "attention") for m in mods):
        raise UsageError(f"Cut-point caching for text needs BERT layers between the cut and the head; "
                         f"{type(model).__name__} has {[type(m).__name__ for m in mods]}. Use cut='head'.")
    return mods


class TextTop(nn.Module):
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
        from transformers.masking_utils import create_bidirectional_mask
        from transformers.modeling_outputs import SequenceClassifierOutput

        mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden_states,
                                         attention_mask=attention_mask)
        h = hidden_states
        for layer in self._layers:
            h = layer(h, mask)
        logits = self.model.classifier(self.model.dropout(mean_pool(h, attention_mask)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _below(model, batch, layer_groups_below) -> torch.Tensor:
    """The token states after the embeddings and the given layers only (nothing above the cut is run)."""
    from transformers.masking_utils import create_bidirectional_mask

    h = model.bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
    mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=batch["attention_mask"])
    for g in layer_groups_below:
        for layer in g.modules:
            h = layer(h, mask)
    return h


def _pooled(model, batch) -> torch.Tensor:
    return model.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))


@torch.no_grad()
def extract_hidden(model: nn.Module, loader, cut: int | str = "auto", cache: bool = True,
                   device: str | torch.device = "auto") -> TokenFeatures | Features:
    """Run the encoder below ``cut`` once over ``loader`` (eval mode) and keep its output, in the data set's order.

    The texts are run in batches of similar length (less padding); the result is in the order of
    ``loader.dataset``.

    Args:
        model: a :class:`~ftlab.text.SentenceClassifier`.
        loader: a DataLoader of ``ft.text.loaders`` (its shuffling is ignored).
        cut: ``"auto"`` (the first trainable layer group), ``"head"`` (the pooled sentence
            vectors), or a group name / index (``"layer.4"``: layers 4, 5 and the head train).
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.

    Returns:
        :class:`TokenFeatures` for a cut below the head; :class:`ftlab.Features` (``x`` ``[N, D]``)
        for ``cut="head"``.
    """
    index = resolve_cut(model, cut)
    groups = layer_groups(model)
    ds = loader.dataset
    head = index == len(groups) - 1
    if not head:
        _layers(model, index, groups)
    bottom = [v for g in groups[:index] for m in g.modules for v in m.state_dict().values()]
    key = stable_hash(type(model).__name__, getattr(model, "ftlab_name", None), index, len(ds), ds.cache_key(), *bottom)
    path = cache_dir("features") / f"text-cut{index}-{key}.pt"
    y = torch.as_tensor(ds.targets).long()
    if cache and path.is_file():
        s = torch.load(path, weights_only=True)
        return Features(s["x"], y, index, key) if head else TokenFeatures(s["hidden"], s["lengths"], y, index, key)
    by_length = torch.argsort(torch.as_tensor(ds.lengths), stable=True).tolist()   # batches with little padding
    plain = DataLoader(torch.utils.data.Subset(ds, by_length), batch_size=64, shuffle=False,
                       collate_fn=loader.collate_fn)
    dev = prepare(model, device)
    xs, lengths = [], []
    with eval_mode(model):
        for batch in plain:
            batch = to_device(batch, dev)
            if head:
                xs.append(_pooled(model, batch).float().cpu())
                continue
            h, m = _below(model, batch, groups[1:index]), batch["attention_mask"]
            if not xs:
                top = TextTop(model, index).eval()(h, m).logits
                full = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                if not torch.allclose(top, full, atol=1e-4, rtol=1e-3):
                    raise UsageError(f"Cutting {type(model).__name__} at {groups[index].name} does not reproduce its "
                                     "output; train end-to-end with ft.fit.")
            n = m.sum(1)
            xs.append(h[m.bool()].float().cpu())
            lengths.append(n.cpu())
    back = torch.argsort(torch.tensor(by_length))          # position of text i in the sorted order
    if head:
        feats = Features(torch.cat(xs)[back], y, index, key)
        if cache:
            atomic_save({"x": feats.x}, path)
        return feats
    per_text = torch.cat(xs).split(torch.cat(lengths).tolist())
    feats = TokenFeatures(torch.cat([per_text[int(j)] for j in back]), torch.cat(lengths)[back], y, index, key)
    if cache:
        atomic_save({"hidden": feats.hidden, "lengths": feats.lengths}, path)
    return feats


def _token_loader(feats: TokenFeatures, batch_size: int, shuffle: bool = False, seed: int = 0,
                  group_by_length: bool = False) -> DataLoader:
    if group_by_length:
        g = torch.Generator().manual_seed(seed)
        return DataLoader(_TokenDataset(feats), batch_sampler=LengthGroupedBatches(feats.lengths, batch_size, g),
                          collate_fn=_collate, generator=g)
    return DataLoader(_TokenDataset(feats), batch_size=batch_size, shuffle=shuffle, collate_fn=_collate,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


def fit_hidden(model: nn.Module, train: TokenFeatures | Features, val: TokenFeatures | Features | None, epochs: int,
               lr: float = 1e-3, batch_size: int = 32, seed: int = 0, group_by_length: bool = True,
               **fit_kwargs) -> History:
    """Train the layer groups of ``model`` above the cut of stored features (:func:`extract_hidden`).

    The parameters are the model's own: afterwards ``model`` is the trained model. Takes the
    arguments of ``ft.fit`` (``lr_mult``, ``weight_decay``, ``scheduler``, ``callbacks`` ...).
    ``group_by_length=True`` (default, as in :func:`ftlab.text.loaders`) batches texts of similar
    length together (:class:`~ftlab.text.LengthGroupedBatches`): less padding, faster epochs; with the
    same seed these are the batches the loaders give, so cached and end-to-end training still match.
    """
    if val is not None and val.cut != train.cut:
        raise UsageError(f"Train features are cut at group {train.cut}, val features at {val.cut}: extract both the same way.")
    if isinstance(train, Features):
        return fit_head(model, train, val, epochs, lr=lr, batch_size=batch_size, seed=seed, **fit_kwargs)
    tl = _token_loader(train, batch_size, shuffle=True, seed=seed, group_by_length=group_by_length)
    vl = _token_loader(val, 2 * batch_size, group_by_length=False) if val is not None else None
    history = fit(TextTop(model, train.cut), (tl, vl), epochs, lr=lr, seed=seed, **fit_kwargs)
    history.meta.update(cached_cut=train.cut)
    return history


def _scored(model, feats):
    from ..features import Top

    if isinstance(feats, Features):
        return Top(model, feats.cut), DataLoader(torch.utils.data.TensorDataset(feats.x, feats.y), batch_size=256)
    return TextTop(model, feats.cut), _token_loader(feats, 128)


def evaluate_hidden(model: nn.Module, feats: TokenFeatures | Features, device: str | torch.device = "auto") -> dict[str, float]:
    """``ft.evaluate`` of ``model`` on stored features (loss and accuracy)."""
    return evaluate(*_scored(model, feats), device=device)


def predict_hidden(model: nn.Module, feats: TokenFeatures | Features, device: str | torch.device = "auto") -> Predictions:
    """``ft.predict`` of ``model`` on stored features."""
    return predict(*_scored(model, feats), device=device)
