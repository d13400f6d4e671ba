"""The Hogwild panel, headless: sliders moved through ipywidgets' test comm, measurements checked."""
import numba
import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter.hogwild_panel import MODES, HogwildPanel, measure_hogwild
from mlsys_ext.kernels import sparse_classification


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_measurement_runs_the_three_modes_and_the_thread_series():
    m = measure_hogwild(*sparse_classification(3000, 2**12, 10), threads=2, epochs=3, lr=0.2, loss="log")
    assert list(m.runs) == list(MODES) and m.shape == (3000, 4096)
    assert [run.threads for run in m.runs.values()] == [2, 2, 1]
    assert all(len(run.history) == 3 for run in m.runs.values())
    assert list(m.threads) == list(range(1, numba.config.NUMBA_NUM_THREADS + 1))
    assert m.speedup[0] == 1.0 and np.all(m.speedup > 0)


def test_panel_measures_again_when_sliders_move(comm):
    panel = HogwildPanel(rows=2_000, features_log2=10, nnz_per_row=8, epochs=3)
    assert panel.wait()
    assert "measured" in panel.status.value, panel.status.value
    first = panel.result
    assert first.shape == (2_000, 1024) and first.runs["serial"].loss == "log"
    panel.controls["loss"].value = "hinge"
    panel.controls["epochs"].value = 2
    assert panel.wait()
    second = panel.result
    assert second is not first and second.runs["hogwild"].loss == "hinge"
    assert all(len(run.history) == 2 for run in second.runs.values())
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"
    assert all(mode in panel.summary.value for mode in MODES) and "speedup" in panel.summary.value


@pytest.mark.parametrize("keywords, message", [
    (dict(lr=-1.0), "lr must be a number from 0.001 to 10"),
    (dict(loss="squared"), "loss must be one of"),
    (dict(rows=10), "rows must be an integer from 1,000 to 400,000"),
    (dict(threads=99), "threads must be an integer from 1 to"),
    (dict(epochs=10**9), "epochs must be an integer from 1 to 30"),
])
def test_bad_values_are_refused(comm, keywords, message):
    with pytest.raises(ValueError, match=message):
        HogwildPanel(**keywords)
