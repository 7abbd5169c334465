"""Embedding cache on disk: vectors keyed by model id and sample content hash (sha256).

Layout: ``<data_home>/embeddings/<model id>/part-<n>.npy`` holds the vectors of one batch set
and ``part-<n>.sha256`` (text, one hash a line) the hashes of its rows, in the same order.
No pickle anywhere: arrays are read with ``allow_pickle=False``. A rerun with other detector
settings finds every vector here and skips the encoder. ``forget_hashes`` takes the vectors of
some images out (a deleted dataset's), rewriting a part without them before removing it, so a
reader sees each vector once or twice but never a half-written part.
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
        if hashes:
            _write_part(self.folder, hashes, vectors)

    def _load_all(self) -> dict[str, np.ndarray]:
        vectors: dict[str, np.ndarray] = {}
        if not self.folder.is_dir():
            return vectors
        for hash_file in sorted(self.folder.glob("part-*.sha256")):
            array_file = hash_file.with_suffix(".npy")
            if not array_file.is_file():
                continue
            try:
                hashes = hash_file.read_text(encoding="ascii").split()
                array = np.load(array_file, allow_pickle=False)
            except FileNotFoundError:
                continue  # removed by forget_hashes after the glob; its rows live on elsewhere
            if len(hashes) == len(array):
                vectors.update(zip(hashes, array))
        return vectors


def forget_hashes(data_home: Path, hashes: set[str]) -> int:
    """Remove the cached vectors of these content hashes from every model's cache; return how
    many part files were rewritten or removed."""
    parts = sorted((Path(data_home) / "embeddings").glob("*/part-*.sha256"))
    return sum(_forget_in_part(hash_file, hashes) for hash_file in parts)


def _forget_in_part(hash_file: Path, hashes: set[str]) -> bool:
    array_file = hash_file.with_suffix(".npy")
    try:
        known = hash_file.read_text(encoding="ascii").split()
        if hashes.isdisjoint(known):
            return False
        kept = [row for row, digest in enumerate(known) if digest not in hashes]
        vectors = np.load(array_file, allow_pickle=False) if kept else None
    except FileNotFoundError:
        return False  # another deletion took this part out
    if vectors is not None and len(vectors) == len(known):
        _write_part(hash_file.parent, [known[row] for row in kept], vectors[kept])
    hash_file.unlink(missing_ok=True)
    array_file.unlink(missing_ok=True)
    return True


def encode_with_cache(cache: EmbeddingCache, hashes: list[str],
                      compute: Callable[[list[int]], tuple[np.ndarray, dict[int, str]]]
                      ) -> tuple[np.ndarray, dict[int, str]]:
    """Vectors for every row: cached ones read back, the others computed and stored.

    ``compute(rows)`` returns the vectors of those rows (in that order) and a map row -> reason
    for rows that failed (whatever their vectors hold); failed rows are zeros in the result and
    are never cached.
    """
    found, missing = cache.lookup(hashes)
    computed, failed = compute(missing) if missing else (None, {})
    kept = [i for i, row in enumerate(missing) if row not in failed]
    if computed is not None:
        cache.store([hashes[missing[i]] for i in kept], computed[kept])
    vectors = _assemble(hashes, found, computed, missing)
    vectors[list(failed)] = 0
    return vectors, failed


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


def _write_part(folder: Path, hashes: list[str], vectors: np.ndarray) -> None:
    """A new part: the vectors first, then their hashes (what a reader looks for)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"part-{uuid.uuid4().hex}"
    _write_atomic_npy(stem.with_suffix(".npy"), np.asarray(vectors))
    _write_atomic_text(stem.with_suffix(".sha256"), "\n".join(hashes) + "\n")


def _write_atomic_npy(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(temporary, path)


def _write_atomic_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)
