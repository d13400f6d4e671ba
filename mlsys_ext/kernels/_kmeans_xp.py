"""k-means passes written once over an array module: numpy runs exactly the code CuPy runs.

Chunks of points are scored against all centroids with one matmul (the GEMM
form, ``‖x‖²`` dropped), and centroid sums are another matmul, by the one-hot
matrix of the chunk's labels: both are what a GPU does fastest.
"""
from __future__ import annotations

# Bounds the (rows, K) score matrix of one step.
CHUNK = 65_536


def lloyd_pass(xp, X, centroids, labels):
    """Assign every point of ``X`` to its nearest centroid (into ``labels``) and
    return (sums (K, D) float64, counts (K,), sum of best scores, labels changed)."""
    k = centroids.shape[0]
    half_norms = 0.5 * (centroids * centroids).sum(axis=1)
    sums = xp.zeros((k, X.shape[1]), dtype=xp.float64)
    counts = xp.zeros(k, dtype=xp.int64)
    score_sum = 0.0
    changed = 0
    for start in range(0, X.shape[0], CHUNK):
        chunk = X[start:start + CHUNK]
        scores = half_norms[None, :] - chunk @ centroids.T
        chunk_labels = scores.argmin(axis=1)
        changed += int((labels[start:start + CHUNK] != chunk_labels).sum())
        labels[start:start + CHUNK] = chunk_labels
        score_sum += float(scores[xp.arange(len(chunk)), chunk_labels].sum(dtype=xp.float64))
        one_hot = (chunk_labels[:, None] == xp.arange(k)[None, :]).astype(xp.float64)
        sums += one_hot.T @ chunk.astype(xp.float64)
        counts += one_hot.sum(axis=0).astype(xp.int64)
    return sums, counts, score_sum, changed


def assign(xp, X, centroids, labels) -> float:
    """Assign every point (into ``labels``); return the sum of best scores."""
    half_norms = 0.5 * (centroids * centroids).sum(axis=1)
    score_sum = 0.0
    for start in range(0, X.shape[0], CHUNK):
        scores = half_norms[None, :] - X[start:start + CHUNK] @ centroids.T
        chunk_labels = scores.argmin(axis=1)
        labels[start:start + CHUNK] = chunk_labels
        score_sum += float(scores[xp.arange(len(chunk_labels)), chunk_labels].sum(dtype=xp.float64))
    return score_sum


def squared_distances(xp, X, centroids, labels):
    """``‖X[i] - centroids[labels[i]]‖²`` for every point, in float64."""
    diff = X.astype(xp.float64) - centroids[labels].astype(xp.float64)
    return (diff * diff).sum(axis=1)
