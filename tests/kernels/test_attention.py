"""attention and attention_decode: every runnable backend against a float64 naive reference,
torch's SDPA, the numba.cuda kernels under the simulator, and the checks at the edge."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.kernels import BackendUnavailable, attention, attention_decode, available_backends
from mlsys_ext import _wisdom
from mlsys_ext.kernels import _attention

from .conftest import run_under_cudasim

# the CUDA simulator is correct but far too slow here; it has its own test below
RUNNABLE = [name for name, (usable, why) in available_backends().items() if usable and "simulator" not in why]
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}


def naive_attention(q, k, v, causal=False, scale=None, lengths=None):
    """softmax(q k^T scale + mask) v in float64 with the whole score matrix; kv heads repeated
    for grouped queries; ``lengths[b]``: keys batch b sees."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = q @ np.swapaxes(k, -1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)
    lq, lk = q.shape[2], k.shape[2]
    visible = np.ones((q.shape[0], 1, lq, lk), dtype=bool)
    if causal:
        visible &= np.tri(lq, lk, dtype=bool)
    if lengths is not None:
        visible &= (np.arange(lk) < np.asarray(lengths)[:, None, None, None])
    scores = np.where(visible, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


def random_qkv(rng, batch, heads, kv_heads, lq, lk, dim, dtype):
    return (rng.standard_normal((batch, heads, lq, dim)).astype(dtype),
            rng.standard_normal((batch, kv_heads, lk, dim)).astype(dtype),
            rng.standard_normal((batch, kv_heads, lk, dim)).astype(dtype))


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 queries x 8 keys, so small shapes span several tiles and end in a partial one."""
    monkeypatch.setenv(_attention.TILES_ENVIRONMENT, "16x8")
    for name, size in (("XP_Q_TILE", 16), ("XP_K_TILE", 8)):
        monkeypatch.setattr(_attention, name, size)


# (B, H, Hkv, Lq, Lk, D): one of everything, L off the tiles, Lq > Lk, Lq < Lk, D = 1 with 3:1 grouped queries
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 4, 2, 37, 37, 5), (1, 2, 1, 40, 23, 8), (1, 2, 2, 9, 50, 3), (2, 3, 1, 33, 33, 1)]


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_matches_the_naive_reference(small_tiles, backend, dtype, shape, causal):
    q, k, v = random_qkv(np.random.default_rng(0), *shape, dtype)
    out = attention(q, k, v, causal=causal, backend=backend)
    assert out.shape == q.shape and out.dtype == dtype
    np.testing.assert_allclose(out, naive_attention(q, k, v, causal), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("causal, tiles", [(causal, tiles) for causal, candidates in _attention.TILE_CANDIDATES.items()
                                           for tiles in candidates])
def test_every_tile_shape_the_machine_may_pick_matches_the_reference(monkeypatch, causal, tiles):
    monkeypatch.setenv(_attention.TILES_ENVIRONMENT, "x".join(map(str, tiles)))
    q, k, v = random_qkv(np.random.default_rng(4), 1, 2, 1, 600, 700, 8, np.float32)
    out = attention(q, k, v, causal=causal, backend="numba", threads=2)
    np.testing.assert_allclose(out, naive_attention(q, k, v, causal), rtol=0, atol=1e-5)


@pytest.mark.parametrize("forced", ["512", "512x", "x256", "0x256", "512x256x2", "big"])
def test_malformed_forced_tiles_are_refused_in_one_line(monkeypatch, forced):
    monkeypatch.setenv(_attention.TILES_ENVIRONMENT, forced)
    q = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^MLSYS_ATTENTION_TILES must be <query rows>x<keys>, such as 512x256, got "):
        attention(q, q, q, backend="numba")


def test_the_tiles_are_measured_once_per_machine_and_remembered_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(_attention.TILES_ENVIRONMENT, raising=False)
    monkeypatch.setattr(_wisdom, "_memory", {})
    monkeypatch.setattr(_attention.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    measured = []
    fastest = _attention._fastest_tiles
    monkeypatch.setattr(_attention, "_fastest_tiles", lambda *args: measured.append(args) or fastest(*args))
    picked = _attention.attention_tiles(np.float32, 8, True, 2)
    assert picked in _attention.TILE_CANDIDATES[True] and _attention.attention_tiles(np.float32, 8, True, 2) == picked
    monkeypatch.setattr(_wisdom, "_memory", {})  # a new process on the same machine reads the file
    assert _attention.attention_tiles(np.float32, 8, True, 2) == picked and len(measured) == 1
    entries = json.loads((tmp_path / "attention-wisdom.json").read_text())["entries"]
    assert list(entries.values()) == [{"q_tile": picked[0], "k_tile": picked[1]}]


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("causal", [False, True])
def test_default_tiles_with_scale_and_one_thread(backend, causal):
    q, k, v = random_qkv(np.random.default_rng(1), 1, 4, 2, 700, 600, 16, np.float32)
    out = attention(q, k, v, causal=causal, scale=0.3, backend=backend, threads=1)
    np.testing.assert_allclose(out, naive_attention(q, k, v, causal, scale=0.3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_with_ragged_lengths(small_tiles, backend, dtype):
    rng = np.random.default_rng(2)
    q = rng.standard_normal((4, 6, 7)).astype(dtype)
    k_cache, v_cache = rng.standard_normal((2, 4, 2, 50, 7)).astype(dtype)
    lengths = np.array([1, 17, 50, 8])
    out = attention_decode(q, k_cache, v_cache, lengths, backend=backend)
    assert out.shape == q.shape and out.dtype == dtype
    want = naive_attention(q[:, :, None], k_cache, v_cache, lengths=lengths)[:, :, 0]
    np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("stale", [np.nan, np.inf, -np.inf, 1e300], ids=["nan", "inf", "-inf", "huge"])
def test_decode_never_lets_the_cache_past_each_length_in(small_tiles, backend, stale):
    """numpy's tiles masked the weights of stale positions but not their values, and 0 x NaN is NaN."""
    rng = np.random.default_rng(9)
    q = rng.standard_normal((3, 4, 8))
    k_cache, v_cache = rng.standard_normal((2, 3, 2, 40, 8))
    lengths = np.array([5, 40, 19])
    want = np.concatenate([attention_decode(q[b:b + 1], k_cache[b:b + 1, :, :n], v_cache[b:b + 1, :, :n],
                                            lengths[b:b + 1], backend=backend) for b, n in enumerate(lengths)])
    for b, n in enumerate(lengths):
        k_cache[b, :, n:] = v_cache[b, :, n:] = stale
    with np.errstate(over="ignore", invalid="ignore"):
        got = attention_decode(q, k_cache, v_cache, lengths, backend=backend)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", RUNNABLE)
def test_decode_is_the_last_row_of_causal_attention(backend):
    rng = np.random.default_rng(3)
    q, k, v = random_qkv(rng, 1, 4, 2, 30, 30, 8, np.float64)
    full = attention(q, k, v, causal=True, backend=backend)
    for length in (1, 11, 30):
        step = attention_decode(q[:, :, length - 1], k, v, np.array([length]), backend=backend)
        np.testing.assert_allclose(step, full[:, :, length - 1], rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 2), kv_heads=st.integers(1, 2), group=st.integers(1, 3), lq=st.integers(1, 40),
       lk=st.integers(1, 40), dim=st.integers(1, 9), causal=st.booleans(), backend=st.sampled_from(RUNNABLE),
       seed=st.integers(0, 2**32 - 1))
def test_any_shape_matches_the_reference(batch, kv_heads, group, lq, lk, dim, causal, backend, seed):
    q, k, v = random_qkv(np.random.default_rng(seed), batch, kv_heads * group, kv_heads, lq, lk, dim, np.float64)
    np.testing.assert_allclose(attention(q, k, v, causal=causal, backend=backend),
                               naive_attention(q, k, v, causal), rtol=0, atol=1e-10)


def test_array_module_path_with_a_key_limit():
    """``flash_xp`` with numpy: exactly the code the CuPy backend runs, here with per-row key limits."""
    q, k, v = random_qkv(np.random.default_rng(4), 2, 4, 2, 3, 20, 5, np.float64)
    lengths = np.array([6, 20])
    out = _attention.flash_xp(np, q, k, v, 5 ** -0.5, lengths[:, None, None, None], 2, 4)
    np.testing.assert_allclose(out, naive_attention(q, k, v, lengths=lengths), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("lq, lk", [(300, 300), (20, 50), (50, 20)])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_sdpa(backend, lq, lk, causal):
    torch = pytest.importorskip("torch")
    q, k, v = random_qkv(np.random.default_rng(5), 2, 4, 2, lq, lk, 32, np.float32)
    # torch takes grouped queries as repeated kv heads; its is_causal mask is top-left aligned
    want = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(np.repeat(k, 2, axis=1)), torch.from_numpy(np.repeat(v, 2, axis=1)),
        is_causal=causal).numpy()
    np.testing.assert_allclose(attention(q, k, v, causal=causal, backend=backend), want, rtol=0, atol=1e-5)


NON_FINITE = pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])


def spoiled(where, value, seed=8):
    """Positive q, k, v (1, 2, 40, 8) with ``value`` at row 21, dim 3 of ``where`` in head 0:
    positive, so an infinite product has the infinity's sign."""
    arrays = dict(zip("qkv", np.random.default_rng(seed).random((3, 1, 2, 40, 8)).astype(np.float32)))
    arrays[where][0, 0, 21, 3] = value
    return arrays["q"], arrays["k"], arrays["v"]


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("where", ["q", "k", "v"])
@NON_FINITE
@pytest.mark.parametrize("causal", [False, True])
def test_nan_and_inf_come_out_where_torch_sdpa_puts_them(backend, where, value, causal):
    """numba's kernel crashed on these (its fastmath assumed finite input). Every L here fits
    one tile, as it fits one block of torch's, so both put 0 x NaN where the same masked keys
    are. One difference: a row with no score above -inf (a NaN or -inf query) torch's CPU
    kernel takes for a fully masked row and writes 0; here softmax over it is 0/0, NaN."""
    torch = pytest.importorskip("torch")
    q, k, v = spoiled(where, value)
    with np.errstate(invalid="ignore"):
        got = attention(q, k, v, causal=causal, backend=backend)
    want = torch.nn.functional.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)),
                                                            is_causal=causal).numpy()
    if where == "q" and (np.isnan(value) or value < 0):
        want[0, 0, 21] = np.nan
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("where", ["q", "k", "v"])
@NON_FINITE
@pytest.mark.parametrize("causal", [False, True])
def test_numba_puts_nan_and_inf_where_numpy_does_across_tiles(small_tiles, where, value, causal):
    q, k, v = spoiled(where, value)
    with np.errstate(invalid="ignore"):
        want = attention(q, k, v, causal=causal, backend="numpy")
    np.testing.assert_allclose(attention(q, k, v, causal=causal, backend="numba"), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("where", ["q", "k", "v"])
@NON_FINITE
def test_numba_decode_puts_nan_and_inf_where_numpy_does(where, value):
    q, k, v = spoiled(where, value)
    q, lengths = q[:, :, 30], np.array([25])
    if where == "q":
        q[0, 0, 3] = value
    with np.errstate(invalid="ignore"):
        want = attention_decode(q, k, v, lengths, backend="numpy")
    np.testing.assert_allclose(attention_decode(q, k, v, lengths, backend="numba"), want, rtol=0, atol=1e-6)


def test_numba_cuda_kernels_under_the_simulator():
    out = run_under_cudasim("""
        import numpy as np
        from mlsys_ext.kernels import attention, attention_decode
        from tests.kernels.test_attention import naive_attention, random_qkv
        rng = np.random.default_rng(6)
        for dtype in (np.float32, np.float64):
            q, k, v = random_qkv(rng, 1, 2, 1, 40, 40, 8, dtype)
            for causal in (False, True):
                got = attention(q, k, v, causal=causal, backend="numba-cuda")
                assert got.dtype == dtype
                print(dtype.__name__, np.abs(got - naive_attention(q, k, v, causal)).max())
        q, k, v = rng.standard_normal((2, 2, 8)), *rng.standard_normal((2, 2, 1, 37, 8))
        lengths = np.array([3, 37])
        want = naive_attention(q[:, :, None], k, v, lengths=lengths)[:, :, 0]
        k[0, :, 3:] = v[0, :, 3:] = np.nan  # stale cache past lengths[0]: never read
        got = attention_decode(q, k, v, lengths, backend="numba-cuda")
        print("float64", np.abs(got - want).max())
    """)
    errors = [line.split() for line in out.strip().splitlines()]
    assert len(errors) == 5
    for dtype, error in errors:
        assert float(error) < TOLERANCE[getattr(np, dtype)]


# ---- checks at the edge -------------------------------------------------------------------------

def good(dtype=np.float32):
    return random_qkv(np.random.default_rng(7), 1, 4, 2, 5, 6, 3, dtype)


@pytest.mark.parametrize("change, error, message", [
    (lambda q, k, v: (q[0], k, v), ValueError, r"q must be 4-D \(B, H, Lq, D\)"),
    (lambda q, k, v: (q, k[:, :, :0], v[:, :, :0]), ValueError, "k must not be empty"),
    (lambda q, k, v: (q, k, v[:, :, :4]), ValueError, "k and v must have the same shape"),
    (lambda q, k, v: (np.concatenate([q, q]), k, v), ValueError, "same batch size B"),
    (lambda q, k, v: (q[..., :2], k, v), ValueError, "same head dim D"),
    (lambda q, k, v: (q[:, :3], k, v), ValueError, "multiple of k's 2 kv heads"),
    (lambda q, k, v: (q.astype(np.int64), k, v), TypeError, "q must be float32 or float64, got int64"),
    (lambda q, k, v: (q, k.astype(np.float16), v), TypeError, "k must be float32 or float64"),
    (lambda q, k, v: (q, k, v.astype(np.float64)), TypeError, "must share one dtype.*v float64"),
])
def test_bad_inputs_are_refused_by_name(change, error, message):
    with pytest.raises(error, match=message):
        attention(*change(*good()), backend="numpy")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"scale": float("nan")}, ValueError, "scale must be a finite number"),
    ({"scale": "big"}, ValueError, "scale must be a finite number"),
    ({"causal": "yes"}, TypeError, "causal must be True or False"),
    ({"threads": 0}, ValueError, "threads must be an integer"),
    ({"backend": "tpu"}, ValueError, "backend must be 'auto' or one of"),
])
def test_bad_options_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        attention(*good(), **kwargs)


@pytest.mark.parametrize("lengths, message", [
    (np.array([0]), r"lengths must lie in 1 \.\.\. 6"),
    (np.array([7]), r"lengths must lie in 1 \.\.\. 6"),
    (np.array([2, 3]), "lengths must be 1 integers"),
    (np.array([2.0]), "lengths must be 1 integers"),
])
def test_bad_decode_lengths_are_refused(lengths, message):
    q, k, v = good()
    with pytest.raises(ValueError, match=message):
        attention_decode(q[:, :, 0], k, v, lengths, backend="numpy")


def test_decode_checks_its_shapes():
    q, k, v = good()
    with pytest.raises(ValueError, match=r"q must be 3-D \(B, H, D\)"):
        attention_decode(q, k, v, np.array([1]))
    with pytest.raises(ValueError, match="k_cache and v_cache must have the same shape"):
        attention_decode(q[:, :, 0], k, v[:, :, :3], np.array([1]))


@pytest.mark.parametrize("backend", [name for name, (usable, _) in available_backends().items() if not usable])
def test_unusable_backends_say_why(backend):
    with pytest.raises(BackendUnavailable, match=f"backend '{backend}' cannot run here"):
        attention(*good(), backend=backend)
    with pytest.raises(BackendUnavailable, match=f"backend '{backend}' cannot run here"):
        attention_decode(good()[0][:, :, 0], *good()[1:], np.array([2]), backend=backend)
