"""A retriever saved to a directory, in DSPy's layout (so either library reads what the other wrote):

* ``config.json``: ``k``, ``normalize``, ``corpus``, ``has_faiss_index`` (DSPy's keys), plus dspex's
  ``brute_force_threshold`` and ``dspex_format``;
* ``corpus_embeddings.npy``: the corpus vectors, a plain numeric array (written and read with
  ``allow_pickle=False``: loading never runs code);
* ``faiss_index.bin``: the FAISS index, in FAISS's own binary format, when the retriever has one.

Reading checks everything a damaged or hand-edited directory could get wrong and says which file and what
(:class:`SavedIndexError`; a missing file is :class:`SavedIndexMissing`, also a ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SavedIndexError, SavedIndexMissing
from . import vectors

CONFIG, EMBEDDINGS, FAISS_INDEX = "config.json", "corpus_embeddings.npy", "faiss_index.bin"
FORMAT = 1  # dspex_format written here; a directory without it was written by DSPy (same layout)
DEFAULT_THRESHOLD = 20_000


@dataclass(frozen=True)
class Saved:
    """What a saved directory holds, checked."""

    k: int
    normalize: bool
    brute_force_threshold: int
    corpus: list[str]
    corpus_embeddings: np.ndarray
    index: Any  # a FAISS index, or None


def write(path: str | os.PathLike, *, k: int, normalize: bool, brute_force_threshold: int, corpus: list[str],
          corpus_embeddings: np.ndarray, index: Any) -> None:
    """Save into the directory ``path`` (created if needed). Each file is written beside its final name
    and then renamed, so an interrupted save leaves the previous files whole."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"dspex_format": FORMAT, "k": k, "normalize": normalize, "brute_force_threshold": brute_force_threshold,
              "has_faiss_index": index is not None, "corpus": corpus}
    _replace(folder / CONFIG, json.dumps(config, ensure_ascii=False, indent=1).encode())
    with open(folder / (EMBEDDINGS + ".tmp"), "wb") as fh:
        np.save(fh, np.ascontiguousarray(corpus_embeddings), allow_pickle=False)
    os.replace(folder / (EMBEDDINGS + ".tmp"), folder / EMBEDDINGS)
    if index is not None:
        tmp = folder / (FAISS_INDEX + ".tmp")
        vectors.faiss_module().write_index(index, str(tmp))
        os.replace(tmp, folder / FAISS_INDEX)
    else:
        (folder / FAISS_INDEX).unlink(missing_ok=True)  # a stale index of an earlier save would mislead


def _replace(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def read(path: str | os.PathLike) -> Saved:
    """The checked contents of a saved directory (module docstring)."""
    folder = Path(path)
    if not folder.is_dir():
        raise SavedIndexMissing(f"no saved retriever at {folder}: the directory does not exist", str(folder))
    config = _config(folder / CONFIG)
    corpus = config["corpus"]
    matrix = _embeddings(folder / EMBEDDINGS, len(corpus))
    index = _index(folder / FAISS_INDEX, matrix) if config["has_faiss_index"] else None
    return Saved(config["k"], config["normalize"], config["brute_force_threshold"], corpus, matrix, index)


def _config(file: Path) -> dict:
    if not file.is_file():
        raise SavedIndexMissing(f"{file} is missing: the directory is not a saved retriever", str(file))
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SavedIndexError(f"{file} is not readable JSON ({type(exc).__name__}: {str(exc)[:200]})",
                              str(file)) from None
    if not isinstance(config, dict):
        raise SavedIndexError(f"{file} must hold a JSON object, not {type(config).__name__}", str(file))
    missing = [key for key in ("k", "normalize", "corpus", "has_faiss_index") if key not in config]
    if missing:
        raise SavedIndexError(f"{file} lacks {', '.join(missing)}", str(file))
    config.setdefault("brute_force_threshold", DEFAULT_THRESHOLD)  # DSPy does not save it
    if not isinstance(config.get("dspex_format", FORMAT), int) or config.get("dspex_format", FORMAT) > FORMAT:
        raise SavedIndexError(f"{file} has dspex_format {config['dspex_format']!r}; this dspex reads formats up to "
                              f"{FORMAT}: upgrade dspex to load it", str(file))
    checks = {"k": _is_int(config["k"], 1), "normalize": isinstance(config["normalize"], bool),
              "has_faiss_index": isinstance(config["has_faiss_index"], bool),
              "brute_force_threshold": _is_int(config["brute_force_threshold"], 0),
              "corpus": isinstance(config["corpus"], list) and bool(config["corpus"])
              and all(isinstance(t, str) for t in config["corpus"])}
    wrong = {"k": "an int >= 1", "normalize": "true or false", "has_faiss_index": "true or false",
             "brute_force_threshold": "an int >= 0", "corpus": "a non-empty list of strings"}
    for key, ok in checks.items():
        if not ok:
            raise SavedIndexError(f"{file}: {key} must be {wrong[key]}, got {str(config[key])[:80]!r}", str(file))
    return config


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _embeddings(file: Path, rows: int) -> np.ndarray:
    if not file.is_file():
        raise SavedIndexMissing(f"{file} is missing: the corpus vectors were not saved with the config", str(file))
    try:
        matrix = np.load(file, allow_pickle=False)  # an object array (a pickle inside) is refused here
    except (OSError, ValueError, EOFError) as exc:
        raise SavedIndexError(f"{file} is not a numeric .npy array ({type(exc).__name__}: {str(exc)[:200]})",
                              str(file)) from None
    if not isinstance(matrix, np.ndarray) or matrix.dtype.kind not in "fiu":
        raise SavedIndexError(f"{file} must hold a numeric array, not {getattr(matrix, 'dtype', type(matrix))}",
                              str(file))
    if matrix.ndim != 2 or matrix.shape[0] != rows or matrix.shape[1] == 0:
        raise SavedIndexError(f"{file} has shape {matrix.shape}, but config.json lists {rows} passages: expected "
                              f"({rows}, dim)", str(file))
    matrix = matrix.astype(np.float32, copy=False)
    if not np.isfinite(matrix).all():
        raise SavedIndexError(f"{file} holds NaN or infinite values", str(file))
    return matrix


def _index(file: Path, matrix: np.ndarray) -> Any:
    faiss = vectors.faiss_module()  # a saved index needs faiss to be read: FaissNotInstalled says so
    if not file.is_file():
        raise SavedIndexMissing(f"{file} is missing, but config.json says the retriever has a FAISS index",
                                str(file))
    try:
        index = faiss.read_index(str(file))
    except (OSError, RuntimeError) as exc:  # faiss reports a malformed file as RuntimeError
        raise SavedIndexError(f"{file} is not a FAISS index ({type(exc).__name__}: {str(exc)[:200]})",
                              str(file)) from None
    if not isinstance(index, faiss.Index) or index.ntotal != matrix.shape[0] or index.d != matrix.shape[1]:
        raise SavedIndexError(f"{file} does not index the saved vectors ({getattr(index, 'ntotal', '?')} x "
                              f"{getattr(index, 'd', '?')}-dim, the vectors are {matrix.shape[0]} x "
                              f"{matrix.shape[1]}-dim)", str(file))
    return index


__all__ = ["Saved", "read", "write", "CONFIG", "EMBEDDINGS", "FAISS_INDEX", "FORMAT"]
