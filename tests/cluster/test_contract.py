"""The cluster's contract, on both backends (local worker processes, and Ray) and, for
every fault, on both paths a message takes (from the driver, and actor to actor).

Starting Ray takes seconds, so one Ray serves every Ray test in this module; each test
still gets a fresh cluster (new hosts) on it, so tests cannot see each other's actors.
"""
import os
import signal
import time

import pytest

from mlsys_ext.cluster import (ActorDiedError, ActorTimeoutError, Cluster, ClusterError, RemoteError,
                               RemoteTraceback, context)
from tests.conftest import pid_alive, wait_until

from .actors import Counter, Prober, Relay, SlowStart, Ticker
from .paths import Path, path  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def shared_ray():
    pytest.importorskip("ray")
    with Cluster(1, backend="ray") as holder:  # started Ray, so it shuts Ray down at the module's end
        yield holder


@pytest.fixture(params=["local", "ray"])
def backend(request):
    if request.param == "ray":
        request.getfixturevalue("shared_ray")
    return request.param


@pytest.fixture
def cluster(backend):
    with Cluster(2, backend=backend, timeout=10.0, seed=0) as c:
        yield c


def state(cluster, name: str, column: str = "state"):
    return cluster.status().set_index("name").loc[name, column]


# -- calls ------------------------------------------------------------------------------

def test_calls_return_values_in_order(cluster):
    c = cluster.spawn(Counter, 10, name="c0")
    assert c.incr.remote(5).result(timeout=5) == 15
    assert cluster.gather([c.incr.remote(1) for _ in range(100)]) == list(range(16, 116))


def test_workers_are_separate_processes_and_placement_is_round_robin(cluster):
    handles = [cluster.spawn(Counter, name=f"c{i}") for i in range(4)]
    pids = [h.pid.remote().result() for h in handles]
    assert os.getpid() not in pids
    assert pids[0] == pids[2] != pids[1] == pids[3]
    assert {w: r.get() for w, r in cluster.run(os.getpid).items()} == {"w0": pids[0], "w1": pids[1]}
    assert list(cluster.status()["worker"]) == ["w0", "w1", "w0", "w1"]
    pinned = cluster.spawn(Counter, name="pinned", worker="w1")
    assert pinned.pid.remote().result() == pids[1]
    assert list(cluster.status().set_index("name").loc["pinned", ["class", "worker", "pid", "state"]]) == [
        "Counter", "w1", pids[1], "alive"]


def test_remote_exception_is_reraised_with_remote_traceback(cluster):
    c = cluster.spawn(Counter)
    with pytest.raises(ValueError, match="broken on purpose") as info:
        c.fail.remote("broken on purpose").result()
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in info.value.__cause__.text
    assert c.incr.remote().result() == 1  # the actor survives its own exceptions


def test_unpicklable_remote_exception_still_reports(cluster):
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a)
            self.lock = __import__("threading").Lock()

    class Raiser:
        def go(self):
            raise Odd("x", "y")

    r = cluster.spawn(Raiser)
    with pytest.raises(RemoteError, match="Odd"):
        r.go.remote().result()


def test_unknown_method_and_direct_call_are_clear(cluster):
    c = cluster.spawn(Counter, name="c0")
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        c.nope.remote().result()
    with pytest.raises(TypeError, match=r"\.remote"):
        c.incr(1)
    with pytest.raises(ClusterError, match="no actor named 'ghost'"):
        cluster.handle("ghost")


def test_spawn_validates_its_arguments(cluster):
    with pytest.raises(TypeError, match="needs a class"):
        cluster.spawn(Counter(), name="x")
    cluster.spawn(Counter, name="dup")
    with pytest.raises(ClusterError, match="exists already"):
        cluster.spawn(Counter, name="dup")
    with pytest.raises(ClusterError, match="no worker named 'w9'"):
        cluster.spawn(Counter, worker="w9")
    with pytest.raises(ValueError, match="max_restarts"):
        cluster.spawn(Counter, max_restarts=-2)
    with pytest.raises(ClusterError, match="reserved"):
        cluster.spawn(Counter, name="w0")


def test_constructor_error_reaches_spawn(cluster):
    class Broken:
        def __init__(self):
            raise RuntimeError("no way")

    with pytest.raises(RuntimeError, match="no way"):
        cluster.spawn(Broken, name="broken")
    assert "broken" not in cluster.actors


def test_a_class_defined_in_the_notebook_travels_by_value(cluster):
    class Accumulator:  # defined here, so no worker could import it
        def __init__(self, start):
            self.items = [start]

        def add(self, item):
            self.items.append(item)
            return list(self.items)

        def me(self):
            return context().name, context().worker

    a = cluster.spawn(Accumulator, "a", name="notebook", worker="w1")
    assert a.add.remote("b").result() == ["a", "b"]
    assert a.me.remote().result() == ("notebook", "w1")


@pytest.mark.parametrize("n", [0, -1, 1.5, "2"])
@pytest.mark.parametrize("backend_name", ["local", "ray"])
def test_cluster_rejects_bad_sizes(n, backend_name):
    with pytest.raises(ValueError, match="n \\(the number of workers\\)"):
        Cluster(n, backend=backend_name)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        Cluster(1, backend="mpi")


def test_actor_calls_actor_through_a_passed_handle(cluster):
    c = cluster.spawn(Counter, 100, name="c", worker="w0")
    r = cluster.spawn(Relay, name="r", worker="w1")
    near = cluster.spawn(Relay, name="near", worker="w0")  # on the callee's own worker
    assert r.call.remote(c, 5).result() == 105
    assert near.call.remote(c, 1).result() == 106
    assert r.call_by_name.remote("c", 1).result() == 107
    r.tell.remote(c, 10).result()
    wait_until(lambda: c.value.remote().result() == 117)
    trace = cluster.trace()
    assert {"call", "send"} <= set(trace[trace.src == "r"]["kind"])
    assert "reply" in set(trace[(trace.src == "c") & (trace.dst == "r")]["kind"])


def test_one_way_sends_arrive_in_order(cluster):
    r = cluster.spawn(Relay)
    for i in range(50):
        r.receive.send(i)
    wait_until(lambda: r.received.remote().result() == list(range(50)))


def test_handles_returned_by_actors_work_in_the_driver(cluster):
    class Maker:
        def peer(self):
            return context().handle("c")

    c = cluster.spawn(Counter, name="c")
    m = cluster.spawn(Maker)
    peer = m.peer.remote().result()
    assert peer == c
    assert peer.incr.remote(2).result() == 2


def test_timers_drive_an_actor(cluster):
    t = cluster.spawn(Ticker)
    t.start.remote(5, 0.01).result()
    wait_until(lambda: t.count.remote().result() == 5)
    t.arm_and_cancel.remote().result()
    t.start.remote(1, 0.05).result()  # due after the cancelled timer: had that fired, it ran first
    wait_until(lambda: t.count.remote().result() >= 6)
    assert t.count.remote().result() == 6


def test_context_outside_an_actor_is_an_error():
    with pytest.raises(ClusterError, match="inside an actor"):
        context()


def test_print_reaches_driver_and_logs(cluster, capsys):
    c = cluster.spawn(Counter, name="loud")
    assert c.shout.remote("hello from the actor").result() == 20
    wait_until(lambda: "hello from the actor\n" in cluster.logs("loud"))
    wait_until(lambda: "(loud) hello from the actor" in capsys.readouterr().out)


# -- faults: one contract for both paths ------------------------------------------
# ``path`` (tests/cluster/paths.py) sends from the driver ("routed") or from actor s
# on w1 ("direct": over its direct socket locally, one Ray actor call on Ray); targets
# live on w0.

def test_kill_fails_pending_and_new_calls_at_once(cluster, path):
    c = cluster.spawn(Counter, name="c0", worker="w0")
    assert path.call("c0", "incr").result() == 1  # the direct socket exists before the kill
    slow = path.call("c0", "sleep", 30)
    start = time.monotonic()
    cluster.kill("c0")
    with pytest.raises(ActorDiedError, match="before answering sleep"):
        slow.result(timeout=5)  # the old router left an actor's call to a dead actor waiting
    assert time.monotonic() - start < 1.0
    with pytest.raises(ActorDiedError, match="'c0' is dead"):
        path.call("c0", "incr").result(timeout=5)
    with pytest.raises(ActorDiedError, match="restart it"):
        c.incr.remote().result(timeout=5)
    with pytest.raises(ActorDiedError):
        c.incr.send()
    assert state(cluster, "c0") == "dead"


def test_kill_by_worker_kills_every_actor_on_it_and_placement_skips_it(cluster, path):
    a = cluster.spawn(Counter, name="a", worker="w0")
    b = cluster.spawn(Counter, name="b", worker="w0")
    cluster.spawn(Counter, name="o", worker="w1")
    pid = a.pid.remote().result()
    cluster.kill("w0")
    states = cluster.status().set_index("name")["state"]
    assert states["a"] == states["b"] == "dead" and states["o"] == "alive"
    assert path.call("o", "incr").result() == 1
    for h in (a, b):
        with pytest.raises(ActorDiedError):
            path.call(h.name, "incr").result()
    wait_until(lambda: not pid_alive(pid))
    placed = [cluster.spawn(Counter, name=f"n{i}") for i in range(3)]
    assert set(cluster.status().set_index("name").loc[[h.name for h in placed], "worker"]) == {"w1"}


def test_max_restarts_rebuilds_from_original_arguments(cluster, path):
    c = cluster.spawn(Counter, 10, name="c0", worker="w0", max_restarts=1)
    first_pid = c.pid.remote().result()
    assert path.call("c0", "incr", 5).result() == 15
    cluster.kill("c0")
    assert path.call("c0", "incr", 0).result(timeout=60) == 10  # held until it is back, state reset
    assert c.pid.remote().result() != first_pid
    wait_until(lambda: not pid_alive(first_pid))
    assert (state(cluster, "c0"), state(cluster, "c0", "restarts")) == ("alive", 1)
    assert path.call("c0", "incr", 1).result() == 11  # the new incarnation stays reachable
    cluster.kill("c0")  # no restarts left
    with pytest.raises(ActorDiedError):
        path.call("c0", "incr").result(timeout=5)


def test_restart_brings_a_dead_worker_back(cluster, path):
    cluster.spawn(Counter, 3, name="c0", worker="w0")
    assert path.call("c0", "incr", 0).result() == 3
    cluster.kill("c0")
    cluster.restart("c0")
    assert path.call("c0", "incr", 1).result() == 4
    assert state(cluster, "c0", "restarts") == 1


def test_restart_of_a_live_actor_replaces_its_process(cluster, path):
    c = cluster.spawn(Counter, name="c0", worker="w0")
    pid = c.pid.remote().result()
    assert path.call("c0", "incr", 7).result() == 7
    cluster.restart("c0")
    assert path.call("c0", "value").result() == 0
    assert c.pid.remote().result() != pid


def test_remove_ends_an_actor_for_good_and_frees_its_name(cluster, path):
    c = cluster.spawn(Counter, name="c0", worker="w0")
    neighbour = cluster.spawn(Counter, name="n", worker="w0")
    pid = neighbour.pid.remote().result()
    assert path.call("c0", "incr").result() == 1
    path.call("c0", "sleep", 0.3)  # running while it is removed
    queued = path.call("c0", "incr")
    cluster.remove("c0")
    with pytest.raises(ActorDiedError):
        queued.result(timeout=5)
    assert "c0" not in cluster.actors and "c0" not in set(cluster.status()["name"])
    with pytest.raises(ClusterError):  # from the driver: no such actor; from a peer: it does not exist
        path.call("c0", "incr").result(timeout=5)
    with pytest.raises(ClusterError, match="no actor named 'c0'"):
        c.incr.remote()
    assert neighbour.incr.remote().result() == 1 and neighbour.pid.remote().result() == pid
    assert cluster.spawn(Counter, 5, name="c0", worker="w0").incr.remote().result() == 6  # the name is free
    assert path.call("c0", "incr").result() == 7
    with pytest.raises(ClusterError, match="no actor named 'ghost'"):
        cluster.remove("ghost")


def test_remove_of_an_actor_being_restarted_is_refused_and_costs_nothing(cluster):
    cluster.spawn(SlowStart, 1.0, name="slow", worker="w0", max_restarts=1)
    cluster.kill("slow")  # its rebuild takes a second: it is restarting meanwhile
    with pytest.raises(ClusterError, match="'slow' is being restarted: remove it once it is back"):
        cluster.remove("slow")
    wait_until(lambda: state(cluster, "slow") == "alive")
    cluster.remove("slow")
    assert "slow" not in cluster.actors


def test_default_names_stay_unique_after_a_remove(cluster):
    first, second = cluster.spawn(Counter), cluster.spawn(Counter)
    cluster.remove(first.name)
    assert cluster.spawn(Counter).name not in (second.name,)


def test_pause_freezes_and_resume_delivers(cluster, path):
    c = cluster.spawn(Counter, name="c0", worker="w0")
    pid = c.pid.remote().result()
    cluster.pause("c0")
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[-1].split()[0] == "T"  # stopped by SIGSTOP
    assert state(cluster, "c0") == "paused"
    pending = path.call("c0", "incr", 1)
    with pytest.raises(ActorTimeoutError, match="paused"):
        path.call("c0", "incr", 1).result(timeout=0.3)
    assert not pending.done()
    cluster.resume("c0")
    assert pending.result(timeout=10) in (1, 2)
    assert c.value.remote().result() == 2  # both calls ran after resume


def test_partition_cuts_between_groups_only(cluster, path):
    cluster.spawn(Counter, name="a", worker="w0")
    cluster.partition([path.src], ["a"])
    with pytest.raises(ActorTimeoutError):
        path.call("a", "incr", 1).result(timeout=0.5)
    if path.kind == "direct":  # the driver is in no group: it still reaches a
        assert cluster.handle("a").incr.remote(0).result() == 0
    cluster.heal()
    assert path.call("a", "incr", 1).result() == 1
    dropped = path.trace("a")
    assert "dropped" in set(dropped[dropped.src == path.src]["fate"])


def test_partition_by_worker(cluster, path):
    cluster.spawn(Counter, name="a", worker="w0")
    cluster.partition([path.group], ["w0"])
    with pytest.raises(ActorTimeoutError):
        path.call("a", "incr").result(timeout=0.3)
    cluster.heal()
    assert path.call("a", "value").result() == 0  # the cut request never arrived


def test_drop_all_then_none(cluster, path):
    cluster.spawn(Counter, name="c0", worker="w0")
    cluster.set_network(drop=1.0, link=path.link)  # routed: every link; direct: every link w1 - w0
    with pytest.raises(ActorTimeoutError, match="dropped"):
        path.call("c0", "incr").result(timeout=0.2)
    cluster.set_network(drop=0.0, link=path.link)
    assert path.call("c0", "value").result() == 0
    fates = path.trace("c0")["fate"].tolist()
    assert fates[0] == "dropped" and fates[-1] == "delivered"


def test_drop_rate_is_about_right(cluster, path):
    r = cluster.spawn(Relay, name="r", worker="w0")
    cluster.set_network(drop=0.3, link=path.link)
    path.send_each("r", "receive", [(i,) for i in range(1000)])
    cluster.set_network(link=path.link)
    trace = path.trace("r")
    sends = trace[trace.kind == "send"]
    assert len(sends) == 1000
    dropped = (sends.fate == "dropped").mean()
    assert 0.22 < dropped < 0.38
    delivered = sends[sends.fate != "dropped"]
    wait_until(lambda: r.received.remote().result() == sorted(r.received.remote().result()))
    wait_until(lambda: len(r.received.remote().result()) == len(delivered))


def test_delay_reorders_and_duplicate_doubles(cluster, path):
    r = cluster.spawn(Relay, name="r", worker="w0")
    cluster.set_network(delay=(0.0, 0.05), link=path.link)
    path.send_each("r", "receive", [(i,) for i in range(40)])
    wait_until(lambda: len(r.received.remote().result()) == 40)
    got = r.received.remote().result()
    assert sorted(got) == list(range(40)) and got != list(range(40))
    assert "delayed" in set(path.trace("r")["fate"])
    cluster.set_network(duplicate=1.0, link=path.link)
    r2 = cluster.spawn(Relay, name="r2", worker="w0")
    path.send("r2", "receive", "x")
    wait_until(lambda: r2.received.remote().result() == ["x", "x"])
    assert path.call("r2", "received").result() == ["x", "x"]  # a duplicated reply resolves once


def test_a_delayed_message_does_not_hold_back_the_next(cluster, path):
    r = cluster.spawn(Relay, name="r", worker="w0")
    cluster.set_network(delay=0.5, link=(path.src, "r"))
    path.send("r", "receive", "late")
    cluster.set_network(link=(path.src, "r"))
    start = time.monotonic()
    path.send("r", "receive", "early")
    wait_until(lambda: r.received.remote().result() == ["early"], timeout=0.4)
    assert time.monotonic() - start < 0.4
    wait_until(lambda: r.received.remote().result() == ["early", "late"])


def test_per_link_faults_leave_other_links_alone(cluster, path):
    cluster.spawn(Counter, name="a", worker="w0")
    cluster.spawn(Counter, name="b", worker="w0")
    cluster.set_network(drop=1.0, link=(path.src, "a"))
    with pytest.raises(ActorTimeoutError):
        path.call("a", "incr").result(timeout=0.2)
    assert path.call("b", "incr").result() == 1
    cluster.set_network(drop=0.0, link=(path.src, "a"))
    assert path.call("a", "value").result() == 0


def test_status_and_trace_frames(cluster, path):
    cluster.spawn(Counter, name="c0", worker="w0")
    for _ in range(3):
        path.call("c0", "incr").result()
    status = cluster.status()
    assert list(status.columns) == ["name", "class", "worker", "pid", "state", "restarts",
                                    "queue", "msgs_in", "msgs_out"]
    row = status.set_index("name").loc["c0"]
    assert (row["class"], row["msgs_in"], row["msgs_out"], row["queue"]) == ("Counter", 3, 3, 0)
    trace = cluster.trace()
    assert list(trace.columns) == ["time", "kind", "src", "dst", "method", "bytes", "fate"]
    assert trace["time"].is_monotonic_increasing
    between = path.trace("c0")
    assert between["kind"].tolist() == ["call", "reply"] * 3
    assert between["src"].tolist() == [path.src, "c0"] * 3
    assert set(between["fate"]) == {"delivered"}
    assert len(cluster.trace(2)) == 2
    links = cluster.links().set_index(["src", "dst"])
    assert links.loc[(path.src, "c0"), "messages"] == links.loc[("c0", path.src), "messages"] == 3
    assert links.loc[(path.src, "c0"), "bytes"] == between[between.kind == "call"]["bytes"].sum()


def test_queue_depth_counts_waiting_messages(cluster, path):
    cluster.spawn(Counter, name="c0", worker="w0")
    path.send("c0", "sleep", 0.5)
    path.send("c0", "incr", 1, times=5)
    assert cluster.status().set_index("name").loc["c0", "queue"] >= 5
    wait_until(lambda: cluster.status().set_index("name").loc["c0", "queue"] == 0)


@pytest.mark.parametrize("kind", ["routed", "direct"])
def test_trace_is_bounded(backend, kind):
    with Cluster(2, backend=backend, trace_size=50) as cl:
        cl.spawn(Counter, name="c", worker="w0")
        path = Path(cl, kind)
        for _ in range(100):
            path.call("c", "incr").result()
        assert len(cl.trace()) == 50


def _fates(backend: str, seed: int, kind: str, crosstalk: bool) -> list[str]:
    with Cluster(2, backend=backend, seed=seed, echo=False) as cl:
        cl.spawn(Relay, name="r", worker="w0")
        cl.spawn(Relay, name="q", worker="w0")
        path = Path(cl, kind)
        cl.set_network(drop=0.4, duplicate=0.2, link=path.link)
        for i in range(20):
            if crosstalk:  # traffic on another link draws from that link's RNG only
                path.send("q", "receive", i, times=3)
            path.send("r", "receive", i, times=5)
        sends = path.trace("r")
        return sends[sends.kind == "send"]["fate"].tolist()


@pytest.mark.parametrize("kind", ["routed", "direct"])
def test_fates_are_reproducible_from_the_seed_per_link(backend, kind):
    first = _fates(backend, 11, kind, crosstalk=False)
    assert len(first) >= 100 and {"dropped", "delivered", "duplicated"} <= set(first)
    assert _fates(backend, 11, kind, crosstalk=True) == first
    assert _fates(backend, 12, kind, crosstalk=False) != first


def test_network_settings_are_validated(cluster):
    cluster.spawn(Counter, name="a")
    with pytest.raises(ValueError, match="drop must be a probability"):
        cluster.set_network(drop=1.5)
    with pytest.raises(ValueError, match="delay must satisfy"):
        cluster.set_network(delay=(0.2, 0.1))
    with pytest.raises(ClusterError, match="neither a worker"):
        cluster.partition(["a"], ["nobody"])
    with pytest.raises(ValueError, match="more than one partition group"):
        cluster.partition(["a"], ["a"])
    with pytest.raises(ValueError, match="at least two groups"):
        cluster.partition(["a"])


def test_run_and_execute_on_every_worker(cluster):
    results = cluster.run(os.getpid)
    assert set(results) == {"w0", "w1"}
    assert len({r.get() for r in results.values()}) == 2
    cluster.execute("x = 41")
    out = cluster.execute("print('hi from', worker)\nx + 1", targets=["w1"])
    assert out["w1"].get() == 42 and out["w1"].stdout == "hi from w1\n"
    bad = cluster.execute("1/0")
    assert all(isinstance(r.error, ZeroDivisionError) for r in bad.values())
    with pytest.raises(SyntaxError):
        cluster.execute("def (")


def test_stop_ends_the_workers_and_later_calls_are_refused(backend):
    cl = Cluster(1, backend=backend, trace_size=50)
    c = cl.spawn(Counter)
    cl.gather([c.incr.remote() for _ in range(100)])
    pid = c.pid.remote().result()
    pending = c.sleep.remote(60)
    cl.stop()
    wait_until(lambda: not pid_alive(pid))
    with pytest.raises(ClusterError, match="stopped"):
        pending.result(timeout=5)
    with pytest.raises(ClusterError, match="stopped"):
        cl.spawn(Counter)
    with pytest.raises(ActorDiedError):
        c.incr.remote().result()
    assert len(cl.trace()) == 50  # still readable after stop
    cl.stop()  # idempotent


def test_pause_of_dead_worker_is_refused(cluster):
    cluster.spawn(Counter, name="c0")
    cluster.kill("c0")
    with pytest.raises(ActorDiedError, match="restart"):
        cluster.pause("c0")


def test_ctrl_c_style_sigint_does_not_kill_workers(cluster):
    c = cluster.spawn(Counter, name="c0")
    os.kill(c.pid.remote().result(), signal.SIGINT)
    assert c.incr.remote().result() == 1


def test_actor_calling_a_dead_actor_gets_an_error_not_a_hang(cluster):
    c = cluster.spawn(Counter, name="c", worker="w0")
    r = cluster.spawn(Relay, name="r", worker="w1")
    cluster.kill("c")
    with pytest.raises(ActorDiedError, match="'c' is dead"):
        r.call.remote(c, 1).result(timeout=5)
    last = cluster.trace()[lambda t: (t.src == "r") & (t.dst == "c")].iloc[-1]
    assert last["fate"] == "dropped"


def test_arguments_that_cannot_be_rebuilt_give_an_error_not_a_dead_actor(cluster):
    class Unloadable:
        def __reduce__(self):
            return (_refuse_to_load, ())

    c = cluster.spawn(Counter, name="c0")
    with pytest.raises(RuntimeError, match="cannot be rebuilt"):
        c.incr.remote(Unloadable()).result()
    assert c.incr.remote(1).result() == 1


def _refuse_to_load():
    raise RuntimeError("this argument cannot be rebuilt here")


def test_future_exception_returns_the_remote_error_and_none_on_success(cluster):
    c = cluster.spawn(Counter, name="c0")
    error = c.fail.remote("told to").exception(timeout=5)
    assert isinstance(error, ValueError) and "told to" in str(error)
    assert c.incr.remote().exception(timeout=5) is None


def test_a_spawn_that_times_out_fails_alone_and_its_neighbours_live_on(backend):
    with Cluster(1, backend=backend, timeout=1.0, echo=False) as c:
        b = c.spawn(Counter, name="b")
        pid = b.pid.remote().result()
        with pytest.raises(ActorTimeoutError, match="spawning 's' on w0 took longer"):
            c.spawn(SlowStart, 2.0, name="s")
        assert c.actors == ["b"]
        time.sleep(1.5)  # the slow constructor has returned on the worker meanwhile
        assert b.incr.remote().result() == 1
        assert b.pid.remote().result() == pid
        assert c.status().set_index("name").loc["b", "state"] == "alive"
        again = c.spawn(SlowStart, 0.0, name="s")  # the name is free again
        assert again.incr.remote().result() == 1


def test_timed_out_actor_to_actor_calls_leave_no_pending_futures(cluster):
    prober = cluster.spawn(Prober, name="p", worker="w0")
    cluster.spawn(Counter, name="c", worker="w1")
    cluster.set_network(drop=1.0, link=("p", "c"))
    outcomes = [prober.call_with_timeout.remote("c", 0.02).result() for _ in range(20)]
    assert outcomes == ["ActorTimeoutError"] * 20
    assert prober.pending_calls.remote().result() == 0
    cluster.set_network(drop=0.0, link=("p", "c"))
    assert prober.call_with_timeout.remote("c", 5).result() == 1
