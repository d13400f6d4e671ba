"""Token budgets and best-fit-decreasing packing: budgets respected, every sequence once, masks block-diagonal."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.serving import pack_sequences, packed_batch, padding_waste, token_budget_batches

lengths_strategy = st.lists(st.integers(1, 64), min_size=1, max_size=120)


@given(lengths=lengths_strategy, budget=st.integers(64, 600), padded=st.booleans())
@settings(max_examples=80, deadline=None)
def test_token_budget_batches_cover_every_sequence_within_the_budget(lengths, budget, padded):
    batches = token_budget_batches(lengths, budget, padded=padded)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    lengths = np.array(lengths)
    for batch in batches:
        cost = len(batch) * lengths[batch].max() if padded else lengths[batch].sum()
        assert cost <= budget
    # greedy over the sorted order: adding the next batch's first sequence would have broken the budget
    for batch, following in zip(batches, batches[1:]):
        grown = np.append(batch, following[0])
        cost = len(grown) * lengths[grown].max() if padded else lengths[grown].sum()
        assert cost > budget


def test_padded_budgets_hold_fewer_sequences_than_unpadded():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    padded = token_budget_batches(lengths, 4096, padded=True)
    unpadded = token_budget_batches(lengths, 4096, padded=False)
    assert len(padded) > len(unpadded)
    assert padding_waste(lengths, padded) < 0.05  # sorted by length: little padding within a batch


@given(lengths=lengths_strategy, capacity=st.integers(64, 256))
@settings(max_examples=80, deadline=None)
def test_best_fit_decreasing_fills_rows_without_overflow(lengths, capacity):
    rows = pack_sequences(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    lengths = np.array(lengths)
    used = [lengths[row].sum() for row in rows]
    assert max(used) <= capacity
    # a row is opened only for a sequence no earlier row could take: so no two rows fit in one
    assert not any(used[i] + used[j] <= capacity for i in range(len(used)) for j in range(i))


def test_packed_rows_restart_positions_and_mask_across_sequences():
    sequences = [np.array([11, 12, 13]), np.array([21, 22]), np.array([31, 32, 33, 34])]
    rows = pack_sequences([3, 2, 4], capacity=6)
    batch = packed_batch(sequences, rows, capacity=6)
    assert rows == [[2, 1], [0]]
    assert batch["tokens"].tolist() == [[31, 32, 33, 34, 21, 22], [11, 12, 13, 0, 0, 0]]
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    mask = batch["mask"][0]
    assert mask[3, :4].all() and not mask[3, 4:].any()  # the first sequence sees only itself, causally
    assert mask[5].tolist() == [False] * 4 + [True, True] and not mask[4, 5]
    assert not batch["mask"][1][:, 3:].any()  # padding is never attended to
    assert padding_waste([3, 2, 4], rows, padded_to=6) == pytest.approx(1 - 9 / 12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="does not fit max_tokens=10"):
        token_budget_batches([5, 11], 10)
    with pytest.raises(ValueError, match="does not fit a row of 4"):
        pack_sequences([5], 4)
    with pytest.raises(ValueError, match="positive integers"):
        pack_sequences([0, 3], 4)
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        pack_sequences([1], 0)
