"""All-reduce on the actor cluster: exact sums for every algorithm, rank count and size,
payload bytes equal to the formulas, and under faults either the right sum or a clear error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys_ext.cluster import ActorTimeoutError, Cluster
from mlsys_ext.distributed import ALGORITHMS, Collective, bus_bandwidth, ring_bytes_per_rank

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, timeout=10.0, seed=0) as c:
        yield c


@pytest.fixture(scope="module")
def collectives(cluster):
    """One Collective per rank count, 1 to 8 (non-powers of two among them), made on first use."""
    made = {}

    def of(ranks):
        if ranks not in made:
            made[ranks] = Collective(cluster, ranks=ranks, servers=2)
        return made[ranks]
    return of


def integer_valued(ranks, size, dtype=np.float64, seed=0):
    """One array per rank whose float sums are exact in any order."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-1000, 1000, size).astype(dtype) for _ in range(ranks)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 5, 7, 8])
def test_every_rank_gets_the_exact_sum(collectives, algorithm, ranks):
    coll = collectives(ranks)
    for size in (0, 1, ranks + 1, 1_000, 100_003):  # empty, one element, sizes the ranks do not divide
        arrays = integer_valued(ranks, size)
        for out in coll.allreduce(arrays, algorithm):
            np.testing.assert_array_equal(out, np.sum(arrays, axis=0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranks=st.integers(1, 6), shape=st.lists(st.integers(0, 7), min_size=0, max_size=3),
       algorithm=st.sampled_from(ALGORITHMS), dtype=st.sampled_from([np.int64, np.float32, np.float64]),
       offset=st.sampled_from([0.0, 1e6]))
def test_any_shape_and_dtype_sums_like_numpy(collectives, ranks, shape, algorithm, dtype, offset):
    rng = np.random.default_rng(len(shape) * 31 + ranks)
    arrays = [(rng.integers(-50, 50, shape) + offset).astype(dtype) for _ in range(ranks)]
    for out in collectives(ranks).allreduce(arrays, algorithm):
        assert out.shape == tuple(shape) and out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.sum(arrays, axis=0, dtype=dtype))


def test_random_floats_agree_with_a_sequential_sum_to_rounding_and_nan_propagates(collectives):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(10_001).astype(np.float32) for _ in range(5)]
    arrays[2] = arrays[2][::1]  # not the caller's own buffer: the ranks work on copies
    arrays[3][7] = np.nan
    want = np.sum(np.array(arrays, dtype=np.float64), axis=0)
    for algorithm in ALGORITHMS:
        for out in collectives(5).allreduce(arrays, algorithm):
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
            assert np.isnan(out[7]) and np.isnan(out).sum() == 1


def test_non_contiguous_and_multidimensional_inputs(collectives):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = [base[:, ::2] * (r + 1) for r in range(3)]  # strided views
    for out in collectives(3).allreduce(arrays, "ring"):
        np.testing.assert_array_equal(out, base[:, ::2] * 6)


@pytest.mark.parametrize("ranks", [2, 3, 4, 7])
def test_payload_bytes_equal_the_formulas(collectives, ranks):
    coll = collectives(ranks)
    size = 840  # divisible by 2, 3, 4 and 7: the per-rank formulas hold exactly
    arrays = integer_valued(ranks, size)
    S = arrays[0].nbytes
    for algorithm in ALGORITHMS:
        coll.allreduce(arrays, algorithm)
    ring, tree, ps = coll.stats.tail(3).to_dict("records")
    assert ring["sent_bytes_per_rank"] == [ring_bytes_per_rank(S, ranks)] * ranks
    assert ring["messages"] == 2 * (ranks - 1) * ranks
    # binomial tree: every rank but the root sends its partial sum up, every parent the sum to each child
    assert sum(tree["sent_bytes_per_rank"]) == 2 * (ranks - 1) * S and tree["messages"] == 2 * (ranks - 1)
    assert tree["sent_bytes_per_rank"][0] == S * len(_children_of_root(ranks))
    # parameter server: each rank pushes S (split over the servers), the servers send S back to each
    assert ps["sent_bytes_per_rank"] == [S] * ranks and ps["server_sent_bytes"] == ranks * S
    assert ps["messages"] == 2 * 2 * ranks  # two servers


def _children_of_root(ranks):
    return [1 << i for i in range(ranks.bit_length()) if 1 << i < ranks]


def test_ring_bytes_are_exact_when_the_ranks_do_not_divide_the_size(collectives):
    arrays = integer_valued(3, 10)  # chunks of 4, 3 and 3 items
    collectives(3).allreduce(arrays, "ring")
    row = collectives(3).stats.iloc[-1]
    chunks = np.array([4, 3, 3]) * 8
    # rank r sends every chunk but (r + 1) mod n while reducing and every one but (r + 2) mod n while gathering
    assert row["sent_bytes_per_rank"] == [2 * 80 - chunks[(r + 1) % 3] - chunks[(r + 2) % 3] for r in range(3)]
    assert sum(row["sent_bytes_per_rank"]) == 2 * 2 * 80


def test_stats_follow_nccl_tests_definitions(collectives):
    coll = collectives(4)
    coll.allreduce(integer_valued(4, 4096, np.float32), "ring")
    row = coll.stats.iloc[-1]
    assert row["count"] == 4096 and row["type"] == "float32" and row["size_bytes"] == 4096 * 4
    assert row["algbw"] == pytest.approx(row["size_bytes"] / row["seconds"])
    assert row["busbw"] == pytest.approx(row["algbw"] * 2 * 3 / 4) == pytest.approx(bus_bandwidth(row["algbw"], 4))
    assert 0 < row["seconds"] <= row["call_seconds"]


def test_duplicated_and_delayed_messages_still_give_the_exact_sum(cluster, collectives):
    coll = collectives(4)
    arrays = integer_valued(4, 1_001)
    cluster.set_network(duplicate=0.5, delay=(0.0, 0.01))
    try:
        for _ in range(3):
            for algorithm in ALGORITHMS:
                for out in coll.allreduce(arrays, algorithm):
                    np.testing.assert_array_equal(out, np.sum(arrays, axis=0))
    finally:
        cluster.set_network()


def test_under_drops_a_call_gives_the_exact_sum_or_a_clear_error_never_a_wrong_sum(cluster):
    coll = Collective(cluster, ranks=3, timeout=1.0)
    arrays = integer_valued(3, 101)
    outcomes = []
    cluster.set_network(drop=0.1)
    try:
        for _ in range(6):
            for algorithm in ALGORITHMS:
                try:
                    outs = coll.allreduce(arrays, algorithm)
                except ActorTimeoutError as exc:
                    assert "did not finish within 1 s" in str(exc) and "nothing was returned" in str(exc)
                    outcomes.append("error")
                else:
                    assert all(np.array_equal(out, np.sum(arrays, axis=0)) for out in outs)
                    outcomes.append("sum")
    finally:
        cluster.set_network()
    assert "sum" in outcomes
    # after the faults, the same ranks sum again: nothing of the lost calls lingers
    for out in coll.allreduce(arrays, "ring"):
        np.testing.assert_array_equal(out, np.sum(arrays, axis=0))


@pytest.mark.parametrize("arrays, algorithm, error, message", [
    ([np.zeros(3)] * 2, "ring", ValueError, r"one array per rank \(3\), got 2"),
    ([np.zeros(3), np.zeros(3), np.zeros(4)], "ring", ValueError, "rank 2 has"),
    ([np.zeros(3), np.zeros(3), np.zeros(3, np.float32)], "ring", ValueError, "rank 2 has"),
    ([np.array(["a"])] * 3, "ring", TypeError, "numeric"),
    (np.zeros((3, 4)), "ring", TypeError, "a list of 3 arrays"),
    ([np.zeros(3)] * 3, "butterfly", ValueError, "algorithm must be one of ring, tree, ps"),
])
def test_bad_input_is_refused_before_any_message(cluster, collectives, arrays, algorithm, error, message):
    coll = collectives(3)
    calls = len(coll.stats)
    sent = len(cluster.trace())
    with pytest.raises(error, match=message):
        coll.allreduce(arrays, algorithm)
    assert len(coll.stats) == calls and len(cluster.trace()) == sent


@pytest.mark.parametrize("kwargs, message", [
    ({"ranks": 0}, "ranks must be a positive integer"),
    ({"servers": 1.5}, "servers must be a positive integer"),
    ({"timeout": -1}, "timeout must be > 0"),
])
def test_bad_settings_are_refused_before_any_actor(cluster, kwargs, message):
    actors = len(cluster.actors)
    with pytest.raises(ValueError, match=message):
        Collective(cluster, **kwargs)
    assert len(cluster.actors) == actors


def test_on_ray_every_algorithm_gives_the_exact_sum():
    with Cluster(2, backend="ray", timeout=20.0) as cluster:
        coll = Collective(cluster, ranks=3, servers=2)
        arrays = integer_valued(3, 1_001)
        for algorithm in ALGORITHMS:
            for out in coll.allreduce(arrays, algorithm):
                np.testing.assert_array_equal(out, np.sum(arrays, axis=0))
        assert sum(coll.stats.sent_bytes_per_rank.iloc[0]) == 2 * 2 * arrays[0].nbytes  # the ring's 2(n-1)S
