"""Malformed magic lines: each is refused with a one-line UsageError, quickly, before
anything is built, allocated or changed (no panel shown, no running cluster stopped)."""
import os
import tracemalloc

import pytest
from IPython.core.error import UsageError
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.cluster import Cluster
from mlsys_ext.jupyter import magics as magics_module
from tests.conftest import pid_alive
from tests.jupyter.conftest import magic


class UntouchedRaft:
    """Stands in for a running Raft cluster, which a refused line must leave alone."""

    def stop(self):
        raise AssertionError("a refused line stopped the running Raft cluster")


@pytest.fixture(scope="module")
def running():
    """One worker shared by the cases: none of them may stop or change it."""
    with Cluster(1, timeout=10.0) as cluster:
        yield cluster


@pytest.fixture
def lab(ip, running, monkeypatch):
    """The shell, with ``running`` as its cluster, a Raft cluster that must stay, and the panels
    that would have been shown collected instead."""
    setup_test_comm()
    monkeypatch.setenv("MLSYS_MAX_WORKERS", "4")
    shown = []
    monkeypatch.setattr(magics_module, "display", shown.append)
    magics = ip.magics_manager.registry["MlsysMagics"]
    magics.current, magics.raft_cluster = running, UntouchedRaft()
    yield ip, shown
    magics.current = magics.raft_cluster = None
    teardown_test_comm()


@pytest.mark.parametrize("line, message", [
    # too many workers, or none: refused before the running cluster is stopped
    ("cluster start 100000", "n = 100000 workers is more than the limit of 4"),
    ("cluster start -n 5", "n = 5 workers is more than the limit of 4"),
    ("cluster start 0", r"must be an integer >= 1, got 0"),
    ("cluster start -n 0", r"must be an integer >= 1, got 0"),
    ("cluster start 1 --address 10.0.0.1:6379", "--address names an existing Ray cluster"),
    ("raft start 100000", "n = 100000 workers is more than the limit of 4"),
    ("raft start 0", r"must be an integer >= 1, got 0"),
    # sizes that allocated terabytes, or ran for minutes, before anything checked them
    ("bloom -n 1000000000000", "n must be an integer from 100 to 1,000,000, got 1000000000000"),
    ("cms --eps 0.000000001", "eps must be a number from 0.0001 to 0.1"),
    ("lsh --num-perm 60000", "num_perm must be an integer from 16 to 512"),
    ("hogwild --epochs 1000000000", "epochs must be an integer from 1 to 30"),
    ("hogwild --features-log2 40", "features_log2 must be an integer from 8 to 22"),
    ("attention --heads 1000000000", "heads must be an integer from 1 to 16"),
    ("attention --head-dim 100000", "head_dim must be an integer from 1 to 128"),
    ("raft study --trials 500", "trials must be an integer from 1 to 50"),
    # values a slider would have clipped silently
    ("bloom -n 1", "n must be an integer from 100 to 1,000,000, got 1"),
    ("bloom -p 0.5", "p must be a number from 0.0001 to 0.316, got 0.5"),
    ("cms --delta 0.00001", "delta must be a number from 0.0001 to 0.316"),
    ("cms -N 5", "length must be an integer from 10,000 to 2,000,000, got 5"),
    ("cms --skew 5", "skew must be a number from 1.05 to 2.5, got 5.0"),
    ("lsh --num-perm 8", "num_perm must be an integer from 16 to 512, got 8"),
    ("lsh --threshold 0.99", "threshold must be a number from 0.1 to 0.95"),
    ("lsh --simhash --bits 4 --bands 1", "bits must be an integer from 8 to 64, got 4"),
    ("lsh --simhash --bits 64 --bands 16", "bands must be one of 1, 2, 4, 8, got 16"),
    ("attention -L 0", "seq_len must be an integer from 16 to 4,096, got 0"),
    ("attention --heads 100", "heads must be an integer from 1 to 16, got 100"),
    # network faults the magic would ignore, or that no reply could outlast
    ("cluster net --link a", "--link takes two actor names a,b"),
    ("cluster net --link w0,driver", "--link needs a fault to set on it"),
    ("cluster net --delay 0-1000000s", "delays go up to 1000 ms"),
    ("cluster trace -n -1", r"trace -n takes the number of rows to show \(>= 1\)"),
])
def test_a_malformed_line_is_refused_before_anything_is_done(lab, running, line, message):
    ip, shown = lab
    (worker,) = [result.get() for result in running.run(os.getpid).values()]
    network = running.network()
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=message) as refused:
            magic(ip, line)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"  # numpy's arrays count here
    name = line.split()[0]
    assert f"usage: %{name}" in str(refused.value) and "Traceback" not in str(refused.value)
    assert shown == []
    assert not running.stopped and pid_alive(worker) and running.network() == network


def test_a_file_that_is_not_a_trace_is_refused_before_the_panel_opens(lab, tmp_path):
    ip, shown = lab
    notes, columns, one_row = tmp_path / "notes.txt", tmp_path / "columns.csv", tmp_path / "one_row.csv"
    notes.write_text("not, a trace\n\x00\x01")
    columns.write_text("time,prompt,output\n0.0,10,5\n0.5,12,4\n")
    one_row.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n")
    expected = "is not a trace: expected a CSV with columns arrived_at,num_prefill_tokens,num_decode_tokens"
    for path in (tmp_path / "missing.csv", tmp_path, notes, columns, one_row):
        with pytest.raises(UsageError, match=rf"(?s){expected}.*usage: %batching"):
            magic(ip, f"batching --trace {path}")
    assert shown == []


def test_a_cell_past_the_timeout_says_how_to_end_it(ip, capsys):
    """The worker keeps running the cell (it cannot be interrupted there); restarting it ends it."""
    magics = ip.magics_manager.registry["MlsysMagics"]
    assert "%cluster restart w0" in magics_module.MlsysMagics.cluster.__doc__
    magics.current = cluster = Cluster(1, timeout=1.0)
    (spinning,) = [result.get() for result in cluster.run(os.getpid).values()]
    magic(ip, "cluster run", "while True: pass")
    assert capsys.readouterr().out == ("[w0] no answer after 1 s; the cell is still running there: "
                                       "%cluster restart w0 ends it\n")
    assert pid_alive(spinning)
    magic(ip, "cluster restart w0")
    assert not pid_alive(spinning)
    magic(ip, "cluster run", "import os\nos.getpid()")
    out = capsys.readouterr().out
    assert out.startswith("[w0] Out: ")
    restarted = int(out.split("Out: ")[1])
    magic(ip, "cluster stop")
    assert not pid_alive(restarted)
