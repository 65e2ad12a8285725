"""Text: labelled snippets, tokenized loaders with dynamic padding, MiniLM with a new head, LoRA, cut-point caching.

Importing it registers the layer groups of ftlab's :class:`SentenceClassifier` and of Hugging
Face's ``BertForSequenceClassification`` in :mod:`ftlab.groups` and lets
:func:`ftlab.load_checkpoint` rebuild the text models. Use it as ``ft.text.<name>``;
``transformers`` and ``peft`` are imported only when a model, tokenizer or LoRA is made.
"""
from .data import TEXT_DATASETS, TextSet, check_texts, rotten_tomatoes, rotten_tomatoes_file, text_dataset
from .explain import Attribution, confident_mistakes, predict_texts, similarities, token_attributions
from .features import TextTop, TokenFeatures, evaluate_hidden, extract_hidden, fit_hidden, predict_hidden
from .loading import LengthGroupedBatches, TokenizedSet, loaders, texts_to_splits
from .models import MINILM_SHA256, TEXT_MODELS, SentenceClassifier, add_lora, mean_pool, model_dir, pretrained, tokenizer

__all__ = ["Attribution", "confident_mistakes", "predict_texts", "similarities", "token_attributions",
           "TEXT_DATASETS", "TextSet", "check_texts", "rotten_tomatoes", "rotten_tomatoes_file", "text_dataset",
           "TextTop", "TokenFeatures", "evaluate_hidden", "extract_hidden", "fit_hidden", "predict_hidden",
           "TokenizedSet", "LengthGroupedBatches", "loaders", "texts_to_splits",
           "MINILM_SHA256", "TEXT_MODELS", "SentenceClassifier", "add_lora", "mean_pool", "model_dir", "pretrained",
           "tokenizer"]
