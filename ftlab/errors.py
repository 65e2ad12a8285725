"""Exceptions raised by ftlab on purpose; every message says what was wrong and what to do.

* :class:`FtlabError` is the base of them all (``except ftlab.FtlabError`` catches every one).
* :class:`UsageError` is a user mistake (a bad argument, an unknown name, an impossible
  request). It is also a ``ValueError``, so ``except ValueError`` catches it as it would
  any library's bad-argument error. :class:`DataError` is the data-set kind of it.
* :class:`WeightsUnavailable`: pretrained weights are not on disk and may not be downloaded
  (also a ``FileNotFoundError``).
"""
from __future__ import annotations

__all__ = ["FtlabError", "UsageError", "DataError", "WeightsUnavailable"]


class FtlabError(Exception):
    """Base class of every error ftlab raises on purpose."""


class UsageError(FtlabError, ValueError):
    """A user mistake: a bad argument, an unknown name, a request that cannot be honoured."""


class DataError(UsageError):
    """A data set, folder, split or subset request cannot be honoured."""


class WeightsUnavailable(FtlabError, FileNotFoundError):
    """Pretrained weights are not on disk and may not (or cannot) be downloaded."""
