"""``TinyTransformer``: a small decoder-only transformer with random weights, in numpy,
with a KV cache, for serving real requests on a CPU and for checking packed training
batches.

Token and learned absolute position embeddings (so position ids that restart per
sequence make a packed row compute what separate rows compute), pre-RMSNorm blocks,
grouped-query attention (query head h reads KV head h // (heads // kv_heads)), a SiLU
MLP of 4 x d_model, a final norm and an untied output head. Serving flattens every
token of an iteration into one matrix for the projections and the MLP, as vLLM does;
only attention is per sequence, through the kernels lab's ``attention`` (a prompt's
first chunk) and ``attention_decode`` (later chunks and decodes, one row per token).
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from ..kernels import attention, attention_decode

_EPS = 1e-6


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class KVCache:
    """Keys and values of up to ``slots`` sequences of up to ``length`` tokens each, per
    layer (slots, kv_heads, length, head_dim); ``lengths[slot]``: tokens stored."""

    def __init__(self, layers: int, slots: int, kv_heads: int, length: int, head_dim: int, dtype):
        self.keys = [np.zeros((slots, kv_heads, length, head_dim), dtype) for _ in range(layers)]
        self.values = [np.zeros_like(k) for k in self.keys]
        self.lengths = np.zeros(slots, np.int64)

    @property
    def slots(self) -> int:
        return self.lengths.size

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    def check_slot(self, slot) -> int:
        if isinstance(slot, bool) or not isinstance(slot, Integral) or not 0 <= slot < self.slots:
            raise ValueError(f"slot must be an integer in 0 ... {self.slots - 1}, got {slot!r}")
        return int(slot)

    def tokens(self, slot) -> int:
        return int(self.lengths[self.check_slot(slot)])

    def clear(self, slot) -> None:
        """Forget a slot's tokens (a finished request, or a recompute preemption)."""
        self.lengths[self.check_slot(slot)] = 0

    def save(self, slot) -> tuple:
        """A copy of the slot's keys and values (swapped out to host memory); the slot is cleared."""
        slot = self.check_slot(slot)
        used = self.lengths[slot]
        saved = ([k[slot, :, :used].copy() for k in self.keys], [v[slot, :, :used].copy() for v in self.values])
        self.lengths[slot] = 0
        return saved

    def load(self, slot, saved: tuple) -> None:
        """Put a saved copy back into a slot (swapped in)."""
        slot = self.check_slot(slot)
        keys, values = saved
        used = keys[0].shape[1]
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.keys[layer][slot, :, :used] = k
            self.values[layer][slot, :, :used] = v
        self.lengths[slot] = used


class TinyTransformer:
    """A decoder-only transformer with random weights (seeded) on CPU.

    ``logits``/``loss`` run whole (possibly packed) batches; ``new_cache`` and
    ``forward_step`` serve: one call runs one iteration of a serving loop."""

    def __init__(self, layers: int = 2, d_model: int = 128, heads: int = 4, kv_heads: int = 2, vocab: int = 512,
                 max_len: int = 4096, seed=0, dtype=np.float32, backend: str = "numpy", threads: int = 1):
        self.layers, self.d_model, self.heads, self.kv_heads, self.vocab, self.max_len = (
            _positive(name, value) for name, value in (("layers", layers), ("d_model", d_model), ("heads", heads),
                                                       ("kv_heads", kv_heads), ("vocab", vocab),
                                                       ("max_len", max_len)))
        if heads % kv_heads or d_model % heads:
            raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads}) and divide d_model "
                             f"({d_model})")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.head_dim = d_model // heads
        self.backend, self.threads = backend, threads
        rng = np.random.default_rng(seed)

        def weight(rows, columns):
            return (rng.standard_normal((rows, columns)) / np.sqrt(rows)).astype(self.dtype)

        kv_width = kv_heads * self.head_dim
        self.embedding = rng.standard_normal((vocab, d_model)).astype(self.dtype)
        self.position = (0.5 * rng.standard_normal((max_len, d_model))).astype(self.dtype)
        # per layer: fused q|k|v projection, output projection, MLP up and down
        self.qkv = [weight(d_model, d_model + 2 * kv_width) for _ in range(layers)]
        self.out = [weight(d_model, d_model) for _ in range(layers)]
        self.up = [weight(d_model, 4 * d_model) for _ in range(layers)]
        self.down = [weight(4 * d_model, d_model) for _ in range(layers)]
        self.head = weight(d_model, vocab)

    # ---- shared pieces ----------------------------------------------------------------------

    def _check_tokens(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.dtype.kind not in "iu":
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab):
            raise ValueError(f"token ids must lie in 0 ... {self.vocab - 1}, got {tokens.min()} ... {tokens.max()}")
        return tokens.astype(np.int64)

    @staticmethod
    def _norm(x):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + _EPS)

    def _embed(self, tokens, positions):
        if positions.size and (positions.min() < 0 or positions.max() >= self.max_len):
            raise ValueError(f"positions must lie in 0 ... {self.max_len - 1} (max_len)")
        return self.embedding[tokens] + self.position[positions]

    def _split(self, projected):
        """(..., d_model + 2 kv_width) -> q (..., H, D), k and v (..., Hkv, D)."""
        width = self.kv_heads * self.head_dim
        q, k, v = np.split(projected, [self.d_model, self.d_model + width], axis=-1)
        shape = projected.shape[:-1]
        return (q.reshape(*shape, self.heads, self.head_dim), k.reshape(*shape, self.kv_heads, self.head_dim),
                v.reshape(*shape, self.kv_heads, self.head_dim))

    def _mlp(self, layer, x):
        hidden = self._norm(x) @ self.up[layer]
        return x + (hidden / (1.0 + np.exp(-hidden))) @ self.down[layer]

    # ---- whole batches ----------------------------------------------------------------------

    def logits(self, tokens, positions=None, mask=None) -> np.ndarray:
        """Logits (B, L, vocab) of ``tokens`` (B, L). ``positions`` (B, L) default to
        0 ... L-1 per row; ``mask`` (B, L, L), True where query i may see key j, defaults
        to causal (then the kernels' flash attention runs; with a mask, a masked softmax,
        rows that see nothing, such as padding, give zeros)."""
        tokens = self._check_tokens(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be 2-D (B, L), got shape {tokens.shape}")
        batch, length = tokens.shape
        positions = np.broadcast_to(np.arange(length), tokens.shape) if positions is None else np.asarray(positions)
        if positions.shape != tokens.shape:
            raise ValueError(f"positions must have the tokens' shape {tokens.shape}, got {positions.shape}")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (batch, length, length):
                raise ValueError(f"mask must be (B, L, L) = {(batch, length, length)}, got {mask.shape}")
        x = self._embed(tokens, positions)
        group = self.heads // self.kv_heads
        for layer in range(self.layers):
            q, k, v = (a.transpose(0, 2, 1, 3) for a in self._split(self._norm(x) @ self.qkv[layer]))
            if mask is None:
                mixed = attention(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v),
                                  causal=True, backend=self.backend, threads=self.threads)
            else:
                k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
                scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(self.head_dim)
                scores = np.where(mask[:, None], scores, -np.inf)
                top = scores.max(axis=-1, keepdims=True)
                weights = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
                total = weights.sum(axis=-1, keepdims=True)
                mixed = (weights / np.where(total > 0, total, 1.0)) @ v
            x = x + mixed.transpose(0, 2, 1, 3).reshape(batch, length, self.d_model) @ self.out[layer]
            x = self._mlp(layer, x)
        return self._norm(x) @ self.head

    def loss(self, tokens, positions=None, mask=None, segments=None) -> float:
        """Mean next-token cross-entropy: position t predicts token t + 1 where both belong
        to one sequence (``segments`` equal and not -1, the padding id); ``segments=None``:
        each row is one sequence."""
        tokens = self._check_tokens(tokens)
        logits = self.logits(tokens, positions, mask).astype(np.float64)
        segments = np.zeros(tokens.shape, np.int64) if segments is None else np.asarray(segments)
        if segments.shape != tokens.shape:
            raise ValueError(f"segments must have the tokens' shape {tokens.shape}, got {segments.shape}")
        counted = (segments[:, :-1] == segments[:, 1:]) & (segments[:, :-1] != -1)
        predicting = logits[:, :-1][counted]
        targets = tokens[:, 1:][counted]
        top = predicting.max(axis=-1, keepdims=True)
        log_total = np.log(np.exp(predicting - top).sum(axis=-1)) + top[:, 0]
        return float((log_total - predicting[np.arange(targets.size), targets]).mean())

    # ---- serving ----------------------------------------------------------------------------

    def new_cache(self, slots: int, length: int) -> KVCache:
        length = _positive("length", length)
        if length > self.max_len:
            raise ValueError(f"a cache of {length} positions exceeds max_len={self.max_len}")
        return KVCache(self.layers, _positive("slots", slots), self.kv_heads, length, self.head_dim, self.dtype)

    def forward_step(self, cache: KVCache, prefills, decodes) -> np.ndarray:
        """One serving iteration. ``prefills``: (slot, tokens) appended after the slot's
        stored tokens (a chunk may continue an earlier one); ``decodes``: (slot, token),
        one token each. Returns the greedy next token after each prefill, then each decode."""
        pieces = [(cache.check_slot(slot), self._check_tokens(np.atleast_1d(tokens))) for slot, tokens in prefills]
        pieces += [(cache.check_slot(slot), self._check_tokens(np.array([token]))) for slot, token in decodes]
        if not pieces:
            return np.empty(0, np.int64)
        slots = [slot for slot, _ in pieces]
        if len(set(slots)) != len(slots):
            raise ValueError("a slot may appear once per iteration")
        starts = np.array([cache.lengths[slot] for slot in slots])
        sizes = np.array([tokens.size for _, tokens in pieces])
        if (sizes < 1).any():
            raise ValueError("a prefill needs at least one token")
        if (starts + sizes > cache.length).any():
            slot = slots[int(np.argmax(starts + sizes > cache.length))]
            raise ValueError(f"slot {slot} would hold more than the cache's {cache.length} tokens")
        slot_of_token = np.repeat(slots, sizes)
        position = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes)])
        x = self._embed(np.concatenate([tokens for _, tokens in pieces]), position)
        # each piece's first chunk (nothing stored before it) runs the flash kernel; every
        # other token is a row of attention_decode over its slot's cache
        fresh = [i for i, start in enumerate(starts) if start == 0 and sizes[i] > 1]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        decode_rows = np.ones(x.shape[0], bool)
        for i in fresh:
            decode_rows[offsets[i]:offsets[i + 1]] = False
        decode_rows = np.flatnonzero(decode_rows)
        for layer in range(self.layers):
            q, k, v = self._split(self._norm(x) @ self.qkv[layer])
            keys, values = cache.keys[layer], cache.values[layer]
            keys[slot_of_token, :, position] = k
            values[slot_of_token, :, position] = v
            mixed = np.empty_like(q)
            for i in fresh:
                rows = slice(offsets[i], offsets[i + 1])
                mixed[rows] = attention(q[None, rows].transpose(0, 2, 1, 3).copy(),
                                        k[None, rows].transpose(0, 2, 1, 3).copy(),
                                        v[None, rows].transpose(0, 2, 1, 3).copy(), causal=True,
                                        backend=self.backend, threads=self.threads)[0].transpose(1, 0, 2)
            if decode_rows.size:
                seen = position[decode_rows] + 1
                window = int(seen.max())
                mixed[decode_rows] = attention_decode(
                    np.ascontiguousarray(q[decode_rows]), keys[slot_of_token[decode_rows], :, :window],
                    values[slot_of_token[decode_rows], :, :window], seen, backend=self.backend,
                    threads=self.threads)
            x = x + mixed.reshape(-1, self.d_model) @ self.out[layer]
            x = self._mlp(layer, x)
        cache.lengths[slots] = starts + sizes
        last = offsets[1:] - 1
        return np.argmax(self._norm(x[last]) @ self.head, axis=-1).astype(np.int64)
