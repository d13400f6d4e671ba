"""The %lsh panel, headless: generated near-duplicates, the S-curve, controls moved through the test comm."""
import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter import LSHPanel
from mlsys_ext.jupyter.lsh_panel import PAIRS_PER_BUCKET, measure_lsh, near_duplicate_pairs


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_generated_pairs_have_the_asked_similarity():
    left, right, truth = near_duplicate_pairs([0.2, 0.5, 0.9], 3, 100)
    for a, b, j in zip(left, right, truth):
        a, b = set(a.tolist()), set(b.tolist())
        assert len(a) == len(b) == 100
        assert len(a & b) / len(a | b) == pytest.approx(j)
    assert truth[0] == pytest.approx(0.2, abs=0.01) and truth[-1] == pytest.approx(0.9, abs=0.01)
    assert not set(left[0].tolist()) & set(left[1].tolist())  # different pairs share nothing


def test_measured_candidate_rate_follows_the_s_curve():
    m = measure_lsh(128, 0.8, 0.5)
    expected = m.index.probability(m.similarity)
    tolerance = 5 * np.sqrt(np.maximum(expected * (1 - expected), 0.01) / PAIRS_PER_BUCKET)
    assert np.all(np.abs(m.found - expected) <= tolerance)
    assert 0 <= m.recall <= 1 and 0 <= m.precision <= 1


def test_panel_chooses_new_bands_when_the_threshold_moves(comm):
    panel = LSHPanel(num_perm=64, threshold=0.5)
    assert panel.wait()
    low = panel.result.index.params
    panel.controls["threshold"].value = 0.9
    assert panel.wait()
    high = panel.result.index.params
    assert high[1] > low[1]  # more rows per band: a steeper, later S-curve
    assert "bands" in panel.summary.value


def test_simhash_recall_stays_under_the_candidate_bound_without_probes_and_grows_with_them():
    from mlsys_ext.jupyter.lsh_panel import clustered_vectors, measure_simhash

    data = clustered_vectors(n=3_000, queries=60)
    m = measure_simhash(data, bits=16, bands=2)
    assert m.recall[0] <= m.candidate_bound + 0.1  # recall@10 needs the neighbour as a candidate first
    assert np.all(np.diff(m.recall) >= -1e-9) and m.recall[-1] > m.recall[0]


def test_simhash_panel_measures_again_when_sliders_move(comm):
    from mlsys_ext.jupyter import SimHashPanel

    panel = SimHashPanel(bits=16, bands=2)
    assert panel.wait()
    panel.controls["bits"].value = 32
    assert panel.wait()
    assert panel.result.index.bits == 32 and "recall@10" in panel.summary.value
