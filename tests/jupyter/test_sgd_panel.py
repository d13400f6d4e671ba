"""The data-parallel SGD panel (``%allreduce --sgd``), headless: every mode trained and
checked against the single-process run and the byte formulas, moves that rerun only what
they change, and values outside the controls refused before any actor is made."""
import dataclasses

import numpy as np
import pytest

from mlsys_ext.cluster import Cluster
from mlsys_ext.jupyter.sgd_panel import SGDPanel, contradictions, draw_sgd, measure_sgd


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, timeout=20.0) as c:
        yield c


def test_a_measurement_trains_every_mode_and_agrees_with_the_theory(cluster):
    m = measure_sgd(cluster, 3, 2, None, 0.002)
    assert list(m.runs) == ["allreduce", "ps", "async"]
    for mode in ("allreduce", "ps"):  # synchronous: the single-process run, round for round
        np.testing.assert_allclose(m.runs[mode].history.loss, m.sequential, rtol=1e-9)
    assert contradictions(m) == []
    assert m.sequential[-1] < 0.8 * m.sequential[0]
    png, summary, _ = draw_sgd(m)
    assert png[:4] == b"\x89PNG" and "PS, async s=2" in summary and "most rounds ahead" in summary
    assert cluster.actors == []  # each run removes its actors


def test_a_run_off_the_single_process_one_is_flagged(cluster):
    m = measure_sgd(cluster, 2, 0, None, 0.0)
    off = dataclasses.replace(m, sequential=[loss + 0.01 for loss in m.sequential])
    assert contradictions(off) == ["ring all-reduce differs from the single-process run",
                                   "PS, synchronous differs from the single-process run"]


def test_a_move_reruns_only_the_modes_it_changes(cluster):
    done = {}
    first = measure_sgd(cluster, 2, 1, None, 0.0, done=done)
    again = measure_sgd(cluster, 2, 3, None, 0.0, done=done)  # only the staleness bound moved
    assert again.runs["allreduce"] is first.runs["allreduce"] and again.runs["ps"] is first.runs["ps"]
    assert again.runs["async"] is not first.runs["async"] and len(done) == 4
    compressed = measure_sgd(cluster, 2, 3, "fp16", 0.0, done=done)
    assert compressed.runs["allreduce"] is first.runs["allreduce"] and compressed.runs["ps"] is not first.runs["ps"]


def test_panel_measures_again_when_a_control_moves(cluster):
    panel = SGDPanel(cluster, workers=2, jitter_ms=0.0)
    assert panel.wait(60) and "measured" in panel.status.value, panel.status.value
    panel.controls["compression"].value = "top-k"
    assert panel.wait(60)
    assert panel.result.compression == "topk" and bytes(panel.plot.value[:4]) == b"\x89PNG"
    assert "top-k 10%" in panel.summary.value


@pytest.mark.parametrize("kwargs, message", [
    (dict(workers=9), "workers must be an integer from 1 to 8"),
    (dict(staleness=-1), "staleness must be an integer from 0 to 8"),
    (dict(jitter_ms=11.0), "jitter_ms must be a number from 0 to 10"),
    (dict(compression="zip"), "compression must be one of none, fp16, top-k"),
])
def test_values_outside_the_controls_are_refused_before_any_actor(cluster, kwargs, message):
    actors = len(cluster.actors)
    with pytest.raises(ValueError, match=message):
        SGDPanel(cluster, **kwargs)
    assert len(cluster.actors) == actors
