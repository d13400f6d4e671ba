"""Large arrays in calls and replies travel through shared memory (a memfd beside the frame), on every
path and under every network fault, and leave no descriptor or mapping behind."""
import gc
import os

import numpy as np
import pytest

from mlsys_ext.cluster import Cluster
from tests.conftest import wait_until

from .actors import ArrayKeeper, SharingPeer
from .paths import PATHS, Path

BIG = 1 << 20  # float32 elements: 4 MiB, well above the 256 KiB threshold


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fds_without_pools(cluster) -> tuple[int, dict]:
    """Descriptors the driver and each worker hold, once their pools of message memfds are
    emptied: what is left is held by someone (a lent memfd's receiver holds its own descriptor)."""
    def clear_and_count():
        from mlsys_ext.cluster._shm import pool

        pool.clear()
        return len(os.listdir("/proc/self/fd"))

    return clear_and_count(), {w: r.get() for w, r in cluster.run(clear_and_count).items()}


@pytest.fixture
def pair():
    with Cluster(2, timeout=20.0, seed=0, echo=False) as c:
        yield c, c.spawn(SharingPeer, name="a", worker="w0"), c.spawn(SharingPeer, name="b", worker="w1")


def test_a_large_argument_arrives_as_a_read_only_view_of_shared_memory(pair):
    _, a, _ = pair
    array = np.arange(BIG, dtype=np.float32)
    seen = a.describe.remote(array).result()
    assert seen == {"sum": float(array.sum()), "shape": (BIG,), "writeable": False, "mapped": True}
    small = a.describe.remote(np.arange(100, dtype=np.float32)).result()
    assert small["mapped"] is False and small["writeable"] is True, "small arrays stay in the message"


@pytest.mark.parametrize("make", [
    lambda: np.arange(BIG, dtype=np.float64).reshape(1024, -1),
    lambda: np.asfortranarray(np.arange(BIG, dtype=np.float32).reshape(1024, -1)),
    lambda: np.arange(BIG, dtype=np.int16)[::2],  # not contiguous: pickled in the stream, still equal
    lambda: np.zeros(0, dtype=np.float32),
    lambda: np.full(BIG, np.nan),
], ids=["2-D", "fortran", "strided", "empty", "nan"])
def test_arrays_of_every_layout_round_trip_equal(pair, make):
    _, a, _ = pair
    array = make()
    back = a.echo.remote(array).result()
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype and back.shape == array.shape


def test_a_large_return_value_and_an_actor_to_actor_argument_are_shared_too(pair):
    _, a, _ = pair
    made = a.make.remote(BIG).result()
    assert made.flags.writeable is False and made[-1] == BIG - 1
    seen = a.pass_on.remote("b", np.ones(BIG, dtype=np.float32)).result()
    assert seen["mapped"] and seen["sum"] == BIG


def test_an_array_received_goes_on_as_the_same_memory_without_a_copy(pair):
    _, a, b = pair
    a.keep.remote(np.ones(BIG, dtype=np.float32)).result()
    assert a.forward_kept.remote("b").result() == 1
    inodes = a.mapped_memfds.remote().result()
    assert len(inodes) == 1 and b.mapped_memfds.remote().result() == inodes
    back = a.echo.remote(np.ones(BIG, dtype=np.float32)).result()
    assert back.base is not None and back.sum() == BIG, "a returned view comes back as shared memory"


@pytest.mark.parametrize("kind", PATHS)
def test_faults_apply_to_shared_messages_and_leak_nothing(pair, kind):
    """Routed: from the driver. Direct: the driver hands b the array, and b sends it on to a over
    their direct socket (the same memfd, beside the frame)."""
    cluster, a, b = pair
    path = Path(cluster, kind, sender="b")
    link = path.link and ("b", "a")
    array = np.ones(BIG, dtype=np.float32)
    assert path.call("a", "describe", array).result()["mapped"]  # the first call opens what later ones reuse
    baseline, workers = fds_without_pools(cluster)
    cluster.set_network(duplicate=1.0, link=link)
    path.send("a", "keep", array)
    assert wait_until(lambda: a.keep.remote(array[:10]).result() >= 3), "the send arrived twice"
    cluster.set_network(drop=1.0, link=link)
    path.send("a", "keep", array, times=5)
    cluster.set_network(delay=0.05, link=link)
    assert path.call("a", "describe", array).result()["mapped"]
    cluster.pause("a")
    held = path.call("a", "describe", array)
    cluster.resume("a")
    assert held.result()["sum"] == BIG
    cluster.set_network(link=link)
    a.forget.remote().result()
    gc.collect()
    assert wait_until(lambda: fds_without_pools(cluster)[0] <= baseline), "the driver holds no memfd"
    after = fds_without_pools(cluster)[1]
    assert all(after[w] <= workers[w] for w in workers), f"no worker holds a memfd: {workers} -> {after}"


@pytest.mark.parametrize("kind", PATHS)
def test_a_delayed_shared_message_outlives_its_sender_dropping_it(pair, kind):
    """A delayed copy keeps its memfd open (the sender let go of the array long before)."""
    cluster, a, b = pair
    path = Path(cluster, kind, sender="b")
    # 2 s: the check below that nothing has arrived must not race the delay on a slow machine
    cluster.set_network(delay=2.0, duplicate=1.0, link=(path.src, "a"))
    path.send("a", "keep", np.full(BIG, 2.0, dtype=np.float32))
    gc.collect()
    if path.kind == "direct":  # the driver's own link to a is clean
        assert a.kept_sums.remote().result() == [], "both copies are still on their way"
    assert wait_until(lambda: a.kept_sums.remote().result() == [2.0 * BIG] * 2)
    assert b.mapped_memfds.remote().result() == [], "the sender maps nothing once it has sent"


def test_shared_memory_needs_no_file_and_can_be_turned_off():
    before = set(os.listdir("/dev/shm"))
    with Cluster(1, shared_memory_threshold=None, echo=False) as c:
        keeper = c.spawn(ArrayKeeper)
        assert keeper.describe.remote(np.ones(BIG, dtype=np.float32)).result()["mapped"] is False
    with Cluster(1, echo=False) as c:
        keeper = c.spawn(ArrayKeeper)
        assert keeper.describe.remote(np.ones(BIG, dtype=np.float32)).result()["mapped"] is True
        assert set(os.listdir("/dev/shm")) == before, "memfds are anonymous: nothing in /dev/shm"
    with pytest.raises(ValueError, match="shared_memory_threshold must be a number of bytes"):
        Cluster(1, shared_memory_threshold=0)


def test_start_stop_cycles_with_shared_traffic_leave_no_descriptor():
    array = np.ones(BIG, dtype=np.float32)
    with Cluster(1, echo=False) as c:  # the first cluster loads what every later one reuses
        c.spawn(ArrayKeeper).echo.remote(array).result()
    gc.collect()
    before = open_fds()
    for _ in range(20):
        with Cluster(1, echo=False) as c:
            keeper = c.spawn(ArrayKeeper)
            assert keeper.echo.remote(array).result()[0] == 1.0
            keeper.keep.send(array)
    gc.collect()
    assert open_fds() == before


def test_a_put_array_broadcast_to_four_actors_exists_once():
    array = np.arange(16 << 20, dtype=np.float32)  # 64 MiB
    with Cluster(2, echo=False, timeout=30) as c:
        keepers = [c.spawn(ArrayKeeper, name=f"k{i}") for i in range(4)]
        ref = c.put(array)
        inode = os.fstat(ref._memory.fd).st_ino
        assert [k.keep.remote(ref).result() for k in keepers] == [1] * 4
        assert all(k.describe.remote(ref).result()["mapped"] for k in keepers)
        assert [k.mapped_memfds.remote().result() for k in keepers] == [[inode]] * 4, \
            "every actor maps the one memfd the driver wrote: the array exists once"
        got = ref.get()
        assert got.flags.writeable is False and np.array_equal(got, array)
        held = c.shared_memory()
        assert held.segments == 1 and array.nbytes <= held.bytes <= array.nbytes + 4096, \
            "five processes map it, and it is counted once"
        for k in keepers:
            k.forget.remote().result()
        assert [k.mapped_memfds.remote().result() for k in keepers] == [[]] * 4, "unmapped with the last view"
        del got, ref
        gc.collect()
        assert c.shared_memory()[:2] == (0, 0), "no segment in use"


@pytest.mark.parametrize("kind", PATHS)
def test_links_count_every_message_and_its_shared_bytes_on_both_paths(pair, kind):
    c, _, b = pair
    path = Path(c, kind, sender="a")
    before = c.links()
    array = np.arange(BIG, dtype=np.float32)
    assert path.call("b", "keep", array).result() == 1
    assert c.shared_memory().bytes >= array.nbytes, "b holds the array it keeps"
    after = c.links().set_index(["src", "dst"])
    gone = before.set_index(["src", "dst"]).reindex(after.index, fill_value=0)
    sent = after - gone
    src = "driver" if kind == "routed" else "a"
    assert sent.loc[(src, "b"), "messages"] == 1 and sent.loc[(src, "b"), "bytes"] >= array.nbytes
    assert sent.loc[("b", src), "messages"] == 1 and sent.loc[("b", src), "bytes"] < 1024, "the reply is small"
    c.kill("w1")  # b's worker, which decided (and counted) b's reply: its counts outlive it
    assert c.links().set_index(["src", "dst"]).loc[("b", src), "messages"] == after.loc[("b", src), "messages"]


def test_refs_travel_inside_structures_and_die_with_their_cluster():
    with Cluster(1, echo=False) as c:
        keeper = c.spawn(ArrayKeeper)
        ref = c.put({"weights": np.ones(1000), "step": 3})
        seen = keeper.echo.remote({"model": ref, "again": [ref]}).result()
        assert seen["model"]["step"] == 3 and seen["again"][0]["weights"].sum() == 1000
        with pytest.raises(TypeError, match="travels only inside its cluster's calls"):
            __import__("pickle").dumps(ref)
    with pytest.raises(ValueError, match="released when its cluster stopped"):
        ref.get()
