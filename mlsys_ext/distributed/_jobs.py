"""Example MapReduce jobs, each with the plain sequential version it must equal."""
from __future__ import annotations

import functools
import re
import time
from collections import Counter

import numpy as np

from ._mapreduce import mapreduce

_WORD = re.compile(r"[A-Za-z]+")


def words(text: str) -> list[str]:
    """The words of ``text``: runs of letters, lower-cased (as the MIT 6.5840 lab splits)."""
    return [word.lower() for word in _WORD.findall(text)]


def word_count_map(name: str, text: str):
    return ((word, 1) for word in words(text))


def paced_word_count_map(seconds: float, name: str, text: str):
    """``word_count_map`` taking at least ``seconds`` a task: time to break a worker mid-job
    (bind the pace with ``functools.partial``)."""
    time.sleep(seconds)
    return word_count_map(name, text)


def word_count_reduce(word: str, counts: list) -> int:
    return sum(counts)


def word_count(texts: dict[str, str]) -> dict[str, int]:
    """The sequential word count of ``texts`` (name -> text)."""
    return dict(Counter(word for text in texts.values() for word in words(text)))


def inverted_index_map(name: str, text: str):
    return ((word, name) for word in set(words(text)))


def inverted_index_reduce(word: str, names: list) -> list[str]:
    return sorted(set(names))


def inverted_index(texts: dict[str, str]) -> dict[str, list[str]]:
    """The sequential inverted index of ``texts``: word -> sorted names of the texts holding it."""
    index: dict[str, set] = {}
    for name, text in texts.items():
        for word in set(words(text)):
            index.setdefault(word, set()).add(name)
    return {word: sorted(names) for word, names in index.items()}


# -- k-means: one job per Lloyd iteration ----------------------------------------------

def kmeans_map(centroids: np.ndarray, name: str, points: np.ndarray):
    """E-step on one shard: each point to its nearest centroid; emits, per cluster that got
    points, (cluster, (sum of its points, their count)) — the combiner's work done at once."""
    distances = (points * points).sum(axis=1)[:, None] - 2.0 * points @ centroids.T + (centroids * centroids).sum(axis=1)
    labels = np.argmin(distances, axis=1)
    sums = np.zeros_like(centroids)
    np.add.at(sums, labels, points)
    counts = np.bincount(labels, minlength=len(centroids))
    return [(int(j), (sums[j], int(counts[j]))) for j in np.flatnonzero(counts)]


def kmeans_reduce(cluster: int, partials: list):
    """M-step for one cluster: the partial sums and counts of every shard, added."""
    return sum(s for s, _ in partials), sum(c for _, c in partials)


def kmeans_mapreduce(cluster, X, init, iterations: int, shards: int = 4, n_reduce: int = 2,
                     progress: bool = False) -> tuple[np.ndarray, list]:
    """Lloyd's k-means as ``iterations`` MapReduce jobs over ``shards`` row blocks of ``X``
    from the centroids ``init``; returns the centroids and each job's ``MapReduceResult``.
    A cluster that loses every point keeps its centroid (``kmeans`` would move it)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    centroids = np.array(init, dtype=np.float64)
    if X.ndim != 2 or centroids.ndim != 2 or centroids.shape[1] != X.shape[1]:
        raise ValueError(f"X (N, D) and init (k, D) must agree in D, got {X.shape} and {centroids.shape}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    blocks = np.array_split(X, max(1, min(shards, len(X))))
    results = []
    for _ in range(iterations):
        res = mapreduce(cluster, blocks, functools.partial(kmeans_map, centroids), kmeans_reduce, n_reduce=n_reduce,
                        progress=progress)
        centroids = centroids.copy()
        for j, (total, count) in res.output.items():
            centroids[j] = total / count
        results.append(res)
    return centroids, results


# -- PageRank: one job per power iteration ----------------------------------------------

def pagerank_map(ranks: np.ndarray, out_degree: np.ndarray, name: str, edges: np.ndarray):
    """Each edge (src, dst) of the shard sends src's rank over its out-degree to dst,
    summed per dst on the map side."""
    src, dst = edges[:, 0], edges[:, 1]
    shares = np.bincount(dst, weights=ranks[src] / out_degree[src], minlength=len(ranks))
    return [(int(node), float(shares[node])) for node in np.flatnonzero(shares)]


def pagerank_reduce(node: int, shares: list) -> float:
    return sum(shares)


def pagerank_mapreduce(cluster, edges, n_nodes: int, iterations: int, damping: float = 0.85, shards: int = 4,
                       n_reduce: int = 2, progress: bool = False) -> np.ndarray:
    """PageRank of the graph ``edges`` ((E, 2) ints, src -> dst) by ``iterations`` MapReduce
    jobs; a dangling node's rank is spread over every node, as ``pagerank`` does."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    out_degree = np.bincount(edges[:, 0], minlength=n_nodes).astype(np.float64)
    ranks = np.full(n_nodes, 1.0 / n_nodes)
    blocks = np.array_split(edges, max(1, min(shards, len(edges))))
    for _ in range(iterations):
        res = mapreduce(cluster, blocks, functools.partial(pagerank_map, ranks, np.maximum(out_degree, 1)),
                        pagerank_reduce, n_reduce=n_reduce, progress=progress)
        spread = ranks[out_degree == 0].sum() / n_nodes
        incoming = np.zeros(n_nodes)
        for node, share in res.output.items():
            incoming[node] = share
        ranks = (1 - damping) / n_nodes + damping * (incoming + spread)
    return ranks


def pagerank(edges, n_nodes: int, iterations: int, damping: float = 0.85) -> np.ndarray:
    """The sequential power iteration ``pagerank_mapreduce`` must equal."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    out_degree = np.bincount(edges[:, 0], minlength=n_nodes).astype(np.float64)
    ranks = np.full(n_nodes, 1.0 / n_nodes)
    for _ in range(iterations):
        incoming = np.bincount(edges[:, 1], weights=ranks[edges[:, 0]] / np.maximum(out_degree, 1)[edges[:, 0]],
                               minlength=n_nodes)
        ranks = (1 - damping) / n_nodes + damping * (incoming + ranks[out_degree == 0].sum() / n_nodes)
    return ranks
