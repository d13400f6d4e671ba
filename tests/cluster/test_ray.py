"""What only the Ray backend has: Ray bound to loopback, sharing a Ray and leaving it as
found, one Ray call per message, refs in Ray's object store. The behaviour both
backends share is tested once, on both, in test_contract.py.

Starting Ray takes seconds, so the tests share one cluster (and one Ray) per module.
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

from mlsys_ext.cluster import Cluster, ClusterError, ObjectRef
from tests.conftest import pid_alive, wait_until

from .actors import ArrayKeeper, Counter

pytestmark = pytest.mark.timeout(180)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cl():
    with Cluster(3, backend="ray", timeout=10.0, seed=0) as c:
        yield c


def worker_pids(cluster) -> dict:
    return {w: r.get() for w, r in cluster.run(os.getpid).items()}


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

def test_a_second_cluster_shares_ray_and_its_stop_leaves_the_first_running(cl):
    mine = cl.spawn(Counter, 7, name="bystander")
    second = Cluster(2, backend="ray")
    assert second.spawn(Counter, name="brief").incr.remote().result() == 1
    pids = list(worker_pids(second).values())
    second.stop()
    wait_until(lambda: not [p for p in pids if pid_alive(p)])
    assert ray.is_initialized() and mine.value.remote().result() == 7


def test_shared_memory_is_refused_for_ray_s_store(cl):
    with pytest.raises(ClusterError, match="Ray's object store"):
        cl.shared_memory()


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
