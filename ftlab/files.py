"""Files: the cache folder, atomic writes, stable content hashes and the repository root.

Where ftlab keeps what it computes once (decoded data, converted weights, features):

The cache directory is, in order of preference:

1. ``$FTLAB_CACHE`` when set;
2. ``data/cache/`` of the source checkout when ftlab is installed editable from the
   repository (the normal classroom set-up; the folder is gitignored);
3. ``~/.cache/ftlab`` (``$XDG_CACHE_HOME/ftlab``) otherwise.

Every file is written atomically (temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written cache entry.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["package_path", "repo_root", "cache_dir", "atomic_write", "atomic_save", "atomic_write_text", "stable_hash",
           "file_sha256", "known_sha256"]


def package_path(package: str, *parts: str) -> Path | None:
    """A path inside an installed package's folder, found without importing the package; None when not installed."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def repo_root() -> Path | None:
    """The source checkout ftlab runs from (the folder with ``pyproject.toml`` and ``data/``), or None.

    None when ftlab is installed as a plain package, not editable from a clone.
    """
    repo = Path(__file__).resolve().parent.parent
    return repo if (repo / "pyproject.toml").is_file() and (repo / "data").is_dir() else None


def cache_dir(*parts: str) -> Path:
    """Return (and create) the ftlab cache directory, or a sub-folder of it.

    Args:
        *parts: sub-folder names, e.g. ``cache_dir("features")``.

    Returns:
        The directory as a ``Path``; it exists when this returns.
    """
    env = os.environ.get("FTLAB_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        repo = repo_root()
        if repo is not None:
            root = repo / "data" / "cache"
        else:
            xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            root = Path(xdg) / "ftlab"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


SHARED_ENV = "FTLAB_SHARED_CACHE"


def cache_file(*parts: str) -> Path:
    """The path of one cache entry, e.g. ``cache_file("features", "image-cut9-....pt")``.

    With ``FTLAB_SHARED_CACHE`` set (a class's cache, filled once by the teacher and shared read-only
    on a JupyterHub), an entry that is there is read from there; anything else is this user's own
    :func:`cache_dir`, where a new entry is written. ftlab never writes into the shared cache.
    """
    shared = os.environ.get(SHARED_ENV)
    if shared:
        candidate = Path(shared).expanduser().joinpath(*parts)
        if candidate.exists():
            return candidate
    return cache_dir(*parts[:-1]) / parts[-1]


def cached_names(*parts: str) -> set[str]:
    """The names of the entries in a cache folder, this user's and the shared cache's together."""
    folders = [cache_dir(*parts)] + ([Path(os.environ[SHARED_ENV]).expanduser().joinpath(*parts)]
                                     if os.environ.get(SHARED_ENV) else [])
    return {p.name for folder in folders if folder.is_dir() for p in folder.iterdir()}


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename onto ``path``.

    Args:
        path: final destination.
        write: a function that writes the complete file to the temporary path it gets.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` an object atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks (weights files are checked with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def known_sha256(path: str | os.PathLike) -> str:
    """:func:`file_sha256`, read once per file version (size and modification time) in a process."""
    st = Path(path).stat()
    return _sha256_of(Path(path), st.st_size, st.st_mtime)


@functools.lru_cache(maxsize=None)
def _sha256_of(path: Path, size: int, mtime: float) -> str:
    return file_sha256(path)


def stable_hash(*items: Any, length: int = 16) -> str:
    """A short hex digest of JSON-able items (and tensors, by content)."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, torch.Tensor):
            h.update(item.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()[:length]
