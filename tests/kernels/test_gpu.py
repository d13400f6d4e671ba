"""The GPU paths (CuPy and numba-cuda) of k-means, Hogwild SGD and attention on a real CUDA
device, against this package's CPU paths.

Marked ``gpu``. A test runs only where its backend is usable on a real device and is skipped
with the backend's own reason (``available_backends()``) elsewhere. numba's CUDA simulator is
no device: under ``NUMBA_ENABLE_CUDASIM=1`` these tests skip too (test_kmeans, test_hogwild
and test_attention run the numba-cuda kernels on the simulator at tiny sizes).

What the API promises on every backend: numpy arrays in, numpy arrays out, in the input's
dtype, with the device copies made inside the call. So each test hands in host arrays and
checks that host arrays of the right dtype come back, equal to the CPU path's within float
tolerance.
"""
import numpy as np
import pytest

from mlsys_ext.kernels import (attention, attention_decode, available_backends, hogwild_sgd, kmeans,
                               kmeans_plusplus, sparse_classification)

from .test_attention import TOLERANCE, naive_attention, random_qkv

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ("cupy", "numba-cuda")


def _require_device(backend: str) -> None:
    """Skip unless ``backend`` runs on a real CUDA device here, giving the backend's own reason."""
    usable, why = available_backends()[backend]
    if not usable:
        pytest.skip(f"{backend} cannot run here: {why}")
    if "simulator" in why:
        pytest.skip(f"{backend} would run on the CUDA simulator, which is no device: {why}")


@pytest.fixture(params=GPU_BACKENDS)
def gpu(request):
    _require_device(request.param)
    return request.param


@pytest.fixture(params=GPU_BACKENDS)
def hogwild_gpu(request):
    """Both GPU backends of ``hogwild_sgd`` launch the numba.cuda kernel (CuPy's on CuPy
    arrays), so the CuPy one needs numba-cuda on the device too."""
    _require_device(request.param)
    if request.param == "cupy":
        _require_device("numba-cuda")
    return request.param


def _host_array(array, dtype):
    assert type(array) is np.ndarray, f"expected a numpy array back, got {type(array)}"
    assert array.dtype == dtype


# ---- k-means: against the numba CPU path from the same initial centroids ---------------------

# relative tolerance of centroids and inertia; float32 centroids round the same float64 sums
KMEANS_RTOL = {np.float32: 1e-5, np.float64: 1e-10}
# the per-iteration inertia is ‖X‖² + 2 Σ scores, a difference of large numbers: its error is
# relative to ‖X‖² (of the centred X), ~100x the inertia on the blobs below
HISTORY_RTOL = {np.float32: 1e-5, np.float64: 1e-12}
KMEANS = dict(n=20_000, d=8, k=12)  # points, dims, clusters: 157 blocks of numba-cuda's 128 threads
WIDE = dict(n=8_000, d=128, k=64)  # K x D = 8192 centroid values: more than numba-cuda stages in shared memory


def separated_blobs(n, d, k, dtype=np.float64, seed=0, spread=20.0):
    """(X, means): ``n`` points N(mean, 1) around ``k`` means uniform in [-spread, spread]^d.
    With the default spread the blobs lie far apart, and ``means`` as the starting centroids
    puts one in each: no point is near a tie between two centroids, so the GPU and the CPU,
    rounding differently, give every point the same label."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-spread, spread, (k, d))
    X = means[rng.integers(k, size=n)] + rng.standard_normal((n, d))
    return X.astype(dtype), means.astype(dtype)


def assert_same_clustering(got, want, X, atol=None):
    """``got`` (a GPU run on ``X``) equals ``want`` (the numba CPU run): labels, iterations,
    centroids and inertia, the last two within float tolerance (for centroids ``atol``,
    by default the relative tolerance times X's largest magnitude)."""
    dtype = X.dtype.type
    rtol = KMEANS_RTOL[dtype]
    centred = float(((X - X.mean(axis=0, dtype=np.float64)) ** 2).sum())  # ‖X‖² as the passes see it
    _host_array(got.centroids, dtype)
    _host_array(got.labels, np.int32)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert (got.n_iter, got.converged) == (want.n_iter, want.converged)
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=rtol,
                               atol=rtol * np.abs(X).max() if atol is None else atol)
    assert got.inertia == pytest.approx(want.inertia, rel=rtol, abs=rtol * centred)
    np.testing.assert_allclose(got.history.inertia, want.history.inertia, rtol=0,
                               atol=HISTORY_RTOL[dtype] * centred)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_equals_the_cpu_path_from_the_same_centroids(gpu, dtype):
    X, means = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], dtype, seed=1)
    init = means + np.asarray(np.random.default_rng(2).standard_normal(means.shape), dtype)
    got = kmeans(X, KMEANS["k"], init=init, backend=gpu)
    want = kmeans(X, KMEANS["k"], init=init, backend="numba")
    assert got.backend == gpu and got.converged
    assert_same_clustering(got, want, X)


def test_kmeans_float64_over_many_iterations_from_k_means_plus_plus(gpu):
    """Overlapping blobs, so Lloyd moves for many iterations; float64 rounding leaves no ties."""
    X, _ = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], seed=3, spread=3.0)
    init = kmeans_plusplus(X, KMEANS["k"], seed=4)
    got = kmeans(X, KMEANS["k"], init=init, max_iter=60, backend=gpu)
    want = kmeans(X, KMEANS["k"], init=init, max_iter=60, backend="numba")
    assert want.n_iter > 5
    assert_same_clustering(got, want, X)


def test_kmeans_float32_over_many_iterations_within_float_tolerance(gpu):
    """Overlapping blobs in float32: points near a tie may take the other centroid where GPU and
    CPU round differently (float64 dots on numba-cuda, float32 GEMMs on the CPU and CuPy), so
    a few labels and the iteration count may differ; the clustering may not."""
    X, _ = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], np.float32, seed=3, spread=3.0)
    init = kmeans_plusplus(X, KMEANS["k"], seed=4)
    got = kmeans(X, KMEANS["k"], init=init, max_iter=15, tol=0, backend=gpu)
    want = kmeans(X, KMEANS["k"], init=init, max_iter=15, tol=0, backend="numba")
    _host_array(got.centroids, np.float32)
    assert np.mean(got.labels == want.labels) >= 0.999
    assert got.inertia == pytest.approx(want.inertia, rel=1e-4)
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=0, atol=0.02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_far_from_the_origin(gpu, dtype):
    """X + 1e4: the passes score ‖c‖²/2 - x·c, which would cancel float32's digits away had
    X not been centred first; centroids come back with the offset, rounded to its spacing."""
    offset = 1e4
    X, means = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], dtype, seed=5)
    far, init = X + dtype(offset), means + dtype(offset)
    got = kmeans(far, KMEANS["k"], init=init, backend=gpu)
    want = kmeans(far, KMEANS["k"], init=init, backend="numba")
    atol = 4 * np.spacing(dtype(offset)) if dtype == np.float32 else 1e-9
    assert_same_clustering(got, want, far, atol=atol)
    np.testing.assert_allclose(got.centroids - dtype(offset), kmeans(X, KMEANS["k"], init=means, backend=gpu).centroids,
                               rtol=0, atol=2 * atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_one_cluster(gpu, dtype):
    X, _ = separated_blobs(5_000, 3, 4, dtype, seed=6)
    got = kmeans(X, 1, seed=0, backend=gpu)
    want = kmeans(X, 1, seed=0, backend="numba")
    assert_same_clustering(got, want, X)
    np.testing.assert_allclose(got.centroids[0], X.mean(axis=0, dtype=np.float64), rtol=0,
                               atol=KMEANS_RTOL[dtype] * np.abs(X).max())
    assert not got.labels.any()
    spread = ((X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)) ** 2).sum()
    assert got.inertia == pytest.approx(spread, rel=KMEANS_RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_one_cluster_per_point(gpu, dtype):
    """k = n: every point is its own centroid, and the inertia is 0."""
    X = np.random.default_rng(7).standard_normal((64, 3)).astype(dtype)
    got = kmeans(X, len(X), seed=0, backend=gpu)
    want = kmeans(X, len(X), seed=0, backend="numba")
    assert sorted(got.labels) == list(range(len(X)))
    assert got.inertia == pytest.approx(0.0, abs=1e-9)
    assert_same_clustering(got, want, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_non_contiguous_X(gpu, dtype):
    """A strided view of a Fortran-ordered array clusters as its contiguous copy does."""
    base, means = separated_blobs(2 * KMEANS["n"], 2 * KMEANS["d"], KMEANS["k"], dtype, seed=8)
    X = np.asfortranarray(base)[::2, 1::2]
    assert not X.flags.c_contiguous and not X.flags.f_contiguous
    init = means[:, 1::2] + np.asarray(np.random.default_rng(9).standard_normal((KMEANS["k"], KMEANS["d"])), dtype)
    got = kmeans(X, KMEANS["k"], init=init, backend=gpu)
    assert_same_clustering(got, kmeans(np.ascontiguousarray(X), KMEANS["k"], init=init, backend=gpu), X)
    assert_same_clustering(got, kmeans(X, KMEANS["k"], init=init, backend="numba"), X)


def test_kmeans_empty_cluster_is_moved_as_on_the_cpu(gpu):
    """A starting centroid far from every point wins none; it moves to the farthest point."""
    X, means = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], seed=10)
    init = np.vstack([means, np.full((1, KMEANS["d"]), 1e3)])
    got = kmeans(X, KMEANS["k"] + 1, init=init, backend=gpu)
    want = kmeans(X, KMEANS["k"] + 1, init=init, backend="numba")
    assert sorted(set(got.labels)) == list(range(KMEANS["k"] + 1))
    assert_same_clustering(got, want, X)


def test_kmeans_more_centroid_values_than_shared_memory_holds(gpu):
    X, means = separated_blobs(WIDE["n"], WIDE["d"], WIDE["k"], np.float32, seed=11)
    got = kmeans(X, WIDE["k"], init=means, backend=gpu)
    want = kmeans(X, WIDE["k"], init=means, backend="numba")
    assert_same_clustering(got, want, X)


def test_kmeans_mini_batches_equal_the_cpu_path(gpu):
    X, means = separated_blobs(KMEANS["n"], KMEANS["d"], KMEANS["k"], seed=12)
    options = dict(init=means, batch_size=KMEANS["n"] // 8, max_iter=3, seed=0)
    got = kmeans(X, KMEANS["k"], backend=gpu, **options)
    want = kmeans(X, KMEANS["k"], backend="numba", **options)
    _host_array(got.centroids, np.float64)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=1e-10, atol=1e-10 * np.abs(X).max())
    assert got.inertia == pytest.approx(want.inertia, rel=1e-10)


# ---- Hogwild SGD --------------------------------------------------------------------------------

# sparse enough that two workers seldom write one weight at once: a CPU model of the GPU's
# worst case (every worker of a wave reads w before any writes, and of the writes to one
# weight in a wave only one lands) stays within 0.005 of serial's accuracy on both problems
WITH_THREADS = dict(n=20_000, d=2**16, nnz_per_row=16)
HOGWILD_THREADS = 1024
DEFAULT_WORKERS = dict(n=50_000, d=2**18, nnz_per_row=16)  # threads=None: 16384 GPU threads
ACCURACY_MARGIN = 0.02
SERIAL_PROBLEM = dict(n=3_000, d=2**12, nnz_per_row=12)


@pytest.mark.parametrize("loss", ["log", "hinge"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_mode_on_the_gpu_equals_the_cpu_serial_run(hogwild_gpu, loss, dtype):
    """One GPU thread walks the seed's orders as the CPU does; fused multiply-adds (both
    kernels are fastmath) round a little differently, which float32 weights carry further."""
    X, y = sparse_classification(**SERIAL_PROBLEM, seed=0, dtype=dtype)
    got = hogwild_sgd(X, y, loss=loss, epochs=3, mode="serial", seed=4, backend=hogwild_gpu)
    want = hogwild_sgd(X, y, loss=loss, epochs=3, mode="serial", seed=4, backend="numba")
    _host_array(got.weights, dtype)
    assert (got.backend, got.threads, got.mode) == (hogwild_gpu, 1, "serial")
    rtol, atol = (1e-3, 1e-4) if dtype == np.float32 else (1e-7, 1e-9)
    np.testing.assert_allclose(got.weights, want.weights, rtol=rtol, atol=atol * np.abs(want.weights).max())
    np.testing.assert_allclose(got.history.loss, want.history.loss, rtol=rtol)


@pytest.mark.parametrize("loss", ["log", "hinge"])
def test_hogwild_reaches_the_serial_accuracy(hogwild_gpu, loss):
    X, y = sparse_classification(**WITH_THREADS, seed=1)
    got = hogwild_sgd(X, y, loss=loss, epochs=4, threads=HOGWILD_THREADS, seed=1, backend=hogwild_gpu)
    serial = hogwild_sgd(X, y, loss=loss, epochs=4, mode="serial", seed=1, backend="numba")
    assert (got.threads, got.mode) == (HOGWILD_THREADS, "hogwild")
    assert serial.history.accuracy.iloc[-1] > 0.9
    accuracy, serial_accuracy = got.history.accuracy.iloc[-1], serial.history.accuracy.iloc[-1]
    assert abs(accuracy - serial_accuracy) <= ACCURACY_MARGIN, (accuracy, serial_accuracy)
    assert got.history.loss.iloc[-1] < got.history.loss.iloc[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hogwild_with_the_default_gpu_workers_reaches_the_serial_accuracy(hogwild_gpu, dtype):
    X, y = sparse_classification(**DEFAULT_WORKERS, seed=2, dtype=dtype)
    got = hogwild_sgd(X, y, epochs=4, seed=2, backend=hogwild_gpu)
    serial = hogwild_sgd(X, y, epochs=4, mode="serial", seed=2, backend="numba")
    _host_array(got.weights, dtype)
    assert got.threads == min(DEFAULT_WORKERS["n"], 1 << 14)
    accuracy, serial_accuracy = got.history.accuracy.iloc[-1], serial.history.accuracy.iloc[-1]
    assert abs(accuracy - serial_accuracy) <= ACCURACY_MARGIN, (accuracy, serial_accuracy)
    assert np.mean(got.predict(X) == y) == pytest.approx(accuracy)


# ---- attention and attention_decode: against the numpy path and the float64 reference ---------

# name: (B, H, Hkv, Lq, Lk, D). The tiles: numba-cuda 32 queries x 16 keys, CuPy 256 x 512.
ATTENTION_CASES = {
    "gqa 8:2, L=777 (no tile's multiple)": (1, 8, 2, 777, 777, 64),
    "Lq > Lk": (2, 4, 4, 300, 130, 32),
    "Lq < Lk, gqa 4:1": (1, 4, 1, 130, 300, 32),
    "L=1": (1, 2, 1, 1, 1, 64),
    "one query, many keys": (2, 2, 2, 1, 333, 16),
    "D=128 (numba-cuda's largest)": (1, 2, 1, 100, 100, 128),
    "D=5, gqa 3:1": (2, 3, 1, 65, 65, 5),
}
STRIDED_L = 200  # the strided-input test's L
# name: (B, H, Hkv, Lmax, D), lengths
DECODE_CASES = {
    "gqa 8:2, Lmax=1000": ((3, 8, 2, 1000, 64), [1, 517, 1000]),
    "D=5, gqa 3:1": ((2, 3, 1, 33, 5), [33, 2]),
}


def assert_attention_close(got, from_numpy, reference, dtype):
    _host_array(got, dtype)
    assert got.shape == from_numpy.shape
    np.testing.assert_allclose(got, from_numpy, rtol=0, atol=2 * TOLERANCE[dtype])
    np.testing.assert_allclose(got, reference, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_attention_equals_the_numpy_path(gpu, case, causal, dtype):
    q, k, v = random_qkv(np.random.default_rng(0), *ATTENTION_CASES[case], dtype)
    got = attention(q, k, v, causal=causal, backend=gpu)
    assert_attention_close(got, attention(q, k, v, causal=causal, backend="numpy"),
                           naive_attention(q, k, v, causal), dtype)


def test_attention_with_a_scale_and_strided_inputs(gpu):
    """q, k, v as (B, L, H, D) arrays seen as (B, H, L, D): strided views, as torch lays them out."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, STRIDED_L, heads, 32)).astype(np.float32).transpose(0, 2, 1, 3)
               for heads in (4, 2, 2))
    assert not q.flags.c_contiguous
    for causal in (False, True):
        got = attention(q, k, v, causal=causal, scale=0.3, backend=gpu)
        assert_attention_close(got, attention(q, k, v, causal=causal, scale=0.3, backend="numpy"),
                               naive_attention(q, k, v, causal, scale=0.3), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(DECODE_CASES))
def test_decode_equals_the_numpy_path_and_never_reads_past_each_length(gpu, case, dtype):
    (batch, heads, kv_heads, max_length, dim), lengths = DECODE_CASES[case]
    rng = np.random.default_rng(2)
    q = rng.standard_normal((batch, heads, dim)).astype(dtype)
    k_cache, v_cache = rng.standard_normal((2, batch, kv_heads, max_length, dim)).astype(dtype)
    lengths = np.array(lengths)
    reference = naive_attention(q[:, :, None], k_cache, v_cache, lengths=lengths)[:, :, 0]
    for b, n in enumerate(lengths):  # stale cache past each sequence's end
        k_cache[b, :, n:] = v_cache[b, :, n:] = np.nan
    got = attention_decode(q, k_cache, v_cache, lengths, backend=gpu)
    assert_attention_close(got, attention_decode(q, k_cache, v_cache, lengths, backend="numpy"), reference, dtype)


def test_decode_is_the_last_row_of_causal_attention(gpu):
    q, k, v = random_qkv(np.random.default_rng(3), 1, 4, 2, 70, 70, 16, np.float64)
    full = attention(q, k, v, causal=True, backend=gpu)
    for length in (1, 33, 70):
        step = attention_decode(q[:, :, length - 1], k, v, np.array([length]), backend=gpu)
        np.testing.assert_allclose(step, full[:, :, length - 1], rtol=0, atol=1e-12)


def test_numba_cuda_refuses_head_dims_past_its_kernels():
    _require_device("numba-cuda")
    q, k, v = random_qkv(np.random.default_rng(4), 1, 1, 1, 4, 4, 129, np.float32)
    with pytest.raises(ValueError, match="head dims up to 128"):
        attention(q, k, v, backend="numba-cuda")
