"""The Ray backend on a real local Ray: the same API and behaviour as the local backend.

Starting Ray takes seconds, so the tests share one cluster (and one Ray) per
module; each test names its own actors, and the network is healed and dead
workers restarted after each test.
"""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pytest
import ray

from mlsys_ext.cluster import (ActorDiedError, ActorTimeoutError, Cluster, ClusterError, ObjectRef, RemoteError,
                               RemoteTraceback, context)
from tests.conftest import pid_alive, wait_until

from .actors import ArrayKeeper, Counter, Relay, SlowStart, Ticker

pytestmark = pytest.mark.timeout(180)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cl():
    with Cluster(3, backend="ray", timeout=10.0, seed=0) as c:
        yield c


@pytest.fixture(autouse=True)
def fresh_network_and_workers(cl):
    yield
    cl.heal()
    cl.set_network()
    for link in cl.network()["links"]:
        cl.set_network(link=link)
    live = set(cl.run(os.getpid))
    for worker in cl.workers:
        if worker not in live:
            cl.restart(worker)


def worker_pids(cluster) -> dict:
    return {w: r.get() for w, r in cluster.run(os.getpid).items()}


def row(cluster, name):
    return cluster.status().set_index("name").loc[name]


# -- calls ------------------------------------------------------------------------

def test_calls_return_values_in_order(cl):
    c = cl.spawn(Counter, 10, name="order")
    assert c.incr.remote(5).result(timeout=5) == 15
    assert cl.gather([c.incr.remote(1) for _ in range(100)]) == list(range(16, 116))


def test_workers_are_ray_processes_and_placement_is_round_robin(cl):
    handles = [cl.spawn(Counter, name=f"rr{i}") for i in range(3)]
    pids = worker_pids(cl)
    workers = list(cl.status().set_index("name").loc[["rr0", "rr1", "rr2"], "worker"])
    assert sorted(workers) == cl.workers
    assert [h.pid.remote().result() for h in handles] == [pids[w] for w in workers]
    assert os.getpid() not in pids.values()
    pinned = cl.spawn(Counter, name="pinned", worker="w2")
    assert pinned.pid.remote().result() == pids["w2"]
    assert list(row(cl, "pinned")[["class", "worker", "pid", "state"]]) == ["Counter", "w2", pids["w2"], "alive"]


def test_remote_exception_is_reraised_with_remote_traceback(cl):
    c = cl.spawn(Counter, name="raiser")
    with pytest.raises(ValueError, match="broken on purpose") as info:
        c.fail.remote("broken on purpose").result()
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in info.value.__cause__.text
    assert c.incr.remote().result() == 1  # the actor survives its own exceptions


def test_unpicklable_exception_and_unknown_method_are_reported(cl):
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a)
            self.lock = __import__("threading").Lock()

    class Raiser:
        def go(self):
            raise Odd("x", "y")

    r = cl.spawn(Raiser, name="odd")
    with pytest.raises(RemoteError, match="Odd"):
        r.go.remote().result()
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        r.nope.remote().result()


def test_arguments_that_cannot_be_rebuilt_give_an_error(cl):
    class Unloadable:
        def __reduce__(self):
            return (_refuse_to_load, ())

    c = cl.spawn(Counter, name="picky")
    with pytest.raises(RuntimeError, match="cannot be rebuilt"):
        c.incr.remote(Unloadable()).result()
    assert c.incr.remote(1).result() == 1


def _refuse_to_load():
    raise RuntimeError("this argument cannot be rebuilt here")


def test_a_spawn_that_times_out_fails_alone_and_its_neighbours_live_on(cl, monkeypatch):
    b = cl.spawn(Counter, name="timeout_b", worker="w0")
    monkeypatch.setattr(cl, "timeout", 1.0)
    with pytest.raises(ActorTimeoutError, match="spawning 'timeout_s' on w0 took longer"):
        cl.spawn(SlowStart, 2.0, name="timeout_s", worker="w0")
    assert "timeout_s" not in cl.actors
    def hosted():
        from mlsys_ext.cluster import _handle

        return list(_handle._process_runtime.actors)

    wait_until(lambda: "timeout_s" not in cl.run(hosted, targets="w0")["w0"].get(), timeout=10)
    assert b.incr.remote().result() == 1
    again = cl.spawn(SlowStart, 0.0, name="timeout_s", worker="w0")  # the name is free again
    assert again.incr.remote().result() == 1


def test_constructor_error_reaches_spawn(cl):
    class Broken:
        def __init__(self):
            raise RuntimeError("no way")

    with pytest.raises(RuntimeError, match="no way"):
        cl.spawn(Broken, name="broken")
    assert "broken" not in cl.actors


def test_notebook_style_class_travels_by_value(cl):
    class Accumulator:  # defined here, so no worker could import it
        def __init__(self, start):
            self.items = [start]

        def add(self, item):
            self.items.append(item)
            return list(self.items)

        def me(self):
            return context().name, context().worker

    a = cl.spawn(Accumulator, "a", name="notebook", worker="w1")
    assert a.add.remote("b").result() == ["a", "b"]
    assert a.me.remote().result() == ("notebook", "w1")


def test_one_way_sends_arrive_in_order(cl):
    r = cl.spawn(Relay, name="inbox")
    for i in range(50):
        r.receive.send(i)
    wait_until(lambda: r.received.remote().result() == list(range(50)))


# -- actors calling actors ----------------------------------------------------------

def test_actor_calls_actor_through_a_passed_handle(cl):
    c = cl.spawn(Counter, 100, name="callee", worker="w0")
    r = cl.spawn(Relay, name="caller", worker="w1")
    near = cl.spawn(Relay, name="neighbour", worker="w0")  # same host as the callee
    assert r.call.remote(c, 5).result() == 105
    assert near.call.remote(c, 1).result() == 106
    assert r.call_by_name.remote("callee", 1).result() == 107
    r.tell.remote(c, 10).result()
    wait_until(lambda: c.value.remote().result() == 117)
    trace = cl.trace()
    assert {"call", "send"} <= set(trace[trace.src == "caller"]["kind"])
    assert "reply" in set(trace[(trace.src == "callee") & (trace.dst == "caller")]["kind"])


def test_handles_returned_by_actors_work_in_the_driver(cl):
    class Maker:
        def peer(self):
            return context().handle("made")

    c = cl.spawn(Counter, name="made")
    m = cl.spawn(Maker, name="maker")
    peer = m.peer.remote().result()
    assert peer == c
    assert peer.incr.remote(2).result() == 2


def test_timers_drive_an_actor(cl):
    t = cl.spawn(Ticker, name="ticker")
    t.start.remote(5, 0.01).result()
    wait_until(lambda: t.count.remote().result() == 5)
    t.arm_and_cancel.remote().result()
    t.start.remote(1, 0.05).result()  # due after the cancelled timer: had that fired, it ran first
    wait_until(lambda: t.count.remote().result() >= 6)
    assert t.count.remote().result() == 6


def test_print_reaches_logs_and_the_driver(cl, capsys):
    c = cl.spawn(Counter, name="loud")
    assert c.shout.remote("hello from the actor").result() == 20
    assert "hello from the actor\n" in cl.logs("loud")
    wait_until(lambda: "(loud) hello from the actor" in capsys.readouterr().out)


# -- network faults -------------------------------------------------------------------

def test_drop_all_then_none(cl):
    c = cl.spawn(Counter, name="dropped")
    cl.set_network(drop=1.0)
    with pytest.raises(ActorTimeoutError, match="dropped"):
        c.incr.remote().result(timeout=0.5)
    cl.set_network(drop=0.0)
    assert c.value.remote().result() == 0  # the dropped request never ran
    fates = cl.trace()[lambda t: t.dst == "dropped"]["fate"].tolist()
    assert fates[0] == "dropped" and fates[-1] == "delivered"


def test_partition_cuts_between_groups_only(cl):
    class Asker:
        def ask(self, other, timeout):
            return other.incr.remote(1).result(timeout=timeout)

    a = cl.spawn(Counter, name="island", worker="w0")
    r = cl.spawn(Asker, name="asker", worker="w1")
    cl.partition(["island"], ["asker"])
    with pytest.raises(ActorTimeoutError):
        r.ask.remote(a, 0.5).result()  # the asker's own wait times out, inside the actor
    assert a.value.remote().result() == 0  # the driver is in no group: still reaches the island
    cl.heal()
    assert r.ask.remote(a, 5).result() == 1
    cut = cl.trace()[lambda t: (t.src == "asker") & (t.dst == "island")]
    assert "dropped" in set(cut["fate"])


def test_partition_by_worker_and_driver(cl):
    a = cl.spawn(Counter, name="cutoff", worker="w2")
    cl.partition(["driver"], ["w2"])
    with pytest.raises(ActorTimeoutError):
        a.incr.remote().result(timeout=0.5)
    cl.heal()
    assert a.value.remote().result() == 0


def test_delay_and_duplicate(cl):
    r = cl.spawn(Relay, name="slowpost")
    cl.set_network(delay=(0.0, 0.05))
    for i in range(40):
        r.receive.send(i)
    wait_until(lambda: len(r.received.remote().result()) == 40)
    assert sorted(r.received.remote().result()) == list(range(40))
    assert "delayed" in set(cl.trace()[lambda t: t.dst == "slowpost"]["fate"])
    cl.set_network(duplicate=1.0)
    twice = cl.spawn(Relay, name="twice")
    twice.receive.send("x")
    wait_until(lambda: twice.received.remote().result() == ["x", "x"])


def test_per_link_faults_leave_other_links_alone(cl):
    a = cl.spawn(Counter, name="linked")
    b = cl.spawn(Counter, name="unlinked")
    cl.set_network(drop=1.0, link=("driver", "linked"))
    with pytest.raises(ActorTimeoutError):
        a.incr.remote().result(timeout=0.5)
    assert b.incr.remote().result() == 1
    cl.set_network(drop=0.0, link=("driver", "linked"))
    assert a.value.remote().result() == 0


def test_network_settings_are_validated(cl):
    cl.spawn(Counter, name="valid")
    with pytest.raises(ValueError, match="drop must be a probability"):
        cl.set_network(drop=1.5)
    with pytest.raises(ValueError, match="delay must satisfy"):
        cl.set_network(delay=(0.2, 0.1))
    with pytest.raises(ClusterError, match="neither a worker"):
        cl.partition(["valid"], ["nobody"])
    with pytest.raises(ValueError, match="more than one partition group"):
        cl.partition(["valid"], ["valid"])


# -- process faults --------------------------------------------------------------------

def test_kill_fails_pending_and_new_calls_at_once(cl):
    c = cl.spawn(Counter, name="doomed")
    slow = c.sleep.remote(60)
    cl.kill("doomed")
    with pytest.raises(ActorDiedError):
        slow.result(timeout=5)
    with pytest.raises(ActorDiedError, match="restart it"):
        c.incr.remote().result(timeout=5)
    with pytest.raises(ActorDiedError):
        c.incr.send()
    assert row(cl, "doomed")["state"] == "dead"


def test_kill_by_worker_kills_every_actor_on_it_and_placement_skips_it(cl):
    a = cl.spawn(Counter, name="k_a", worker="w1")
    b = cl.spawn(Counter, name="k_b", worker="w1")
    other = cl.spawn(Counter, name="k_o", worker="w2")
    pid = worker_pids(cl)["w1"]
    cl.kill("w1")
    states = cl.status().set_index("name")["state"]
    assert states["k_a"] == states["k_b"] == "dead" and states["k_o"] == "alive"
    assert other.incr.remote().result() == 1
    for h in (a, b):
        with pytest.raises(ActorDiedError):
            h.incr.remote().result()
    wait_until(lambda: not pid_alive(pid))
    placed = [cl.spawn(Counter, name=f"k_n{i}") for i in range(3)]
    assert "w1" not in set(cl.status().set_index("name").loc[[h.name for h in placed], "worker"])


def test_max_restarts_rebuilds_from_original_arguments(cl):
    c = cl.spawn(Counter, 10, name="phoenix", max_restarts=1)
    first_pid = c.pid.remote().result()
    c.incr.remote(5).result()
    cl.kill("phoenix")
    assert c.incr.remote(0).result(timeout=60) == 10  # held until it is back, state reset
    assert c.pid.remote().result() != first_pid
    wait_until(lambda: not pid_alive(first_pid))
    assert tuple(row(cl, "phoenix")[["state", "restarts"]]) == ("alive", 1)
    cl.kill("phoenix")  # no restarts left
    with pytest.raises(ActorDiedError):
        c.incr.remote().result(timeout=5)


def test_restart_brings_a_dead_worker_back(cl):
    c = cl.spawn(Counter, 3, name="lazarus")
    cl.kill("lazarus")
    cl.restart("lazarus")
    assert c.incr.remote(1).result() == 4
    assert row(cl, "lazarus")["restarts"] == 1


def test_actor_calling_a_dead_actor_gets_an_error_not_a_hang(cl):
    c = cl.spawn(Counter, name="gone", worker="w0")
    r = cl.spawn(Relay, name="mourner", worker="w1")
    cl.kill("gone")
    with pytest.raises(ActorDiedError, match="'gone' is dead"):
        r.call.remote(c, 1).result(timeout=5)
    last = cl.trace()[lambda t: (t.src == "mourner") & (t.dst == "gone")].iloc[-1]
    assert last["fate"] == "dropped"


def test_pause_freezes_and_resume_delivers(cl):
    c = cl.spawn(Counter, name="frozen")
    pid = c.pid.remote().result()
    cl.pause("frozen")
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[-1].split()[0] == "T"  # stopped by SIGSTOP
    assert row(cl, "frozen")["state"] == "paused"
    pending = c.incr.remote(1)
    with pytest.raises(ActorTimeoutError, match="paused"):
        c.incr.remote(1).result(timeout=0.3)
    assert not pending.done()
    cl.resume("frozen")
    assert pending.result(timeout=10) == 1
    assert c.value.remote().result() == 2  # both calls ran after resume


def test_pause_of_a_dead_worker_is_refused(cl):
    cl.spawn(Counter, name="stiff")
    cl.kill("stiff")
    with pytest.raises(ActorDiedError, match="restart"):
        cl.pause("stiff")


def test_misuse_is_reported_clearly(cl):
    c = cl.spawn(Counter, name="calm")
    with pytest.raises(ClusterError, match="no actor named 'ghost'"):
        cl.handle("ghost")
    with pytest.raises(TypeError, match=r"\.remote"):
        c.incr(1)


# -- observation ---------------------------------------------------------------------

def test_status_and_trace_frames(cl):
    c = cl.spawn(Counter, name="watched")
    for _ in range(3):
        c.incr.remote().result()
    status = cl.status()
    assert list(status.columns) == ["name", "class", "worker", "pid", "state", "restarts",
                                    "queue", "msgs_in", "msgs_out"]
    r = status.set_index("name").loc["watched"]
    assert (r["class"], r["msgs_in"], r["msgs_out"], r["queue"]) == ("Counter", 3, 3, 0)
    trace = cl.trace()
    assert list(trace.columns) == ["time", "kind", "src", "dst", "method", "bytes", "fate"]
    mine = trace[(trace.src == "watched") | (trace.dst == "watched")]
    assert mine["kind"].tolist() == ["call", "reply"] * 3
    assert set(mine["fate"]) == {"delivered"}
    assert len(cl.trace(2)) == 2
    links = cl.links().set_index(["src", "dst"])
    assert links.loc[("driver", "watched"), "messages"] == 3 and links.loc[("watched", "driver"), "messages"] == 3
    assert links.loc[("driver", "watched"), "bytes"] == mine[mine.kind == "call"]["bytes"].sum()
    with pytest.raises(ClusterError, match="Ray's object store"):
        cl.shared_memory()


def test_queue_depth_counts_waiting_messages(cl):
    c = cl.spawn(Counter, name="busy")
    cl.pause("busy")
    for _ in range(5):
        c.incr.send(1)
    assert row(cl, "busy")["queue"] == 5
    cl.resume("busy")
    wait_until(lambda: row(cl, "busy")["queue"] == 0)
    assert c.value.remote().result() == 5


def test_run_and_execute_on_every_worker(cl):
    results = cl.run(os.getpid)
    assert set(results) == set(cl.workers)
    assert len({r.get() for r in results.values()}) == 3
    cl.execute("x = 41")
    out = cl.execute("print('hi from', worker)\nx + 1", targets=["w1"])
    assert out["w1"].get() == 42 and out["w1"].stdout == "hi from w1\n"
    bad = cl.execute("1/0")
    assert all(isinstance(r.error, ZeroDivisionError) for r in bad.values())
    with pytest.raises(SyntaxError):
        cl.execute("def (")


def test_ray_listens_on_loopback_only(cl):
    me = psutil.Process()
    ray_processes = [p for p in me.children(recursive=True) if p.name() in ("raylet", "gcs_server")]
    assert ray_processes, "this module's cluster should have started Ray itself"
    for p in [me] + me.children(recursive=True):
        try:
            connections = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening = [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]
        assert all(ip in LOOPBACK for ip in listening), (p.name(), listening)


def test_address_is_validated_before_anything_starts(cl):
    with pytest.raises(ValueError, match="address must be"):
        Cluster(1, backend="ray", address=5)
    with pytest.raises(ClusterError, match="connected to Ray"):
        Cluster(1, backend="ray", address="192.0.2.1:6379")


# -- lifetime -----------------------------------------------------------------------------

def test_a_second_cluster_shares_ray_and_stop_leaves_no_host(cl):
    mine = cl.spawn(Counter, 7, name="bystander")
    second = Cluster(2, backend="ray", trace_size=50)
    c = second.spawn(Counter, name="brief")
    second.gather([c.incr.remote() for _ in range(100)])
    assert len(second.trace()) == 50
    pids = list(worker_pids(second).values())
    pending = c.sleep.remote(60)
    second.stop()
    assert not [p for p in pids if pid_alive(p)]
    with pytest.raises(ClusterError, match="stopped"):
        pending.result(timeout=5)
    with pytest.raises(ActorDiedError):
        c.incr.remote().result()
    with pytest.raises(ClusterError, match="stopped"):
        second.spawn(Counter)
    assert len(second.trace()) == 50  # still readable after stop
    second.stop()  # idempotent
    assert ray.is_initialized() and mine.value.remote().result() == 7  # the first cluster runs on


_VISITOR = """
import json, os, sys, ray
from mlsys_ext.cluster import Cluster
from tests.cluster.actors import Counter

report = {}
with Cluster(2, backend="ray", address=sys.argv[1]) as cl:
    c = cl.spawn(Counter, name="visitor")
    report["call"] = c.incr.remote(3).result()
    cl.pause("visitor")  # allowed: the hosts run on this machine
    cl.resume("visitor")
    report["after_pause"] = c.incr.remote(1).result()
    report["pids"] = [r.get() for r in cl.run(os.getpid).values()]
report["disconnected"] = not ray.is_initialized()
print(json.dumps(report))
"""


def test_address_connects_to_a_running_ray_and_leaves_it_running(cl):
    address = ray.get_runtime_context().gcs_address
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_VISITOR), address], cwd=ROOT,
                         capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    pids = report.pop("pids")
    assert report == {"call": 3, "after_pause": 4, "disconnected": True}
    wait_until(lambda: not [p for p in pids if pid_alive(p)])
    assert cl.spawn(Counter, name="host_of_the_visit").incr.remote().result() == 1  # our Ray runs on


_DRIVER = """
import json, os, time, ray, psutil
from mlsys_ext.cluster import Cluster
from tests.cluster.actors import Counter

def running(pids):
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]

report = {}
cl = Cluster(2, backend="ray")
cl.spawn(Counter).incr.remote().result()
started = [p.pid for p in psutil.Process().children(recursive=True)]
cl.pause("w1")  # a frozen host must die too
cl.stop()
report["owned_shut_down"] = not ray.is_initialized()
deadline = time.monotonic() + 30
while running(started) and time.monotonic() < deadline:
    time.sleep(0.1)
report["left"] = running(started)

ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")  # the user's own Ray
with Cluster(1, backend="ray") as cl:
    report["users_ray_works"] = cl.spawn(Counter).incr.remote(2).result() == 2
report["users_ray_kept"] = ray.is_initialized()
ray.shutdown()
print(json.dumps(report))
"""


@pytest.mark.timeout(300)
def test_stop_shuts_down_the_ray_it_started_and_only_that(cl):
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # the user's Ray on loopback too
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_DRIVER)], cwd=ROOT, capture_output=True,
                         text=True, timeout=280, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"owned_shut_down": True, "left": [], "users_ray_works": True, "users_ray_kept": True}


def test_magic_starts_a_ray_cluster_on_the_same_ray(cl, ipython):
    ipython.run_line_magic("load_ext", "mlsys_ext")
    magics = ipython.magics_manager.registry["MlsysMagics"]
    try:
        cluster = ipython.run_line_magic("cluster", "start 2 --backend ray")
        assert (cluster.backend, cluster.n) == ("ray", 2)
        assert cluster.spawn(Counter, name="magic").incr.remote(3).result() == 3
        assert ipython.run_line_magic("cluster", "status").loc[0, "state"] == "alive"
        ipython.run_line_magic("cluster", "stop")
        assert cluster.stopped and ray.is_initialized()  # the module's cluster still uses this Ray
    finally:
        if magics.current is not None:
            magics.current.stop()
            magics.current = None


# -- one Ray call per message, refs in Ray's object store ---------------------------

def test_a_sync_call_is_one_ray_actor_call_and_the_driver_decides_its_fate(cl, monkeypatch):
    counter = cl.spawn(Counter, name="one-ray-call", worker="w0")
    counter.incr.remote(1).result()
    submitted = []
    submit = ray.actor.ActorMethod.remote

    def counted(method, *args, **kwargs):
        if method._method_name != "poll":  # the driver's background poll of counters
            submitted.append(method._method_name)
        return submit(method, *args, **kwargs)

    monkeypatch.setattr(ray.actor.ActorMethod, "remote", counted)
    assert counter.incr.remote(1).result(timeout=5) == 2
    monkeypatch.undo()
    assert submitted == ["deliver"]
    decided_here = [row for row in cl._net.trace if row[2] == "driver" and row[3] == "one-ray-call"]
    assert [row[6] for row in decided_here[-1:]] == ["delivered"]


def test_put_is_in_ray_s_store_and_actors_get_the_object_read_only(cl):
    array = np.arange(1_000_000, dtype=np.float64) + 1e6
    ref = cl.put(array)
    assert isinstance(ref, ObjectRef) and "in Ray" in repr(ref)
    readers = [cl.spawn(ArrayKeeper, name=f"reader{i}") for i in range(3)]
    described = cl.gather([r.describe.remote(ref) for r in readers])
    assert [(d["sum"], d["writeable"]) for d in described] == [(float(array.sum()), False)] * 3
    assert np.array_equal(ref.get(), array)
    with pytest.raises(TypeError, match="travels only inside"):
        pickle.dumps(ref)


def test_refs_are_released_at_stop():
    with Cluster(1, backend="ray", timeout=10.0) as c:
        ref = c.put(b"x" * 1000)
        assert ref.get() == b"x" * 1000
    with pytest.raises(ValueError, match="released when its cluster stopped"):
        ref.get()
