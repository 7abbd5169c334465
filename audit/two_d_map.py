"""The 2-D map Insights draws: a layout that keeps each sample near its embedding neighbours, so
classes (and the samples sitting in another class's cluster) show as groups.

t-SNE (scikit-learn, Barnes-Hut) lays out up to ``LANDMARKS`` samples, after PCA to at most
``PCA_DIMS`` dimensions; every other sample is placed at the mean position of its
``PLACE_NEIGHBOURS`` nearest landmarks in that same PCA space (the space t-SNE saw; FAISS's
exact L2 search, a chunk at a time), so the cost beyond the landmarks is a projection and one
50-d search per chunk and no copy of the embeddings. Searching the full 512-d embeddings
instead cost 10x the arithmetic: at 1M samples, 5 TFLOP, as much as the kNN graph. UMAP was
not chosen: it needs numba and llvmlite, a large install and a JIT warm-up, for a picture the
landmarks already give.
"""

from __future__ import annotations

import numpy as np

LANDMARKS = 5_000
PCA_DIMS = 50
PLACE_NEIGHBOURS = 5
TSNE_ITERATIONS = 500
FEWEST = 5             # below this, every sample sits at the origin
CHUNK = 65_536         # rows placed per search: one large FAISS call is 2x faster than 16 small


def two_d_map(embeddings: np.ndarray, seed: int = 0, landmarks: int = LANDMARKS) -> np.ndarray:
    """(n, 2) positions for (n, d) L2-normalised embeddings."""
    n = len(embeddings)
    if n < FEWEST or embeddings.shape[1] < 2:
        return np.zeros((n, 2))
    chosen = np.sort(np.random.default_rng(seed).choice(n, min(n, landmarks), replace=False))
    pca = _pca(embeddings[chosen], seed)
    reduced = pca.transform(embeddings[chosen].astype(np.float64))
    positions = _tsne(reduced, seed)
    layout = _placed(embeddings, pca, reduced, positions)
    layout[chosen] = positions
    return layout


def _pca(points: np.ndarray, seed: int):
    from sklearn.decomposition import PCA

    dims = min(PCA_DIMS, points.shape[1], len(points) - 1)
    return PCA(dims, random_state=seed).fit(points.astype(np.float64))


def _tsne(reduced: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(reduced) - 1) / 3.0)
    return TSNE(2, init="pca", perplexity=perplexity, max_iter=TSNE_ITERATIONS,
                random_state=seed).fit_transform(reduced)


def _placed(points: np.ndarray, pca, landmarks: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each point at the mean position of its nearest landmarks in the PCA space, a chunk at a
    time."""
    import faiss

    index = faiss.IndexFlatL2(landmarks.shape[1])
    index.add(np.ascontiguousarray(landmarks, dtype=np.float32))
    placed = np.zeros((len(points), 2))
    k = min(PLACE_NEIGHBOURS, len(landmarks))
    mean = pca.mean_.astype(np.float32)
    axes = np.ascontiguousarray(pca.components_.T, dtype=np.float32)
    for start in range(0, len(points), CHUNK):
        chunk = (np.asarray(points[start:start + CHUNK], dtype=np.float32) - mean) @ axes
        nearest = index.search(np.ascontiguousarray(chunk), k)[1]
        placed[start:start + CHUNK] = positions[nearest].mean(axis=1)
    return placed
