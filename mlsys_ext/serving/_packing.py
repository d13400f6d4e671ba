"""Training-side batching: token budgets and sequence packing.

- ``token_budget_batches``: sequences sorted by length and cut into batches under a
  token budget, counted padded (batch size x longest sequence, as fairseq counts it)
  or unpadded (the sum of lengths).
- ``pack_sequences``: best-fit decreasing: each sequence, longest first, goes into the
  open row with the least room left that still fits it, else a new row.
- ``packed_batch``: the rows as arrays: tokens, position ids that restart at each
  sequence, segment ids, and the block-diagonal causal attention mask, so no token
  attends across a sequence boundary.
"""
from __future__ import annotations

import bisect
from numbers import Integral

import numpy as np

PAD = -1  # segment id of padding


def _lengths(lengths) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 1):
        raise ValueError("lengths must be a 1-D array of positive integers")
    return lengths.astype(np.int64)


def _budget(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def token_budget_batches(lengths, max_tokens: int, padded: bool = True) -> list[np.ndarray]:
    """Indices of the sequences in each batch, shortest sequences first, each batch as
    large as ``max_tokens`` allows. A sequence longer than the budget is refused."""
    lengths = _lengths(lengths)
    max_tokens = _budget("max_tokens", max_tokens)
    if lengths.size and lengths.max() > max_tokens:
        raise ValueError(f"a sequence of {lengths.max()} tokens does not fit max_tokens={max_tokens}")
    order = np.argsort(lengths, kind="stable")
    batches, start, used = [], 0, 0
    for position, index in enumerate(order):
        length = int(lengths[index])
        # sorted ascending, so the newest sequence is the longest: padded cost is count x it
        cost = (position - start + 1) * length if padded else used + length
        if cost > max_tokens:
            batches.append(order[start:position])
            start, used = position, 0
        used += length
    if start < len(order):
        batches.append(order[start:])
    return batches


def pack_sequences(lengths, capacity: int) -> list[list[int]]:
    """Best-fit decreasing: rows of sequence indices, each row's lengths summing to at most ``capacity``."""
    lengths = _lengths(lengths)
    capacity = _budget("capacity", capacity)
    if lengths.size and lengths.max() > capacity:
        raise ValueError(f"a sequence of {lengths.max()} tokens does not fit a row of {capacity}")
    rows: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # (room left, row number), kept sorted for the best-fit search
    for index in np.argsort(-lengths, kind="stable"):
        length = int(lengths[index])
        at = bisect.bisect_left(rooms, (length, -1))  # the tightest row with room >= length
        if at == len(rooms):
            rows.append([int(index)])
            bisect.insort(rooms, (capacity - length, len(rows) - 1))
        else:
            room, row = rooms.pop(at)
            rows[row].append(int(index))
            bisect.insort(rooms, (room - length, row))
    return rows


def packed_batch(sequences, rows: list[list[int]], capacity: int) -> dict[str, np.ndarray]:
    """``sequences`` (token arrays) laid out in ``rows``: tokens (rows, capacity), padded
    with 0; position ids restarting at 0 per sequence; segment ids (the sequence's index,
    PAD for padding); a boolean attention mask (rows, capacity, capacity), True where a
    token may attend: earlier or same positions of its own sequence."""
    capacity = _budget("capacity", capacity)
    tokens = np.zeros((len(rows), capacity), dtype=np.int64)
    positions = np.zeros((len(rows), capacity), dtype=np.int64)
    segments = np.full((len(rows), capacity), PAD, dtype=np.int64)
    for r, row in enumerate(rows):
        offset = 0
        for index in row:
            sequence = np.asarray(sequences[index])
            end = offset + len(sequence)
            if end > capacity:
                raise ValueError(f"row {r} holds {end} tokens, more than capacity {capacity}")
            tokens[r, offset:end] = sequence
            positions[r, offset:end] = np.arange(len(sequence))
            segments[r, offset:end] = index
            offset = end
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, :, None] != PAD)
    causal = np.tril(np.ones((capacity, capacity), dtype=bool))
    return {"tokens": tokens, "positions": positions, "segments": segments, "mask": same & causal}


def padding_waste(lengths, batches, padded_to: int | None = None) -> float:
    """The share of token slots that are padding: each batch padded to its longest
    sequence (``padded_to=None``) or to a fixed row length (packing)."""
    lengths = _lengths(lengths)
    slots = real = 0
    for batch in batches:
        batch_lengths = lengths[np.asarray(batch, dtype=np.int64)]
        real += int(batch_lengths.sum())
        slots += (len(batch_lengths) * int(batch_lengths.max())) if padded_to is None else padded_to
    return 1.0 - real / slots if slots else 0.0
