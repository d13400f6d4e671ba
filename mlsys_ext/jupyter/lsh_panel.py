"""The ``%lsh`` panel: MinHash LSH on generated near-duplicate documents, the measured
candidate probability per similarity bucket beside the S-curve 1 - (1 - s^r)^b."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ipywidgets as widgets
import numpy as np

from ..sketches import MinHash, MinHashLSH
from ._lab_panel import LabPanel, best_seconds, check_ranges, dropdown, noise_note, slider
from ._plots import panel_axes, png_of

# what the sliders show, and what %lsh accepts (optimal_params takes seconds at a few thousand permutations)
RANGES = {"num_perm": (16, 512), "threshold": (0.1, 0.95), "fp_weight": (0.0, 1.0)}
BUCKETS = np.round(np.arange(0.05, 1.0, 0.05), 2)  # Jaccard similarity of the generated pairs
PAIRS_PER_BUCKET = 40
DOC_TOKENS = 200


def near_duplicate_pairs(similarities, pairs: int, tokens: int, seed: int = 0):
    """For each similarity J, ``pairs`` pairs of ``tokens``-token sets with Jaccard exactly
    J (as near as whole tokens allow): two sets sharing o tokens have J = o / (2 t - o).
    Returns (left sets, right sets, true similarity of each pair); tokens of different
    pairs never overlap."""
    rng = np.random.default_rng(seed)
    left, right, truth = [], [], []
    next_token = 0
    for j in similarities:
        shared = int(round(2 * tokens * j / (1 + j)))
        for _ in range(pairs):
            pool = np.arange(next_token, next_token + 2 * tokens - shared, dtype=np.uint64)
            next_token += len(pool)
            pool = rng.permutation(pool)
            common, own = pool[:shared], pool[shared:]
            left.append(np.concatenate([common, own[:tokens - shared]]))
            right.append(np.concatenate([common, own[tokens - shared:]]))
            truth.append(shared / (2 * tokens - shared))
    return left, right, np.array(truth)


@lru_cache(maxsize=4)
def _documents(seed: int):
    """The panel's pairs, made once per seed (~10 ms a slider move otherwise); read-only."""
    return near_duplicate_pairs(BUCKETS, PAIRS_PER_BUCKET, DOC_TOKENS, seed)


@dataclass
class LSHMeasurement:
    index: MinHashLSH
    similarity: np.ndarray  # true Jaccard per bucket
    found: np.ndarray  # fraction of the bucket's pairs that became candidates
    recall: float  # pairs at or above the threshold found
    precision: float  # found pairs that are at or above the threshold
    build_rate: float  # signatures/s
    query_rate: float  # queries/s


def measure_lsh(num_perm: int, threshold: float, fp_weight: float, seed: int = 0) -> LSHMeasurement:
    left, right, truth = _documents(seed)
    minhash = MinHash(num_perm, seed=seed)
    built, answered = [], []  # every run's result; the runs agree
    build_seconds = best_seconds(lambda: built.append(minhash.signatures(left + right)), repeats=3, budget=0.02)
    signatures = built[0]
    index = MinHashLSH(threshold, num_perm, weights=(fp_weight, 1.0 - fp_weight), seed=seed)
    index.insert_many(list(range(len(left))), signatures[:len(left)])
    query_seconds = best_seconds(lambda: answered.append(index.query_many(signatures[len(left):])), repeats=3,
                                 budget=0.01)
    candidates = answered[0]
    hit = np.array([i in found for i, found in enumerate(candidates)])
    per_bucket = hit.reshape(len(BUCKETS), PAIRS_PER_BUCKET)
    similar = truth >= threshold
    return LSHMeasurement(
        index, truth.reshape(len(BUCKETS), PAIRS_PER_BUCKET)[:, 0], per_bucket.mean(axis=1),
        float(hit[similar].mean()) if similar.any() else float("nan"),
        float(similar[hit].mean()) if hit.any() else float("nan"),
        len(signatures) / build_seconds, len(right) / query_seconds,
    )


def draw_lsh(m: LSHMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    bands, rows = m.index.params
    fig, (ax,) = panel_axes(figure, 1, 6.0, 2.6, left=0.12, right=0.98, bottom=0.2, top=0.95)
    s = np.linspace(0, 1, 201)
    ax.plot(s, m.index.probability(s), color="#2ca02c", label=f"P(s) = 1 - (1 - s^{rows})^{bands}")
    spread = 1.96 * np.sqrt(np.maximum(m.found * (1 - m.found), 0.25 / PAIRS_PER_BUCKET) / PAIRS_PER_BUCKET)
    ax.errorbar(m.similarity, m.found, yerr=spread, fmt="o", ms=4, color="#1f77b4",
                label=f"measured ({PAIRS_PER_BUCKET} pairs per bucket)")
    ax.axvline(m.index.threshold, color="gray", ls=":", label=f"threshold {m.index.threshold:g}")
    ax.set_xlabel("Jaccard similarity s")
    ax.set_ylabel("P(candidate)")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fp_area, fn_area = m.index.error_areas()
    summary = (
        f"<table><tr><td>b = {bands} bands x r = {rows} rows ({bands * rows} of {m.index.num_perm} slots)</td>"
        f"<td>&nbsp; false-positive area {fp_area:.4f}, false-negative area {fn_area:.4f}</td></tr>"
        f"<tr><td>recall {m.recall:.3f} (pairs with s >= threshold found)</td>"
        f"<td>&nbsp; precision {m.precision:.3f} (found pairs with s >= threshold)</td></tr>"
        f"<tr><td>MinHash {m.build_rate:,.0f} signatures/s ({DOC_TOKENS} tokens)</td>"
        f"<td>&nbsp; {m.query_rate:,.0f} queries/s</td></tr></table>"
    )
    return png_of(fig), summary, fig


class LSHPanel(LabPanel):
    """Sliders for num_perm, the threshold and the weight of false positives against false
    negatives; b and r are chosen by the index, and the measurement checks the S-curve."""

    def __init__(self, num_perm: int = 128, threshold: float = 0.8, fp_weight: float = 0.5):
        check_ranges(RANGES, num_perm=num_perm, threshold=threshold, fp_weight=fp_weight)
        controls = {
            "num_perm": slider(widgets.IntSlider, "num_perm", RANGES["num_perm"], value=num_perm, step=16),
            "threshold": slider(widgets.FloatSlider, "threshold", RANGES["threshold"], value=threshold, step=0.05),
            "fp_weight": slider(widgets.FloatSlider, "FP weight", RANGES["fp_weight"], value=fp_weight, step=0.05),
        }
        super().__init__("MinHash LSH: measured candidate probability against the S-curve", controls)

    def measure(self, num_perm, threshold, fp_weight):
        self.warm_up("minhash", lambda: measure_lsh(16, threshold, fp_weight))
        return measure_lsh(num_perm, threshold, fp_weight)

    def draw(self, result):
        png, summary, self.figure = draw_lsh(result, self.figure)
        return png, summary


# -- SimHash ------------------------------------------------------------------------------

PROBES = (0, 1, 2, 4, 8)
K = 10
SIMHASH_RANGES = {"bits": (8, 64)}  # what the slider shows, and what %lsh --simhash accepts
BANDS = (1, 2, 4, 8)  # the bands dropdown


@dataclass
class SimHashData:
    base: np.ndarray
    queries: np.ndarray
    truth: np.ndarray  # ids of each query's exact K nearest by cosine
    truth_cosines: np.ndarray


def clustered_vectors(n: int = 10_000, queries: int = 100, dim: int = 32, clusters: int = 50,
                      spread: float = 0.35, seed: int = 0) -> SimHashData:
    """Gaussian clusters on random centres; the exact cosine K-NN of each query as ground truth."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(0, clusters, n + queries)] + spread * rng.normal(size=(n + queries, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    base, asked = points[:n].astype(np.float32), points[n:].astype(np.float32)
    cosines = asked @ base.T
    truth = np.argsort(-cosines, axis=1)[:, :K]
    return SimHashData(base, asked, truth, np.take_along_axis(cosines, truth, axis=1))


@dataclass
class SimHashMeasurement:
    index: object
    probes: tuple
    recall: np.ndarray  # recall@K per probe count
    qps: np.ndarray  # queries/s per probe count
    candidate_bound: float  # theory: mean P(a true neighbour shares a bucket) without probes


def measure_simhash(data: SimHashData, bits: int, bands: int) -> SimHashMeasurement:
    """Recall@K and queries/s at each probe count, each rate the best of a few runs after one
    warm-up query (the first query pays for faulting in the index's buckets)."""
    from ..sketches import SimHashLSH

    index = SimHashLSH(data.base.shape[1], bits=bits, bands=bands)
    index.add(data.base)
    index.query(data.queries[:1], k=K, probes=PROBES[-1])
    recall, qps = [], []
    for probes in PROBES:
        answers = []  # every run's (ids, distances); the runs agree
        seconds = best_seconds(lambda: answers.append(index.query(data.queries, k=K, probes=probes)), repeats=3,
                               budget=0.01)
        qps.append(len(data.queries) / seconds)
        recall.append(np.mean([len(set(found) & set(want)) / K for found, want in zip(answers[0][0], data.truth)]))
    bound = float(np.mean(index.probability(np.clip(data.truth_cosines, -1.0, 1.0))))
    return SimHashMeasurement(index, PROBES, np.array(recall), np.array(qps), bound)


def simhash_contradictions(m: SimHashMeasurement) -> list[str]:
    """Rates the theory rules out: each extra probe adds buckets to scan, so queries/s cannot
    rise with the probe count (by more than 10%: the runs are a few ms each)."""
    return [f"{m.qps[i + 1]:,.0f} queries/s at {m.probes[i + 1]} probes, above {m.qps[i]:,.0f} at {m.probes[i]}"
            for i in np.flatnonzero(m.qps[1:] > 1.1 * m.qps[:-1])]


def draw_simhash(m: SimHashMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    # margins: the twin axis' ticks and label on the right, the legend on top, clear of both curves
    fig, (ax, *twins) = panel_axes(figure, 1, 6.0, 2.6, left=0.12, right=0.87, bottom=0.2, top=0.86)
    if not twins:  # a new figure: the queries/s axis, kept with it
        twins.append(ax.twinx())
        twins[0].tick_params(labelsize=7)
    twin = twins[0]
    ax.plot(m.probes, m.recall, "o-", color="#1f77b4", label=f"recall@{K}, measured")
    ax.axhline(m.candidate_bound, color="#2ca02c", ls="--", label="theory without probes")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(m.probes)
    ax.set_xlabel("extra buckets probed per band")
    ax.set_ylabel(f"recall@{K}")
    rate_line, = twin.plot(m.probes, m.qps, "s:", color="#ff7f0e", label="queries/s, measured")
    rising = np.flatnonzero(m.qps[1:] > 1.1 * m.qps[:-1]) + 1  # noise: hollow, so no one reads it as a result
    twin.plot(np.asarray(m.probes)[rising], m.qps[rising], "s", ms=8, mfc="white", color="#ff7f0e")
    twin.set_ylabel("queries / s")
    ax.legend(handles=[*ax.get_lines(), rate_line], fontsize=7, frameon=False, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=3)
    summary = (f"<table><tr><td>{m.index.bits} bits in {m.index.bands} bands of "
               f"{m.index.bits // m.index.bands}</td><td>&nbsp; {len(m.index):,} vectors</td></tr>"
               f"<tr><td>recall@{K}: {m.recall[0]:.3f} without probes, {m.recall[-1]:.3f} with "
               f"{m.probes[-1]}</td><td>&nbsp; {m.qps[0]:,.0f} to {m.qps[-1]:,.0f} queries/s</td></tr>"
               f"<tr><td colspan=2>theory without probes: the mean P(a true neighbour shares a bucket), "
               f"{m.candidate_bound:.3f}</td></tr></table>"
               + noise_note(simhash_contradictions(m)))
    return png_of(fig), summary, fig


class SimHashPanel(LabPanel):
    """Sliders for bits and bands; recall@10 and queries/s against the number of probes,
    on clustered vectors with exact cosine ground truth, beside the no-probe theory."""

    def __init__(self, bits: int = 32, bands: int = 4):
        from ..sketches import SimHashLSH

        check_ranges(SIMHASH_RANGES, bits=bits)
        if bands not in BANDS:
            raise ValueError(f"bands must be one of {', '.join(map(str, BANDS))}, got {bands!r}")
        SimHashLSH(32, bits=bits, bands=bands)  # the core refuses the rest (bits not divisible by bands)
        self.data = clustered_vectors()
        controls = {
            "bits": slider(widgets.IntSlider, "bits", SIMHASH_RANGES["bits"], value=bits, step=8),
            "bands": dropdown("bands", list(BANDS), bands),
        }
        super().__init__("SimHash LSH: recall@10 and speed against probes", controls)

    def measure(self, bits, bands):
        self.warm_up("simhash", lambda: measure_simhash(clustered_vectors(100, 2), 8, 1))
        return measure_simhash(self.data, bits, bands)

    def draw(self, result):
        png, summary, self.figure = draw_simhash(result, self.figure)
        return png, summary
