"""Data-parallel SGD on the cluster: the synchronous modes equal the single-process run on
the same batches (as CS336 checks DDP), the asynchronous one never exceeds its staleness
bound, compression moves the bytes its formula says, and bad arguments cost nothing."""
import numpy as np
import pytest

from mlsys_ext.cluster import Cluster
from mlsys_ext.distributed import data_parallel_sgd, sequential_sgd
from mlsys_ext.distributed._data_parallel import batches

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, timeout=20.0, seed=0) as c:
        yield c


def problem(n=1_200, d=12, loss="log", seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + offset
    w = rng.standard_normal(d)
    margins = (X - offset) @ w + 0.3 * rng.standard_normal(n)
    return X, ((margins > 0).astype(float) if loss == "log" else margins)


def test_batches_give_each_worker_its_own_shard_once_an_epoch():
    rounds = batches(103, 3, 10, 2, seed=1)
    assert len(rounds) == 2 * (34 // 10)  # the smallest shard (34 rows) sets the rounds of an epoch
    first_epoch = np.concatenate([np.concatenate(r) for r in rounds[:3]])
    assert len(set(first_epoch)) == len(first_epoch)
    for k, shard in enumerate([range(0, 34), range(34, 68), range(68, 103)]):
        assert all(set(r[k]) <= set(shard) for r in rounds)


@pytest.mark.parametrize("sync", ["allreduce", "ps"])
@pytest.mark.parametrize("loss", ["log", "squared"])
@pytest.mark.parametrize("workers", [1, 3, 4])
def test_synchronous_modes_equal_the_sequential_run(cluster, sync, loss, workers):
    X, y = problem(loss=loss, offset=3.0 if loss == "squared" else 0.0)
    lr = 0.5 if loss == "log" else 0.005  # the offset features make the squared loss steep
    want_w, want_losses = sequential_sgd(X, y, workers, loss=loss, lr=lr, epochs=2, batch_size=16, seed=3)
    res = data_parallel_sgd(cluster, X, y, workers, sync=sync, loss=loss, lr=lr, epochs=2, batch_size=16, seed=3)
    np.testing.assert_allclose(res.weights, want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.history.loss, want_losses, rtol=1e-10)
    assert res.history.loss.iloc[-1] < res.history.loss.iloc[0]
    assert res.staleness_violations == 0


@pytest.mark.parametrize("sync", ["allreduce", "ps"])
def test_a_run_removes_its_actors_at_its_end(cluster, sync):
    before = set(cluster.actors)
    X, y = problem()
    data_parallel_sgd(cluster, X, y, 2, sync=sync, batch_size=20)
    assert set(cluster.actors) == before


def test_the_tree_all_reduce_trains_alike(cluster):
    X, y = problem()
    ring = data_parallel_sgd(cluster, X, y, 3, algorithm="ring", batch_size=20)
    tree = data_parallel_sgd(cluster, X, y, 3, algorithm="tree", batch_size=20)
    np.testing.assert_allclose(ring.weights, tree.weights, rtol=1e-12)


@pytest.mark.parametrize("staleness", [0, 1, 3])
def test_async_never_exceeds_its_staleness_bound_even_with_a_slow_worker(cluster, staleness):
    X, y = problem()
    cluster.set_network(delay=(0.0, 0.004))  # every message a few ms late at random: workers drift apart
    try:
        res = data_parallel_sgd(cluster, X, y, 4, sync="async", staleness=staleness, epochs=2, batch_size=20)
    finally:
        cluster.set_network()
    ahead = res.pulls["round"] - res.pulls.slowest
    assert res.staleness_violations == 0 and ahead.max() <= staleness
    assert len(res.pulls) == 4 * len(res.history)  # every worker pulled every round
    assert res.history.loss.iloc[-1] < 0.9 * res.history.loss.iloc[0]


def test_jitter_lets_async_workers_run_ahead_within_the_bound_and_leaves_sync_exact(cluster):
    X, y = problem()
    want_w, _ = sequential_sgd(X, y, 4, batch_size=20, seed=5)
    for sync in ("allreduce", "ps"):
        res = data_parallel_sgd(cluster, X, y, 4, sync=sync, batch_size=20, jitter=0.004, seed=5)
        np.testing.assert_allclose(res.weights, want_w, rtol=1e-10, atol=1e-12)
    res = data_parallel_sgd(cluster, X, y, 4, sync="async", staleness=2, batch_size=20, jitter=0.004, seed=5)
    ahead = res.pulls["round"] - res.pulls.slowest
    assert res.staleness_violations == 0 and ahead.max() == 2  # uneven workers use all the slack they have


@pytest.mark.parametrize("sync, compression", [("allreduce", None), ("ps", None), ("ps", "fp16"),
                                               ("async", "topk"), ("async", "fp16")])
def test_bytes_per_round_equal_the_formula(cluster, sync, compression):
    X, y = problem(d=40)
    res = data_parallel_sgd(cluster, X, y, 4, sync=sync, compression=compression, staleness=1 if sync == "async" else 0,
                            topk=0.1, batch_size=25)
    assert res.bytes_per_round == res.formula_bytes_per_round
    assert res.history.bytes.gt(0).all()


def test_compression_still_converges_near_the_uncompressed_run(cluster):
    X, y = problem(n=2_000, d=30)
    plain = data_parallel_sgd(cluster, X, y, 4, sync="ps", epochs=3, batch_size=25)
    half = data_parallel_sgd(cluster, X, y, 4, sync="ps", compression="fp16", epochs=3, batch_size=25)
    sparse = data_parallel_sgd(cluster, X, y, 4, sync="ps", compression="topk", topk=0.2, epochs=3, batch_size=25)
    assert half.history.loss.iloc[-1] == pytest.approx(plain.history.loss.iloc[-1], rel=1e-3)
    assert sparse.history.loss.iloc[-1] < 1.1 * plain.history.loss.iloc[-1]  # error feedback keeps what top-k left
    # pushes: 6 of 30 coordinates as (int64, float64) pairs, against 30 float64s; pulls stay dense
    assert (sparse.bytes_per_round, plain.bytes_per_round) == (4 * (6 * 16 + 30 * 8), 4 * (30 * 8 + 30 * 8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sync="gossip"), "sync must be one of allreduce, ps, async"),
    (dict(compression="topk"), "compression is for the parameter-server modes"),
    (dict(sync="ps", staleness=2), "staleness bounds the asynchronous mode only"),
    (dict(workers=0), "workers must be an integer >= 1"),
    (dict(batch_size=1_000), "cannot give 2 workers a batch of 1000 each"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(sync="async", topk=2.0, compression="topk"), "topk is a share of the coordinates"),
    (dict(loss="hinge"), "loss must be one of log, squared"),
    (dict(jitter=-0.1), "jitter must be from 0 to 1 second"),
])
def test_bad_arguments_are_refused_before_any_actor(cluster, kwargs, message):
    X, y = problem(n=1_000)
    actors = len(cluster.actors)
    with pytest.raises(ValueError, match=message):
        data_parallel_sgd(cluster, X, y, **({"workers": 2} | kwargs))
    assert len(cluster.actors) == actors


def test_bad_data_is_refused():
    with Cluster(1) as cluster:
        X, y = problem(n=100)
        with pytest.raises(ValueError, match="labels 0 and 1"):
            data_parallel_sgd(cluster, X, y * 2, batch_size=10)
        X[3, 1] = np.nan
        with pytest.raises(ValueError, match="must be finite"):
            data_parallel_sgd(cluster, X, y, batch_size=10)
        assert cluster.actors == []
