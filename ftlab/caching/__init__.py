"""The caching engine: extract once at a cut (the first group that trains), train the rest on the cache.

:mod:`ftlab.caching.engine` holds the one cached type (:class:`Features`) and its verbs
(:func:`extract`, :func:`features_at`, :func:`fit_cached`; ``ft.evaluate`` and ``ft.predict``
take cached features too); :mod:`ftlab.caching.adapter` the per-modality adapters' base
(:class:`CacheAdapter`), the generic one and their registry; :func:`linear_probe` reads frozen
features with logistic regression.
"""
from .adapter import CacheAdapter, GroupsInARow, Top, adapter_for, register_cache_adapter
from .engine import Features, ViewAverage, cached_loader, extract, features_at, fit_cached, resolve_cut
from .probe import linear_probe

__all__ = ["CacheAdapter", "GroupsInARow", "Top", "adapter_for", "register_cache_adapter",
           "Features", "ViewAverage", "cached_loader", "extract", "features_at", "fit_cached", "resolve_cut",
           "linear_probe"]
