"""TinyTransformer: packed batches compute what unpacked ones do, and the KV cache matches full forward passes."""
import numpy as np
import pytest

from mlsys_ext.serving import TinyTransformer, pack_sequences, packed_batch


@pytest.fixture(scope="module")
def model():
    return TinyTransformer(layers=2, d_model=64, heads=4, kv_heads=2, vocab=97, max_len=256, seed=1,
                           dtype=np.float64)


def sequences(seed=0, count=9):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 97, size=int(n)) for n in rng.integers(2, 40, size=count)]


def test_the_loss_on_packed_rows_equals_the_loss_on_unpacked_ones(model):
    seqs = sequences()
    rows = pack_sequences([len(s) for s in seqs], 64)
    assert len(rows) < len(seqs)  # something was packed together
    batch = packed_batch(seqs, rows, 64)
    packed = model.loss(batch["tokens"], batch["positions"], batch["mask"], batch["segments"])
    # unpacked: one sequence per row, each weighted by the targets it predicts
    losses = [model.loss(s[None]) for s in seqs]
    weights = [len(s) - 1 for s in seqs]
    assert packed == pytest.approx(np.average(losses, weights=weights), rel=1e-10)
    # without the block-diagonal mask, tokens see the previous sequence: the loss changes
    leaky = model.loss(batch["tokens"], batch["positions"], np.tril(np.ones((64, 64), bool))[None].repeat(
        len(rows), 0), batch["segments"])
    assert abs(leaky - packed) > 1e-3


def test_chunked_prefill_and_decodes_reproduce_the_full_forward_pass(model):
    tokens = sequences(1, 1)[0]
    full = np.argmax(model.logits(tokens[None])[0], axis=-1)  # the greedy next token after each prefix
    for chunks in ([len(tokens)], [5, 7, len(tokens) - 12], [1] * len(tokens)):
        cache, done, produced = model.new_cache(2, 64), 0, []
        for size in chunks:
            piece = tokens[done:done + size]
            if size == 1 and done > 0:
                produced.append(model.forward_step(cache, [], [(1, int(piece[0]))])[0])
            else:
                produced.append(model.forward_step(cache, [(1, piece)], [])[0])
            done += size
        ends = np.cumsum(chunks) - 1
        assert np.array_equal(produced, full[ends]), chunks
        assert cache.tokens(1) == len(tokens) and cache.tokens(0) == 0


def test_sequences_in_one_step_do_not_disturb_each_other(model):
    a, b, c = sequences(2, 3)
    together = model.new_cache(3, 64)
    model.forward_step(together, [(0, a[:-1]), (2, b)], [])
    mixed = model.forward_step(together, [(1, c)], [(0, int(a[-1]))])
    alone = model.new_cache(3, 64)
    model.forward_step(alone, [(0, a[:-1])], [])
    assert model.forward_step(alone, [], [(0, int(a[-1]))])[0] == mixed[1]
    assert model.forward_step(alone, [(1, c)], [])[0] == mixed[0]


def test_swap_and_recompute_resume_where_the_sequence_stopped(model):
    tokens = sequences(3, 1)[0]
    cache = model.new_cache(2, 64)
    model.forward_step(cache, [(0, tokens[:-1])], [])
    expected = model.forward_step(model_copy := model.new_cache(2, 64), [(0, tokens)], [])[0]
    saved = cache.save(0)
    assert cache.tokens(0) == 0
    cache.load(1, saved)  # swapped back in, into another slot
    assert model.forward_step(cache, [], [(1, int(tokens[-1]))])[0] == expected
    cache.clear(1)  # recompute: prefill everything again
    assert model.forward_step(cache, [(1, tokens)], [])[0] == expected
    assert model_copy.tokens(0) == len(tokens)


def test_greedy_tokens_vary(model):
    cache = model.new_cache(1, 200)
    produced = [model.forward_step(cache, [(0, np.array([5, 9, 3]))], [])[0]]
    for _ in range(40):
        produced.append(model.forward_step(cache, [], [(0, int(produced[-1]))])[0])
    assert len(set(produced)) > 5  # random weights, but not collapsed onto one id


def test_bad_input_is_refused(model):
    cache = model.new_cache(2, 8)
    with pytest.raises(ValueError, match="slot must be an integer in 0 ... 1"):
        model.forward_step(cache, [(2, np.array([1]))], [])
    with pytest.raises(ValueError, match="token ids must lie in 0 ... 96"):
        model.forward_step(cache, [(0, np.array([97]))], [])
    with pytest.raises(ValueError, match="more than the cache's 8 tokens"):
        model.forward_step(cache, [(0, np.arange(9))], [])
    with pytest.raises(ValueError, match="exceeds max_len=256"):
        model.new_cache(1, 257)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        TinyTransformer(heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="a slot may appear once"):
        model.forward_step(cache, [(0, np.array([1]))], [(0, 2)])
