"""%mlsys and %cluster through a real InteractiveShell, bad arguments included."""
import pytest
from IPython.core.error import UsageError
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter.magics import parse_delay, parse_groups
from tests.conftest import pid_alive
from tests.jupyter.conftest import magic


def spawn_counter(ip, name="c0"):
    ip.run_cell(f"""
class Counter:
    def __init__(self): self.n = 0
    def incr(self, k=1):
        self.n += k
        return self.n
{name} = get_ipython().magics_manager.registry['MlsysMagics'].current.spawn(Counter, name={name!r})
""").raise_error()


def test_mlsys_reports_the_environment(ip, capsys):
    magic(ip, "mlsys")
    out = capsys.readouterr().out
    for needle in ("mlsys_ext 0.", "%cluster", "numba threading", "CPUs:", "CUDA (numba):", "CuPy:", "Ray:"):
        assert needle in out


def test_start_status_stop(ip):
    cl = magic(ip, "cluster start 2")
    assert cl.n == 2 and not cl.stopped
    spawn_counter(ip)
    assert ip.run_cell("c0.incr.remote(2).result()").result == 2
    status = magic(ip, "cluster status")
    assert status.set_index("name").loc["c0", "state"] == "alive"
    magic(ip, "cluster stop")
    assert cl.stopped


def test_restart_of_start_replaces_the_cluster(ip):
    first = magic(ip, "cluster start -n 1")
    pids = [r.get() for r in first.run(__import__("os").getpid).values()]
    second = magic(ip, "cluster start 2")
    assert first.stopped and not second.stopped
    assert not any(pid_alive(p) for p in pids)


def test_faults_through_magics(ip):
    cl = magic(ip, "cluster start 2")
    spawn_counter(ip)
    magic(ip, "cluster net --drop 0.5 --delay 0-27ms --duplicate 0.1")
    faults = cl.network()["default"]
    assert (faults.drop, faults.delay, faults.duplicate) == (0.5, (0.0, 0.027), 0.1)
    magic(ip, "cluster net --drop 0")
    magic(ip, "cluster net --drop 1 --link driver,c0")
    assert ("c0", "driver") in cl.network()["links"]
    magic(ip, "cluster net --drop 0 --link driver,c0")
    magic(ip, "cluster partition c0 | w1,driver")
    assert cl.network()["partition"] == [["c0"], ["driver", "w1"]]
    magic(ip, "cluster heal")
    assert cl.network()["partition"] == []
    magic(ip, "cluster pause c0")
    assert cl.status().loc[0, "state"] == "paused"
    magic(ip, "cluster resume c0")
    magic(ip, "cluster kill c0")
    assert cl.status().loc[0, "state"] == "dead"
    magic(ip, "cluster restart c0")
    assert cl.status().loc[0, "state"] == "alive"
    trace = magic(ip, "cluster trace -n 3")
    assert list(trace.columns)[:3] == ["time", "kind", "src"] and len(trace) <= 3


def test_cell_magic_runs_on_every_worker(ip, capsys):
    magic(ip, "cluster start 2")
    magic(ip, "cluster run", "value = 6 * 7\nprint('on', worker)\nvalue")
    out = capsys.readouterr().out
    assert "[w0] on w0" in out and "[w1] Out: 42" in out
    magic(ip, "cluster run --targets w1", "1/0")
    out = capsys.readouterr().out
    assert "[w1] ZeroDivisionError" in out and "[w0]" not in out


@pytest.mark.parametrize("line, cell, message", [
    ("cluster bogus", None, "unknown command 'bogus'"),
    ("cluster start --backend mpi", None, "--backend must be one of"),
    ("cluster start two", None, "worker count must be a whole number"),
    ("cluster start -n x", None, "invalid int value"),
    ("cluster status", None, "no cluster is running"),
    ("cluster run", None, "cell magic"),
    ("mlsys extra", None, "takes no arguments"),
])
def test_bad_arguments_give_a_usage_line(ip, line, cell, message):
    with pytest.raises(UsageError, match=message) as info:
        magic(ip, line, cell)
    if line.startswith("cluster"):
        assert "usage: %cluster" in str(info.value)


@pytest.mark.parametrize("line, message", [
    ("cluster kill ghost", "neither a worker"),
    ("cluster kill", "takes one actor or worker name"),
    ("cluster net --drop 3", "drop must be a probability"),
    ("cluster net --delay soon", "--delay 'soon'"),
    ("cluster net --drop 1 --link a", "--link takes two actor names a,b"),
    ("cluster partition c0", "groups separated by"),
    ("cluster heal now", "takes no names"),
])
def test_bad_arguments_on_a_running_cluster(ip, line, message):
    magic(ip, "cluster start 1")
    spawn_counter(ip)
    with pytest.raises(UsageError, match=message):
        magic(ip, line)


def test_errors_print_one_line_and_usage_without_traceback(ip, capsys):
    ip.run_cell("%cluster start --backend mpi")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "UsageError: --backend must be one of" in text and "usage: %cluster" in text
    assert "Traceback" not in text


def test_cell_magic_syntax_error_is_a_usage_error(ip):
    magic(ip, "cluster start 1")
    with pytest.raises(UsageError, match="does not parse"):
        magic(ip, "cluster run", "def (")


def test_parsers():
    assert parse_delay("0-27ms") == (0.0, 0.027)
    assert parse_delay("5ms") == (0.005, 0.005)
    assert parse_delay("0.1-0.2s") == (0.1, 0.2)
    assert parse_delay("0.5") == (0.5, 0.5)
    assert parse_groups(["a,b", "|", "c"]) == [["a", "b"], ["c"]]
    assert parse_groups(["a,b|c,", "|", "d"]) == [["a", "b"], ["c"], ["d"]]


@pytest.mark.parametrize("line, bad, message", [
    ("bloom -n 2000 -p 0.01 --kind blocked", "bloom --kind striped", "kind"),
    ("cms --eps 0.01 -N 10000 --conservative", "cms --delta 2", "delta"),
    ("lsh --num-perm 64 --threshold 0.7", "lsh --threshold 1.5", "threshold"),
    ("lsh --simhash --bits 16 --bands 2", "lsh --simhash --bits 30 --bands 4", "divisible"),
    ("kmeans -n 2000 -k 3 --dims 2 --init random", "kmeans -k 500", "k must be an integer from 1 to 64"),
    ("hogwild --rows 2000 --features-log2 10 --nnz 8 --epochs 2 --loss hinge", "hogwild --loss squared",
     "loss must be one of"),
    ("attention -L 64 --heads 1 --head-dim 16 --causal", "attention --backend cupy", "cannot run here"),
    ("raft -n 3 --seed 1", "raft -n 12", "n must be an integer from 1 to 9"),
    ("raft study --trials 2", "raft studies", "unknown command"),
    ("batching --policy static --rate 4 --requests 200", "batching --policy fifo", "policy must be one of"),
    ("sharding --scheme maglev --shards 5 --skew 1.1 --salts 4", "sharding --shards 1",
     "shards must be an integer from 2 to 64"),
])
def test_panel_magics_open_a_panel_and_refuse_bad_values_with_the_usage(ip, line, bad, message):
    setup_test_comm()
    try:
        magic(ip, line)
        name = line.split()[0]
        with pytest.raises(UsageError, match=rf"(?s){message}.*usage: %{name}"):
            magic(ip, bad)
        with pytest.raises(UsageError, match=f"usage: %{name}"):
            magic(ip, f"{name} --no-such-option")
    finally:
        teardown_test_comm()


def test_raft_on_live_workers_through_magics(ip, capsys):
    try:
        states = magic(ip, "raft start 3")
        assert len(states) == 3 and (states.role == "leader").sum() == 1
        magic(ip, "raft put color blue")
        assert magic(ip, "raft get color") == "blue"
        magic(ip, "raft kill leader")
        assert "killed server" in capsys.readouterr().out
        assert magic(ip, "raft get color") == "blue"
        assert (magic(ip, "raft status").role == "unreachable").sum() == 1
        with pytest.raises(UsageError, match="(?s)put takes 2 argument.*usage: %raft"):
            magic(ip, "raft put onlykey")
    finally:
        magic(ip, "raft stop")
    with pytest.raises(UsageError, match="no Raft cluster is running"):
        magic(ip, "raft status")
