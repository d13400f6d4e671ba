"""The MapReduce panel and magics, headless: a job run per change, a worker broken mid-job
from the panel's buttons, and a %%mapreduce cell's functions run as a job."""
import time

import pytest
from IPython.core.error import UsageError
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter.mapreduce_panel import MapReducePanel
from tests.jupyter.conftest import magic


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_the_panel_runs_the_job_again_on_a_change_and_a_killed_worker_costs_time_not_the_answer(cluster, comm):
    panel = MapReducePanel(cluster, maps=6, n_reduce=2, task_ms=20)
    assert panel.wait(60) and "output equals the sequential job" in panel.summary.value
    first = panel.result[0]
    assert set(first.tasks.outcome) == {"done"}
    panel.worker.value = "w0"
    panel.controls["task_ms"].value = 150  # 12 maps of 150 ms: time to kill w0 mid-job
    panel.controls["maps"].value = 12
    time.sleep(0.6)
    panel.act("kill")
    assert panel.wait(60) and panel.message.value == "kill w0: done"
    res = panel.result[0]
    assert res is not first and "output equals the sequential job" in panel.summary.value
    assert "failed" in set(res.tasks.outcome)
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"


def test_values_outside_the_sliders_are_refused(cluster):
    with pytest.raises(ValueError, match="maps must be an integer from 1 to 64"):
        MapReducePanel(cluster, maps=0)


CELL = '''
def map_fn(name, text):
    return [(len(word), 1) for word in text.split()]

def reduce_fn(length, ones):
    return sum(ones)
'''


def test_a_mapreduce_cell_runs_its_functions_as_a_job(ip, cluster, comm):
    magics = ip.magics_manager.registry["MlsysMagics"]
    magics.current = cluster
    try:
        ip.user_ns["docs"] = ["a bb ccc", "dd e"]
        res = magic(ip, "mapreduce --inputs docs --n-reduce 2", CELL)
        assert res.output == {1: 2, 2: 2, 3: 1}
        assert "map_fn" not in ip.user_ns  # the cell's functions stay in the cell
        with pytest.raises(UsageError, match="(?s)no variable named 'nothing'.*usage: %mapreduce"):
            magic(ip, "mapreduce --inputs nothing", CELL)
        with pytest.raises(UsageError, match="(?s)the cell must define reduce_fn.*usage"):
            magic(ip, "mapreduce --inputs docs", "def map_fn(name, text):\n    return []\n")
    finally:
        magics.current = None


def test_the_panel_needs_a_running_cluster(ip):
    with pytest.raises(UsageError, match="no cluster is running"):
        magic(ip, "mapreduce")
