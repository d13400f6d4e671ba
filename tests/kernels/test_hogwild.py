"""Hogwild SGD: numba against the numpy reference, racy and locked runs against serial,
the GPU paths under numba's CUDA simulator, and the input checks."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mlsys_ext.kernels import (BackendUnavailable, SGDResult, available_backends, hogwild_sgd,
                               sparse_classification)

from .conftest import run_under_cudasim


@pytest.fixture(scope="module")
def problem():
    return sparse_classification(600, 512, 12, seed=0)


@pytest.mark.parametrize("loss", ["log", "hinge"])
def test_serial_numba_matches_the_numpy_reference(problem, loss):
    X, y = problem
    fast = hogwild_sgd(X, y, loss=loss, epochs=3, mode="serial", seed=4, backend="numba")
    reference = hogwild_sgd(X, y, loss=loss, epochs=3, mode="serial", seed=4, backend="numpy")
    np.testing.assert_allclose(fast.weights, reference.weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.history.loss, reference.history.loss, rtol=1e-10)


def test_same_seed_serial_repeats_bit_for_bit_and_one_hogwild_thread_is_serial(problem):
    X, y = problem
    first, again = (hogwild_sgd(X, y, mode="serial", seed=7, backend="numba") for _ in range(2))
    one_thread = hogwild_sgd(X, y, mode="hogwild", threads=1, seed=7, backend="numba")
    assert np.array_equal(first.weights, again.weights) and np.array_equal(first.weights, one_thread.weights)
    other_seed = hogwild_sgd(X, y, mode="serial", seed=8, backend="numba")
    assert not np.array_equal(first.weights, other_seed.weights)


@pytest.mark.parametrize("loss", ["log", "hinge"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hogwild_and_locked_reach_the_serial_accuracy(loss, seed):
    X, y = sparse_classification(4000, 2**12, 16, seed=seed)
    runs = {mode: hogwild_sgd(X, y, loss=loss, epochs=4, threads=2, mode=mode, seed=seed, backend="numba")
            for mode in ("serial", "hogwild", "locked")}
    serial = runs["serial"].history.accuracy.iloc[-1]
    assert serial > 0.85
    for mode in ("hogwild", "locked"):
        assert runs[mode].threads == 2
        assert abs(runs[mode].history.accuracy.iloc[-1] - serial) <= 0.02, mode
    assert runs["serial"].threads == 1


def test_labels_zero_one_and_plus_minus_one_train_the_same_model(problem):
    X, y01 = problem
    y_signed = np.where(y01 == 1, 1, -1)
    zero_one = hogwild_sgd(X, y01, mode="serial", seed=1, backend="numba")
    signed = hogwild_sgd(X, y_signed, mode="serial", seed=1, backend="numba")
    booleans = hogwild_sgd(X, y01.astype(bool), mode="serial", seed=1, backend="numba")
    floats = hogwild_sgd(X, y_signed.astype(np.float32), mode="serial", seed=1, backend="numba")
    assert np.array_equal(zero_one.weights, signed.weights) and np.array_equal(zero_one.weights, booleans.weights)
    assert np.array_equal(zero_one.weights, floats.weights)
    assert booleans.classes.tolist() == [False, True] and floats.classes.dtype == np.float32
    assert set(zero_one.predict(X)) <= {0, 1} and set(signed.predict(X)) <= {-1, 1}
    assert np.array_equal(signed.predict(X) == 1, zero_one.predict(X) == 1)
    assert np.mean(signed.predict(X) == y_signed) == signed.history.accuracy.iloc[-1]


def test_float32_trains_in_float32_as_well_as_float64():
    X64, y = sparse_classification(3000, 2**11, 10, seed=3)
    X32 = X64.astype(np.float32)
    wide = hogwild_sgd(X64, y, threads=2, seed=0, backend="numba")
    narrow = hogwild_sgd(X32, y, threads=2, seed=0, backend="numba")
    reference = hogwild_sgd(X32, y, mode="serial", seed=0, backend="numpy")
    assert narrow.weights.dtype == np.float32 and wide.weights.dtype == np.float64
    assert abs(narrow.history.accuracy.iloc[-1] - wide.history.accuracy.iloc[-1]) <= 0.02
    serial = hogwild_sgd(X32, y, mode="serial", seed=0, backend="numba")
    np.testing.assert_allclose(serial.weights, reference.weights, rtol=1e-4, atol=1e-5)


def test_result_history_and_settings(problem):
    X, y = problem
    result = hogwild_sgd(X, y, loss="hinge", epochs=6, lr=0.05, threads=2, seed=2, backend="auto")
    assert isinstance(result, SGDResult) and result.backend == "numba"
    assert list(result.history.columns) == ["epoch", "loss", "accuracy", "seconds"]
    assert list(result.history.epoch) == [1, 2, 3, 4, 5, 6]
    assert (result.history.seconds > 0).all() and result.compile_seconds >= 0
    assert result.history.loss.iloc[-1] < result.history.loss.iloc[0]  # monotone-ish: it comes down
    assert np.all(np.diff(result.history.loss) < 0.05)
    assert (result.loss, result.mode, result.threads, result.epochs, result.lr, result.seed) == \
        ("hinge", "hogwild", 2, 6, 0.05, 2)
    assert result.weights.shape == (X.shape[1],) and list(result.classes) == [0, 1]
    with pytest.raises(ValueError, match="X has 10 features, the model 512"):
        result.predict(sp.random(3, 10, density=0.5, format="csr"))


def test_other_sparse_formats_and_repeated_indices_are_converted(problem):
    X, y = problem
    csr = hogwild_sgd(X, y, mode="serial", seed=0, backend="numba")
    coo = hogwild_sgd(X.tocoo(), y, mode="serial", seed=0, backend="numba")
    assert np.array_equal(csr.weights, coo.weights)
    repeated = sp.csr_matrix((np.array([1.0, 2.0, -1.0]), np.array([3, 3, 1]), np.array([0, 2, 3])), shape=(2, 5))
    fast = hogwild_sgd(repeated, [1, 0], mode="serial", seed=0, epochs=2, backend="numba")
    reference = hogwild_sgd(repeated, [1, 0], mode="serial", seed=0, epochs=2, backend="numpy")
    np.testing.assert_allclose(fast.weights, reference.weights, rtol=1e-12)
    assert repeated.nnz == 3  # the caller's matrix is left alone


def test_sparse_classification_is_seeded_and_shaped():
    X, y = sparse_classification(100, 2**10, 7, seed=5, dtype=np.float32)
    again, y_again = sparse_classification(100, 2**10, 7, seed=5, dtype=np.float32)
    assert X.shape == (100, 1024) and X.dtype == np.float32 and X.format == "csr" and X.has_canonical_format
    assert (np.diff(X.indptr) <= 7).all() and X.nnz > 650
    assert (X != again).nnz == 0 and np.array_equal(y, y_again) and set(y) == {0, 1}
    with pytest.raises(ValueError, match="nnz_per_row"):
        sparse_classification(10, 4, 5)
    with pytest.raises(TypeError, match="float32 or float64"):
        sparse_classification(10, 4, 2, dtype=np.int32)


def test_cpu_runs_never_import_numba_cuda():
    code = ("import sys; from mlsys_ext.kernels import hogwild_sgd, sparse_classification; "
            "hogwild_sgd(*sparse_classification(50, 64, 4), epochs=1, backend='numba'); "
            "print('numba.cuda' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_gpu_kernel_and_the_cupy_path_under_the_cuda_simulator():
    out = run_under_cudasim("""
        import sys, types
        import numpy as np
        from numba import cuda
        from mlsys_ext.kernels import hogwild_sgd, sparse_classification

        X, y = sparse_classification(96, 64, 6, seed=0)
        gpu = hogwild_sgd(X, y, epochs=4, lr=0.5, threads=48, seed=0, backend="numba-cuda")
        cpu = hogwild_sgd(X, y, epochs=4, lr=0.5, mode="serial", seed=0, backend="numba")
        gpu_serial = hogwild_sgd(X, y, loss="hinge", epochs=2, mode="serial", seed=3, backend="numba-cuda")
        cpu_serial = hogwild_sgd(X, y, loss="hinge", epochs=2, mode="serial", seed=3, backend="numpy")

        # CuPy stand-in: the cupy path's own calls (asarray, asnumpy) served by the simulator
        fake = types.ModuleType("cupy")
        fake.__version__, fake.is_available = "0+simulated", lambda: True
        fake.asarray, fake.asnumpy = cuda.to_device, lambda array: array.copy_to_host()
        sys.modules["cupy"] = fake
        via_cupy = hogwild_sgd(X, y, epochs=4, lr=0.5, threads=48, seed=0, backend="cupy")
        try:
            hogwild_sgd(X, y, mode="locked", backend="numba-cuda")
        except ValueError as error:
            assert "numba backend only" in str(error), error
        else:
            raise AssertionError("locked mode ran on a GPU backend")
        print(gpu.threads, gpu.history.accuracy.iloc[-1], cpu.history.accuracy.iloc[-1],
              np.abs(gpu_serial.weights - cpu_serial.weights).max(), gpu_serial.threads,
              via_cupy.backend, via_cupy.history.accuracy.iloc[-1])
    """, timeout=60)
    threads, gpu_accuracy, cpu_accuracy, serial_gap, serial_threads, cupy_backend, cupy_accuracy = out.split()
    assert int(threads) == 48 and int(serial_threads) == 1 and cupy_backend == "cupy"
    assert abs(float(gpu_accuracy) - float(cpu_accuracy)) <= 0.05 and float(cpu_accuracy) > 0.8
    assert abs(float(cupy_accuracy) - float(cpu_accuracy)) <= 0.05
    assert float(serial_gap) < 1e-12  # one GPU thread walks the same order as the CPU


@pytest.mark.parametrize("X, error, message", [
    (np.ones((4, 3)), TypeError, "scipy.sparse matrix .* got numpy.ndarray"),
    (sp.csr_matrix(np.eye(4, dtype=np.int64)), TypeError, "float32 or float64, got int64"),
    (sp.csr_matrix(np.array([[np.nan, 1.0]] * 4)), ValueError, "NaN or infinite"),
    (sp.csr_matrix((0, 3)), ValueError, "no rows"),
])
def test_bad_X_is_refused_saying_what_is_wrong(X, error, message):
    with pytest.raises(error, match=message):
        hogwild_sgd(X, [0, 1, 0, 1][:X.shape[0]], backend="numba")


@pytest.mark.parametrize("y, message", [
    ([0, 1, 0], r"one label per row of X \(4\), got shape \(3,\)"),
    ([[0, 1, 0, 1]], r"got shape \(1, 4\)"),
    ([0, 1, 2, 1], r"two classes .* got labels \[0, 1, 2\]"),
    ([1, 2, 1, 2], r"labelled \{0, 1\} or \{-1, \+1\}, got labels \[1, 2\]"),
    ([1, 1, 1, 1], r"got labels \[1\]"),
    (["a", "b", "a", "b"], r"got labels \['a', 'b'\]"),
    ([-1, 0, 1, 1], r"got labels \[-1, 0, 1\]"),  # the extremes of a valid pair, with a third label between
    ([0.0, 0.5, 1.0, 1.0], r"got labels \[0.0, 0.5, 1.0\]"),
    ([np.nan, 0.0, 1.0, 1.0], r"got labels \[0.0, 1.0, nan\]"),
])
def test_bad_labels_are_refused(y, message):
    with pytest.raises(ValueError, match=message):
        hogwild_sgd(sp.eye(4, format="csr"), y, backend="numba")


@pytest.mark.parametrize("keywords, message", [
    (dict(loss="squared"), "loss must be one of 'log', 'hinge', got 'squared'"),
    (dict(mode="async"), "mode must be one of 'hogwild', 'locked', 'serial'"),
    (dict(epochs=0), "epochs must be a positive integer, got 0"),
    (dict(epochs=2.5), "epochs must be a positive integer"),
    (dict(lr=0.0), "lr must be a positive finite number, got 0.0"),
    (dict(lr=float("nan")), "lr must be a positive finite number"),
    (dict(lr="0.1"), "lr must be a positive finite number"),
    (dict(threads=0), "threads must be an integer from 1 to"),
    (dict(threads=10_000), "threads must be an integer from 1 to"),
    (dict(backend="tpu"), "backend must be 'auto' or one of"),
    (dict(backend="numpy", mode="hogwild"), "serial reference: use mode='serial'"),
])
def test_bad_settings_are_refused(keywords, message):
    with pytest.raises(ValueError, match=message):
        hogwild_sgd(sp.eye(4, format="csr"), [0, 1, 0, 1], **keywords)


@pytest.mark.parametrize("backend", ["cupy", "numba-cuda"])
def test_an_unusable_gpu_backend_says_why(backend):
    if available_backends()[backend][0]:
        pytest.skip(f"{backend} is usable here")
    with pytest.raises(BackendUnavailable, match=f"backend '{backend}' cannot run here"):
        hogwild_sgd(sp.eye(4, format="csr"), [0, 1, 0, 1], backend=backend)
