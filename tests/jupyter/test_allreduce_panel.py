"""The all-reduce panel, headless: a measurement checked against the formulas, controls
moved, and values outside the sliders refused before any actor is made."""
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.cluster import Cluster
from mlsys_ext.distributed import Collective
from mlsys_ext.jupyter.allreduce_panel import (
    AllReducePanel, AllReduceMeasurement, contradictions, draw_allreduce, formula_bytes, measure_allreduce, warm_up,
)
from tests.jupyter.conftest import magic


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, timeout=10.0) as c:
        yield c


def test_a_measurement_has_every_algorithm_at_every_size_and_bytes_on_the_formulas(cluster):
    coll = Collective(cluster, ranks=4, servers=2)
    warm_up(coll)
    m = measure_allreduce(coll, 12)
    assert list(m.stats.algorithm) == ["ring", "tree", "ps"] * 3
    assert sorted(set(m.stats.size_bytes)) == [4 * 2**4, 4 * 2**8, 4 * 2**12] and m.size_bytes == 4 * 2**12
    last = m.stats[m.stats.size_bytes == m.size_bytes]
    for row in last.itertuples():
        np.testing.assert_allclose(row.sent_bytes_per_rank, formula_bytes(row.algorithm, m.size_bytes, 4, 2))
    assert not [c for c in contradictions(m) if "formula" in c]
    png, summary, _ = draw_allreduce(m)
    assert png[:4] == b"\x89PNG" and "busbw (GB/s)" in summary and "parameter server" in summary


def test_the_formulas_are_the_textbooks():
    S = 1200
    assert list(formula_bytes("ring", S, 4, 1)) == [2 * 3 * S / 4] * 4
    assert list(formula_bytes("tree", S, 4, 1)) == [2 * S, S, 2 * S, S]  # root: 2 children; rank 2: up and 1 child
    assert list(formula_bytes("ps", S, 4, 3)) == [S] * 4
    assert formula_bytes("tree", S, 7, 1).sum() == 2 * 6 * S and list(formula_bytes("ring", S, 1, 1)) == [0]


def test_bytes_off_the_formula_are_flagged():
    m = AllReduceMeasurement(2, 1, pd.DataFrame(
        [{"algorithm": "ring", "size_bytes": 400, "sent_bytes_per_rank": [400, 300], "seconds": 1e-3}]), 400)
    assert contradictions(m) == ["ring sent 700 bytes, the formula 800"]


def test_panel_measures_again_when_a_slider_moves(cluster):
    panel = AllReducePanel(cluster, size_log2=10)
    assert panel.wait(60) and "measured" in panel.status.value, panel.status.value
    assert panel.result.ranks == 2
    panel.controls["ranks"].value = 3
    assert panel.wait(60)
    assert panel.result.ranks == 3 and bytes(panel.plot.value[:4]) == b"\x89PNG"


@pytest.mark.parametrize("kwargs, message", [
    (dict(ranks=9), "ranks must be an integer from 1 to 8"),
    (dict(size_log2=25), "size_log2 must be an integer from 8 to 24"),
    (dict(servers=0), "servers must be an integer from 1 to 8"),
])
def test_values_outside_the_sliders_are_refused_before_any_actor(cluster, kwargs, message):
    actors = len(cluster.actors)
    with pytest.raises(ValueError, match=message):
        AllReducePanel(cluster, **kwargs)
    assert len(cluster.actors) == actors


def test_a_stopped_cluster_is_refused():
    with Cluster(1) as stopped:
        pass
    with pytest.raises(ValueError, match="the cluster is stopped"):
        AllReducePanel(stopped)


def test_the_magic_opens_the_panel_on_the_running_cluster_and_refuses_bad_values(ip, cluster):
    with pytest.raises(UsageError, match="no cluster is running"):
        magic(ip, "allreduce")
    magics = ip.magics_manager.registry["MlsysMagics"]
    magics.current = cluster
    setup_test_comm()
    try:
        magic(ip, "allreduce --ranks 2 --size-log2 9 --servers 2")
        with pytest.raises(UsageError, match="(?s)ranks must be an integer from 1 to 8.*usage: %allreduce"):
            magic(ip, "allreduce --ranks 9")
        magic(ip, "allreduce --sgd --workers 2 --staleness 1 --compression fp16 --jitter-ms 0")  # the SGD panel
        with pytest.raises(UsageError, match="(?s)staleness must be an integer from 0 to 8.*usage: %allreduce"):
            magic(ip, "allreduce --sgd --staleness 9")
    finally:
        magics.current = None
        teardown_test_comm()
