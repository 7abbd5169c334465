"""Embedding cache on disk: vectors keyed by model id and sample content hash (sha256).

Layout: ``<data_home>/embeddings/<model id>/part-<n>.npy`` holds the vectors of one batch set
and ``part-<n>.sha256`` (text, one hash a line) the hashes of its rows, in the same order.
No pickle anywhere: arrays are read with ``allow_pickle=False``. A rerun with other detector
settings finds every vector here and skips the encoder.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_model_dir_name(model_id: str) -> str:
    """A model id as one safe folder name (no separators, no leading dots)."""
    return _UNSAFE.sub("_", model_id).strip("._") or "model"


class EmbeddingCache:
    """Read and append the cached vectors of one model."""

    def __init__(self, data_home: Path, model_id: str):
        self.folder = Path(data_home) / "embeddings" / safe_model_dir_name(model_id)

    def lookup(self, hashes: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
        """The cached vector of each known hash, and the row numbers still to compute."""
        known = self._load_all()
        found = {h: known[h] for h in hashes if h in known}
        missing = [row for row, h in enumerate(hashes) if h not in found]
        return found, missing

    def store(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Append one batch set; written to temporary names first, then renamed."""
        if not hashes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = self.folder / f"part-{uuid.uuid4().hex}"
        _write_atomic_npy(stem.with_suffix(".npy"), np.asarray(vectors))
        _write_atomic_text(stem.with_suffix(".sha256"), "\n".join(hashes) + "\n")

    def _load_all(self) -> dict[str, np.ndarray]:
        vectors: dict[str, np.ndarray] = {}
        if not self.folder.is_dir():
            return vectors
        for hash_file in sorted(self.folder.glob("part-*.sha256")):
            array_file = hash_file.with_suffix(".npy")
            if not array_file.is_file():
                continue
            hashes = hash_file.read_text(encoding="ascii").split()
            array = np.load(array_file, allow_pickle=False)
            if len(hashes) == len(array):
                vectors.update(zip(hashes, array))
        return vectors


def encode_with_cache(cache: EmbeddingCache, hashes: list[str],
                      compute: Callable[[list[int]], tuple[np.ndarray, dict[int, str]]]
                      ) -> tuple[np.ndarray, dict[int, str]]:
    """Vectors for every row: cached ones read back, the others computed and stored.

    ``compute(rows)`` returns the vectors of those rows (in that order) and a map row -> reason
    for rows that failed; failed rows are zeros in the result and are never cached.
    """
    found, missing = cache.lookup(hashes)
    computed, failed = compute(missing) if missing else (None, {})
    kept = [i for i, row in enumerate(missing) if row not in failed]
    if computed is not None:
        cache.store([hashes[missing[i]] for i in kept], computed[kept])
    return _assemble(hashes, found, computed, missing), failed


def _assemble(hashes: list[str], found: dict[str, np.ndarray], computed: np.ndarray | None,
              missing: list[int]) -> np.ndarray:
    template = computed if computed is not None else np.stack([next(iter(found.values()))])
    out = np.zeros((len(hashes), template.shape[1]), dtype=template.dtype)
    if computed is not None:
        out[missing] = computed
    for row, digest in enumerate(hashes):
        if digest in found:
            out[row] = found[digest]
    return out


def _write_atomic_npy(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(temporary, path)


def _write_atomic_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)
