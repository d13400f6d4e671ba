"""k-means: every backend runnable here against scikit-learn from the same initial centroids."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.kernels import BackendUnavailable, available_backends, kmeans, kmeans_plusplus

from .conftest import run_under_cudasim

sklearn_cluster = pytest.importorskip("sklearn.cluster")
CPU_BACKENDS = ["numba", "numpy"]


def blobs(n=3000, d=4, centers=6, dtype=np.float64, seed=0, spread=8.0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(-spread, spread, (centers, d))
    return (means[rng.integers(centers, size=n)] + rng.standard_normal((n, d))).astype(dtype)


def sklearn_inertia(X, init, **options):
    fitted = sklearn_cluster.KMeans(len(init), init=init, n_init=1, algorithm="lloyd", **options).fit(X)
    return fitted


def nearest(X, centroids):
    d = ((X[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(-1)
    return d.min(axis=1), d.argmin(axis=1)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float64_reaches_sklearns_inertia_labels_and_iterations(backend):
    X = blobs(d=5, seed=1) + np.random.default_rng(9).standard_normal((3000, 5)) * 2  # overlapping: many iterations
    init = X[np.random.default_rng(2).choice(len(X), 8, replace=False)]
    ours = kmeans(X, 8, init=init, backend=backend)
    theirs = sklearn_inertia(X, init)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-10)
    assert ours.n_iter == theirs.n_iter_ > 3
    assert np.array_equal(ours.labels, theirs.labels_)
    np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_matches_sklearn_within_float_tolerance(backend):
    X = blobs(n=5000, d=16, centers=10, dtype=np.float32, seed=3)
    init = X[:10].copy()
    ours = kmeans(X, 10, init=init, backend=backend)
    theirs = sklearn_inertia(X, init)
    assert ours.centroids.dtype == np.float32
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5, 1e6])
def test_float32_far_from_the_origin_matches_sklearn(backend, offset):
    """The scores drop ‖x‖², which cancelled float32's digits away until X was centred
    (inertia 0.5-1% off at 1e3, 28% at 1e4). Up to 1e5 both agree to float32 rounding of
    the centred values (measured gap <= 3e-6). At 1e6 float32's spacing is 1/16: points sit
    on that grid, near-ties in distance break by rounding, and some labels part ways in 15
    unconverged iterations (measured <= 2.3e-4). Centroids are rounded to the offset's
    spacing on the way back (measured <= 2 spacings apart)."""
    rtol = 1e-3 if offset >= 1e6 else 1e-5
    for seed in range(10):
        X = (offset + np.random.default_rng(seed).standard_normal((3000, 8))).astype(np.float32)
        ours = kmeans(X, 5, init=X[:5], max_iter=15, tol=0, backend=backend)
        theirs = sklearn_inertia(X, X[:5], max_iter=15, tol=0)
        assert ours.inertia == pytest.approx(theirs.inertia_, rel=rtol), f"seed {seed}"
        np.testing.assert_allclose(ours.centroids, theirs.cluster_centers_, rtol=0,
                                   atol=4 * np.spacing(np.float32(offset)), err_msg=f"seed {seed}")


def test_kmeans_plus_plus_far_from_the_origin_picks_as_at_the_origin():
    """Its distances drop ‖x‖² too: uncentred, float32 at 1e4 picked other rows for all 10 seeds.
    Shifted data rounds differently, so a draw near a boundary may still go the other way.
    ``kmeans_plusplus`` returns the very rows ``kmeans`` starts from."""
    X = blobs(n=3000, d=2, centers=12, seed=8, spread=40, dtype=np.float32)
    far = X + np.float32(1e4)
    same = [np.allclose(kmeans_plusplus(far, 12, seed=s) - np.float32(1e4), kmeans_plusplus(X, 12, seed=s), atol=1e-2)
            for s in range(10)]
    assert sum(same) >= 8
    ours = kmeans(far, 12, seed=3, max_iter=3)
    assert np.array_equal(ours.centroids, kmeans(far, 12, init=kmeans_plusplus(far, 12, seed=3), max_iter=3).centroids)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_cluster_is_moved_to_the_farthest_point_as_sklearn_does(backend):
    X = blobs(n=1000, d=2, centers=3, seed=4)
    init = np.vstack([X[:3], [[1e4, 1e4]]])  # the far centroid wins no point
    ours = kmeans(X, 4, init=init, backend=backend)
    theirs = sklearn_inertia(X, init)
    assert sorted(set(ours.labels)) == [0, 1, 2, 3]
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-9)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_awkward_shapes(backend):
    X = blobs(n=500, d=3, seed=5)
    one = kmeans(X, 1, backend=backend)
    np.testing.assert_allclose(one.centroids[0], X.mean(axis=0))
    assert one.inertia == pytest.approx(((X - X.mean(axis=0)) ** 2).sum())
    line = blobs(n=700, d=1, seed=6)
    init = line[:4].copy()
    assert kmeans(line, 4, init=init, backend=backend).inertia == pytest.approx(
        sklearn_inertia(line, init).inertia_, rel=1e-10)
    every = kmeans(X[:7], 7, backend=backend)
    assert every.inertia == pytest.approx(0.0, abs=1e-9) and sorted(every.labels) == list(range(7))
    ints = kmeans(np.arange(20).reshape(10, 2), 2, backend=backend, seed=0)
    assert ints.centroids.dtype == np.float64


@given(n=st.integers(2, 200), d=st.integers(1, 6), k=st.integers(1, 8), seed=st.integers(0, 10**6),
       backend=st.sampled_from(CPU_BACKENDS))
@settings(max_examples=40, deadline=None)
def test_labels_are_nearest_and_inertia_is_their_distance(n, d, k, seed, backend):
    X = np.random.default_rng(seed).standard_normal((n, d))
    k = min(k, n)
    result = kmeans(X, k, seed=seed, backend=backend, max_iter=50)
    best, _ = nearest(X, result.centroids)
    chosen = ((X - result.centroids[result.labels]) ** 2).sum(axis=1)
    np.testing.assert_allclose(chosen, best, rtol=1e-9, atol=1e-9)
    assert result.inertia == pytest.approx(chosen.sum(), rel=1e-9, abs=1e-9)
    assert 1 <= result.n_iter <= 50 and len(result.history) == result.n_iter


def test_numba_threads_and_seeds_are_reproducible():
    X = blobs(n=4000, d=8, seed=7)
    a = kmeans(X, 6, seed=11, backend="numba", threads=1)
    b = kmeans(X, 6, seed=11, backend="numba", threads=2)
    c = kmeans(X, 6, seed=11, backend="numpy")
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.labels, c.labels)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-12)


def test_kmeans_plus_plus_beats_random_starts_on_blobs():
    X = blobs(n=3000, d=2, centers=12, seed=8, spread=40)
    plus = [kmeans(X, 12, seed=s, max_iter=1).history.inertia[0] for s in range(5)]
    random = [kmeans(X, 12, init="random", seed=s, max_iter=1).history.inertia[0] for s in range(5)]
    assert np.median(plus) < np.median(random)


def test_history_records_every_iteration_and_the_stop():
    X = blobs(n=2000, d=3, seed=9)
    capped = kmeans(X, 5, init=X[:5].copy(), max_iter=2)
    assert list(capped.history.columns) == ["iteration", "inertia", "seconds"]
    assert list(capped.history.iteration) == [1, 2] and not capped.converged
    full = kmeans(X, 5, init=X[:5].copy())
    assert full.converged and full.n_iter > 2
    assert full.history.inertia.is_monotonic_decreasing
    assert (full.history.seconds > 0).all() and full.compile_seconds >= 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_a_traced_run_keeps_the_centroids_that_one_step_at_a_time_gives(backend, offset):
    X = (blobs(n=3000, d=3, centers=5, seed=14, spread=3.0) + offset).astype(np.float32)
    init = X[:5].copy()
    traced = kmeans(X, 5, init=init, max_iter=8, backend=backend, trace=True)
    assert traced.path.shape == (traced.n_iter + 1, 5, 3) and traced.path.dtype == np.float32
    np.testing.assert_allclose(traced.path[0], init, rtol=1e-6, atol=1e-6 * (1 + offset))  # less X's mean, plus it
    assert np.array_equal(traced.path[-1], traced.centroids)
    centroids = init
    for after in traced.path[1:]:  # each step from the last one's centroids, as a user would trace by hand
        centroids = kmeans(X, 5, init=centroids, max_iter=1, backend=backend).centroids
        np.testing.assert_allclose(after, centroids, rtol=1e-6, atol=1e-6 * (1 + offset))
    assert kmeans(X, 5, init=init, max_iter=8, backend=backend).path is None
    batches = kmeans(X, 5, init=init, backend=backend, batch_size=500, max_iter=3, seed=0, trace=True)
    assert batches.path.shape == (batches.n_iter + 1, 5, 3)
    assert np.array_equal(batches.path[-1], batches.centroids)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("tol", [0, 1e-4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centring_a_c_contiguous_x_gives_what_numpys_centring_gives(backend, tol, dtype):
    # a C-contiguous float X of two columns or more is centred by numba's passes, any other
    # layout by numpy's mean and subtract: the two must agree to the bit. A view of every
    # other column is summed by numpy row after row, as numpy sums a C-contiguous X
    X = blobs(n=5000, d=6, seed=12, spread=300.0).astype(dtype)
    view = np.empty((5000, 12), dtype=dtype)[:, ::2]
    view[:] = X
    init = X[:6].copy()
    fast = kmeans(X, 6, init=init, tol=tol, backend=backend)
    reference = kmeans(view, 6, init=init, tol=tol, backend=backend)
    assert np.array_equal(fast.centroids, reference.centroids) and np.array_equal(fast.labels, reference.labels)
    assert fast.inertia == reference.inertia and fast.n_iter == reference.n_iter
    # the sum of squares is added in another order: the history's inertia agrees to rounding
    np.testing.assert_allclose(fast.history.inertia, reference.history.inertia, rtol=1e-12)
    for max_iter in (1, 2):  # a stop by max_iter: the last assignment also gives the inertia
        step = kmeans(X, 6, init=init, max_iter=max_iter, tol=tol, backend=backend)
        assert step.inertia == pytest.approx(nearest(X, step.centroids)[0].sum(), rel=1e-6)
        assert np.array_equal(step.labels, kmeans(view, 6, init=init, max_iter=max_iter, tol=tol,
                                                  backend=backend).labels)


def test_kmeans_leaves_x_as_it_was():
    X = blobs(n=1000, d=4, seed=13)
    before = X.copy()
    kmeans(X, 3, seed=0)
    kmeans_plusplus(X, 3, seed=0)
    assert np.array_equal(X, before)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_mini_batch_lands_near_lloyd(backend):
    X = blobs(n=6000, d=4, centers=5, seed=10)
    lloyd = kmeans(X, 5, seed=0, backend=backend)
    batches = kmeans(X, 5, seed=0, backend=backend, batch_size=256, max_iter=10)
    again = kmeans(X, 5, seed=0, backend=backend, batch_size=256, max_iter=10)
    assert batches.inertia <= 1.05 * lloyd.inertia
    assert np.array_equal(batches.centroids, again.centroids)
    best, _ = nearest(X, batches.centroids)
    assert batches.inertia == pytest.approx(best.sum(), rel=1e-9)


@pytest.mark.parametrize(("call", "message"), [
    (lambda X: kmeans(X[0], 2), "2-D array"),
    (lambda X: kmeans(X, 0), "k must be an integer >= 1"),
    (lambda X: kmeans(X, 101), "k=101 is more than the 100 points"),
    (lambda X: kmeans(np.where(X > 1, np.nan, X), 2), "NaN or infinity"),
    (lambda X: kmeans(X.astype(str), 2), "float32 or float64"),
    (lambda X: kmeans(X, 2, init="kmeans++"), "init must be one of k-means\\+\\+, random"),
    (lambda X: kmeans(X, 2, init=X[:3]), "shape \\(k, D\\) = \\(2, 3\\)"),
    (lambda X: kmeans(X, 2, max_iter=0), "max_iter must be an integer >= 1"),
    (lambda X: kmeans(X, 2, tol=-1), "tol must be a number >= 0"),
    (lambda X: kmeans(X, 2, batch_size=0), "batch_size must be an integer >= 1"),
    (lambda X: kmeans(X, 2, threads=0), "threads must be an integer from 1"),
    (lambda X: kmeans(X, 2, backend="tpu"), "backend must be 'auto' or one of"),
    (lambda X: kmeans(X, 2, trace=1), "trace must be True or False"),
])
def test_bad_input_is_refused_naming_the_problem(call, message):
    X = np.random.default_rng(0).standard_normal((100, 3))
    with pytest.raises((ValueError, TypeError), match=message):
        call(X)


def test_an_unusable_backend_says_why():
    if available_backends()["cupy"][0]:
        pytest.skip("CuPy is usable here")
    with pytest.raises(BackendUnavailable, match="backend 'cupy' cannot run here"):
        kmeans(np.zeros((10, 2)), 2, backend="cupy")


def test_numba_cuda_kernel_under_the_simulator_matches_numpy():
    out = run_under_cudasim("""
        import numpy as np
        from mlsys_ext.kernels import kmeans
        rng = np.random.default_rng(0)
        X = (rng.standard_normal((256, 3)) + rng.integers(0, 4, (256, 1)) * 4).astype(np.float32)
        init = np.vstack([X[:3], [[50.0, 50.0, 50.0]]]).astype(np.float32)  # one cluster starts empty
        gpu = kmeans(X, 4, init=init, backend="numba-cuda", max_iter=10)
        cpu = kmeans(X, 4, init=init, backend="numpy", max_iter=10)
        batches = kmeans(X, 4, init=init, backend="numba-cuda", batch_size=128, max_iter=2, seed=0)
        print(int(np.array_equal(gpu.labels, cpu.labels)), gpu.n_iter == cpu.n_iter,
              abs(gpu.inertia - cpu.inertia) / cpu.inertia, len(set(batches.labels)))
    """)
    same_labels, same_iterations, relative_gap, clusters = out.split()
    assert same_labels == "1" and same_iterations == "True"
    assert float(relative_gap) < 1e-5 and int(clusters) == 4


def test_numba_cuda_far_from_the_origin_under_the_simulator():
    """Its float64 dots held up better uncentred, yet were 1.4e-3 off at 1e6."""
    out = run_under_cudasim("""
        import numpy as np
        from sklearn.cluster import KMeans
        from mlsys_ext.kernels import kmeans
        X = (1e6 + np.random.default_rng(0).standard_normal((256, 4))).astype(np.float32)
        gpu = kmeans(X, 4, init=X[:4], backend="numba-cuda", max_iter=5, tol=0)
        theirs = KMeans(4, init=X[:4], n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(X)
        print(abs(gpu.inertia - theirs.inertia_) / theirs.inertia_)
    """)
    assert float(out) < 1e-5
