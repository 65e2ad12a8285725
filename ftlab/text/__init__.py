"""Text: labelled snippets, tokenized loaders with dynamic padding, MiniLM with a new head, LoRA.

The adapter in :mod:`ftlab.text.caching` lets ``ft.extract`` / ``ft.fit_cached`` cache token states.

Importing it registers the layer groups of ftlab's :class:`SentenceClassifier` and of Hugging
Face's ``BertForSequenceClassification`` in :mod:`ftlab.groups` and lets
:func:`ftlab.load_checkpoint` rebuild the text models. Use it as ``ft.text.<name>``;
``transformers`` and ``peft`` are imported only when a model, tokenizer or LoRA is made.
"""
from .caching import TextAdapter, TokenTop
from .data import TextSet, check_texts, dataset, rotten_tomatoes, rotten_tomatoes_file
from .explain import METRIC, Attribution, confident_mistakes, evaluate, predict_texts, similarities, token_attributions
from .loading import LengthGroupedBatches, TokenizedSet, loaders, texts_to_splits, tokenizer_of
from .models import MINILM_SHA256, TEXT_MODELS, SentenceClassifier, add_lora, mean_pool, model_dir, pretrained, tokenizer

__all__ = ["METRIC", "Attribution", "confident_mistakes", "evaluate", "predict_texts", "similarities", "token_attributions",
           "TextSet", "check_texts", "dataset", "rotten_tomatoes", "rotten_tomatoes_file",
           "TextAdapter", "TokenTop",
           "TokenizedSet", "LengthGroupedBatches", "loaders", "texts_to_splits", "tokenizer_of",
           "MINILM_SHA256", "TEXT_MODELS", "SentenceClassifier", "add_lora", "mean_pool", "model_dir", "pretrained",
           "tokenizer"]
