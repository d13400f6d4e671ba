"""The %bloom panel, headless: sliders moved through ipywidgets' test comm, measurements checked."""
import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter import BloomPanel
from mlsys_ext.jupyter.bloom_panel import QUERIES, measure_bloom
from mlsys_ext.sketches import BloomFilter


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def within_sampling_error(measured, expected, queries=QUERIES, sigmas=6):
    return abs(measured - expected) <= sigmas * np.sqrt(expected * (1 - expected) / queries) + 1 / queries


@pytest.mark.parametrize("kind", ["classic", "blocked"])
def test_measurement_follows_the_exact_rate(kind):
    m = measure_bloom(BloomFilter(20_000, 0.02, kind))
    assert list(m.added) == sorted(m.added) and m.added[-1] == 30_000
    assert all(within_sampling_error(got, want) for got, want in zip(m.measured, m.exact))
    assert np.all(m.exact >= m.classic * (1 - 1e-9))
    assert m.add_rate > 0 and m.query_rate > 0


def test_panel_measures_again_when_sliders_move(comm):
    panel = BloomPanel(n=5_000, p=0.05)
    assert panel.wait()
    first = panel.result.filter
    assert (first.capacity, first.kind) == (5_000, "classic")
    panel.controls["p"].value = 0.001
    panel.controls["kind"].value = "blocked"
    assert panel.wait()
    second = panel.result.filter
    assert second.kind == "blocked" and second.num_bits > first.num_bits
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"
    assert "bits/key" in panel.summary.value and "measured" in panel.status.value


def test_bad_values_are_refused(comm):
    with pytest.raises(ValueError, match="p must be a number from 0.0001 to 0.316"):
        BloomPanel(p=1.5)
    with pytest.raises(ValueError, match="kind must be one of"):
        BloomPanel(kind="striped")


def test_m_and_k_by_hand(comm):
    panel = BloomPanel(n=5_000, p=0.01)
    assert panel.wait()
    panel.controls["m"].value = 2**12  # ticks "by hand" itself
    panel.controls["k"].value = 2
    assert panel.wait() and panel.controls["by_hand"].value
    bf = panel.result.filter
    assert (bf.num_bits, bf.num_hashes, bf.capacity) == (4096, 2, 5_000)
    assert all(within_sampling_error(got, want) for got, want in zip(panel.result.measured, panel.result.exact))


def test_the_m_and_k_sliders_show_what_capacity_and_rate_chose_without_measuring_again(comm, monkeypatch):
    panel = BloomPanel(n=5_000, p=0.01)
    assert panel.wait()
    measured = []
    measure = panel.measure
    monkeypatch.setattr(panel, "measure", lambda **values: measured.append(values) or measure(**values))
    panel.controls["n"].value = 40_000
    assert panel.wait()
    bf = panel.result.filter
    assert (panel.controls["m"].value, panel.controls["k"].value) == (bf.num_bits, bf.num_hashes)
    assert len(measured) == 1 and not panel.controls["by_hand"].value  # showing them was not taken for a move
    panel.controls["k"].value = 3  # a move of k by the user sizes by hand
    assert panel.wait() and panel.controls["by_hand"].value
    assert (panel.result.filter.num_bits, panel.result.filter.num_hashes) == (bf.num_bits, 3)
