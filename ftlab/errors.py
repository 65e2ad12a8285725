"""Exceptions raised by ftlab for user mistakes and missing resources.

Every message says what was wrong and what to do about it.
"""
from __future__ import annotations

__all__ = ["FtlabError", "WeightsUnavailable", "DataError"]


class FtlabError(Exception):
    """Base class of every error ftlab raises on purpose."""


class WeightsUnavailable(FtlabError):
    """Pretrained weights are not on disk and may not (or cannot) be downloaded."""


class DataError(FtlabError, ValueError):
    """A data set, folder, split or subset request cannot be honoured."""
