"""Hogwild! across the cluster's processes: one worker is the serial run bit for bit, more
reach its accuracy, and the shared weights leave no descriptor or segment behind."""
import os
import threading

import numpy as np
import pytest

from mlsys_ext.cluster import ActorDiedError, Cluster
from mlsys_ext.distributed import hogwild_processes
from mlsys_ext.kernels import hogwild_sgd, sparse_classification

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, timeout=20.0) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    return sparse_classification(20_000, 2**12, 12, seed=1)


def weight_fds():
    """This process's descriptors of a hogwild weights memfd."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "mlsys_ext-hogwild" in os.readlink(f"/proc/self/fd/{fd}"):
                found.append(fd)
        except FileNotFoundError:  # the listing's own descriptor, closed since
            pass
    return found


def test_one_worker_is_the_serial_run_bit_for_bit(cluster, data):
    X, y = data
    serial = hogwild_sgd(X, y, epochs=3, lr=0.2, mode="serial", seed=5, backend="numba")
    one = hogwild_processes(cluster, X, y, workers=1, epochs=3, lr=0.2, seed=5)
    np.testing.assert_array_equal(one.weights, serial.weights)
    np.testing.assert_allclose(one.history.loss, serial.history.loss, rtol=1e-12)  # summed over other threads


@pytest.mark.parametrize("loss", ["log", "hinge"])
def test_lock_free_workers_reach_the_serial_accuracy(cluster, data, loss):
    X, y = data
    serial = hogwild_sgd(X, y, loss=loss, epochs=4, lr=0.2, mode="serial", seed=0, backend="numba")
    racing = hogwild_processes(cluster, X, y, workers=3, loss=loss, epochs=4, lr=0.2, seed=0)
    assert racing.threads == 3 and racing.mode == "hogwild" and racing.backend == "processes (local)"
    assert racing.history.accuracy.iloc[-1] >= serial.history.accuracy.iloc[-1] - 0.01
    assert list(racing.predict(X[:5])) == list(np.where(X[:5] @ racing.weights > 0, 1, 0))


def test_the_weights_leave_nothing_behind_even_when_a_worker_dies(cluster, data):
    X, y = data
    shm = set(os.listdir("/dev/shm"))
    before = set(cluster.actors)
    hogwild_processes(cluster, X, y, workers=2, epochs=1, seed=0)
    assert weight_fds() == [] and set(os.listdir("/dev/shm")) == shm
    assert set(cluster.actors) == before  # the run's actors are removed at its end

    big = sparse_classification(200_000, 2**12, 12, seed=2)
    timer = threading.Timer(1.0, cluster.kill, args=("w1",))  # mid-run: epochs of ~20 ms for several seconds
    timer.start()
    try:
        with pytest.raises(ActorDiedError):
            hogwild_processes(cluster, *big, workers=2, epochs=300)
    finally:
        timer.join()
        cluster.restart("w1")
    assert weight_fds() == [] and set(os.listdir("/dev/shm")) == shm


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(workers=0), ValueError, "workers must be a positive integer"),
    (dict(epochs=0), ValueError, "epochs must be a positive integer"),
    (dict(lr=float("nan")), ValueError, "lr must be a positive finite number"),
    (dict(loss="squared"), ValueError, "loss must be one of"),
])
def test_bad_arguments_are_refused_before_any_actor(cluster, data, kwargs, error, message):
    actors = len(cluster.actors)
    with pytest.raises(error, match=message):
        hogwild_processes(cluster, *data, **kwargs)
    assert len(cluster.actors) == actors
