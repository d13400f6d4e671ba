import time

import pytest


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``predicate`` until it is truthy; fail the test if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    from mlsys_ext.cluster._process import process_state

    return process_state(pid) not in (None, "Z")


SPLIT_FROM = 1 << 12  # keys from which a batch runs split over threads, in tests that force it


@pytest.fixture
def split_from(monkeypatch):
    """Batches of SPLIT_FROM keys or more run split over numba's threads and smaller ones
    serially, whatever threshold this machine measured: so tests cover both paths."""
    monkeypatch.setenv("MLSYS_PARALLEL_MIN_KEYS", str(SPLIT_FROM))
    return SPLIT_FROM


@pytest.fixture
def cluster():
    from mlsys_ext.cluster import Cluster

    with Cluster(2, timeout=10.0, seed=0) as c:
        yield c



@pytest.fixture
def ipython():
    """The test InteractiveShell (one per process, as in a kernel)."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    return start_ipython() or get_ipython()
