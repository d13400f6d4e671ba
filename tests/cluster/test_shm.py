"""The pool of message memfds: a memfd is written again only once every process holding its lent
file has let go, receivers cannot write into it, and what the pool keeps is bounded and freed."""
import os

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mlsys_ext.cluster import Cluster
from mlsys_ext.cluster._shm import FREE_LIMIT, LENT_LIMIT, MemfdPool, capacity_for
from tests.conftest import wait_until

from .actors import ArrayKeeper, SharingPeer

BIG = 1 << 20  # float32 elements: 4 MiB


@given(st.integers(1, 1 << 34))
def test_a_size_class_holds_the_size_in_pages_with_at_most_a_quarter_to_spare(size):
    capacity = capacity_for(size)
    assert capacity >= size and capacity % 4096 == 0
    assert capacity <= 1.25 * (size + 4096)


def test_a_kept_array_is_never_overwritten_and_a_let_go_memfd_is_reused():
    with Cluster(1, echo=False, timeout=20) as c:
        keeper = c.spawn(SharingPeer)
        for value in (1.0, 2.0, 3.0):
            keeper.keep.remote(np.full(BIG, value, np.float32)).result()
        assert len(keeper.mapped_memfds.remote().result()) == 3, "each kept array in a memfd of its own"
        for value in (4.0, 5.0):  # sent and let go meanwhile, elsewhere
            assert keeper.describe.remote(np.full(BIG, value, np.float32)).result()["sum"] == value * BIG
        assert keeper.kept_sums.remote().result() == [1.0 * BIG, 2.0 * BIG, 3.0 * BIG]
        keeper.forget.remote().result()
        assert wait_until(lambda: keeper.mapped_memfds.remote().result() == [])
        held = c.shared_memory()
        assert held.segments == 0 and held.pooled_bytes >= 3 * capacity_for(4 * BIG), \
            "the driver's pool keeps the memfds let go"
        for value in (6.0, 7.0, 8.0):
            assert keeper.describe.remote(np.full(BIG, value, np.float32)).result()["sum"] == value * BIG
        after = c.shared_memory()  # the receiver may still hold the last message until its next one
        assert after.bytes + after.pooled_bytes == held.bytes + held.pooled_bytes, \
            "written into the same memfds again: no new one"


def memfd_access_modes() -> list[int]:
    import fcntl

    modes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith("/memfd:mlsys_ext"):
            modes.append(fcntl.fcntl(int(name), fcntl.F_GETFL) & os.O_ACCMODE)
    return modes


def test_receivers_get_a_read_only_file_of_the_memfd():
    with Cluster(1, echo=False) as c:
        keeper = c.spawn(ArrayKeeper)
        keeper.keep.remote(np.ones(BIG, np.float32)).result()
        modes = c.run(memfd_access_modes)["w0"].get()
        assert modes and set(modes) == {os.O_RDONLY}


def test_the_pool_is_bounded_and_clear_closes_every_descriptor():
    pool = MemfdPool()
    before = len(os.listdir("/proc/self/fd"))
    chunk = memoryview(np.ones(1 << 18, np.float32)).cast("B")  # 1 MiB
    held = [pool.write([chunk], [(0, chunk.nbytes)], chunk.nbytes) for _ in range(LENT_LIMIT + 10)]
    assert len(pool._lent) == LENT_LIMIT, "past the limit the oldest lent memfd is let go"
    assert bytes(os.pread(held[-1].fd, 8, 0)) == bytes(chunk[:8])
    del held
    pool.write([chunk], [(0, chunk.nbytes)], chunk.nbytes)  # collects what was let go
    assert pool._free_bytes == (FREE_LIMIT - 1) * capacity_for(chunk.nbytes), "FREE_LIMIT kept, one lent again"
    pool.clear()
    assert len(os.listdir("/proc/self/fd")) == before
