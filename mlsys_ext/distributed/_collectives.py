"""All-reduce on the actor cluster: ring, binomial tree and parameter server.

Each rank is an actor (rank r on worker r mod n); every chunk it sends is a real
message to a peer actor, on the direct socket between them (shared memory above the
cluster's threshold), under the cluster's faults and in its trace. A call runs in
two steps, as nccl-tests times one: the driver loads every rank's input, then starts
them all; each rank's ``run`` defers its answer (``context().defer()``) and sends it
once its last message has arrived, so its thread keeps receiving meanwhile.

Payload bytes (the arrays' own bytes that ranks send, headers apart) follow the
textbook formulas: ring 2(n-1)S/n per rank (reduce-scatter then all-gather, 2(n-1)
steps of S/n), binomial tree S up and S per child down (2(n-1)S in all), parameter
server S up and S down per rank. ``algbw = S / t`` and ``busbw = algbw x 2(n-1)/n``
as nccl-tests defines them for all-reduce, t from the first rank's start to the last
rank's end on the one CLOCK_MONOTONIC the processes share.
"""
from __future__ import annotations

import itertools
import numbers
import time

import numpy as np

from ..cluster import ActorTimeoutError, Cluster, context

ALGORITHMS = ("ring", "tree", "ps")


def ring_bytes_per_rank(size_bytes: int, ranks: int) -> float:
    """Payload bytes each rank sends in a ring all-reduce of ``size_bytes``: 2(n-1)S/n."""
    return 2.0 * (ranks - 1) * size_bytes / ranks


def bus_bandwidth(algbw: float, ranks: int) -> float:
    """nccl-tests' bus bandwidth of an all-reduce: ``algbw x 2(n-1)/n``, the rate each link
    carries in an optimal ring, comparable across rank counts."""
    return algbw * 2.0 * (ranks - 1) / ranks


def _bounds(length: int, parts: int) -> np.ndarray:
    """``parts + 1`` offsets splitting ``length`` items as evenly as ``np.array_split`` does."""
    return np.array([0, *itertools.accumulate(len(part) for part in np.array_split(np.empty(length), parts))])


class _Call:
    """One all-reduce as a rank sees it: its working copy, what it sent, and messages early."""

    __slots__ = ("algorithm", "work", "reply", "start", "sent_bytes", "messages", "step", "early", "waiting")

    def __init__(self, algorithm: str, array: np.ndarray):
        self.algorithm = algorithm
        self.work = np.array(array, copy=True).ravel()  # the input may be a read-only shared view
        self.reply = None
        self.start = 0.0
        self.sent_bytes = self.messages = 0
        self.step = 0  # ring: the next step to take in
        # what came before ``run`` or out of order; ring: step -> chunk; tree: ("up", child) -> sum,
        # ("sent", "up"); parameter server: ("shard", j) -> sum, ("taken", j)
        self.early: dict = {}
        self.waiting = 0  # parameter server: shards still to come back


class _Rank:
    """One rank of a ``Collective``: ring, tree and parameter-server all-reduce, event driven."""

    def __init__(self, rank: int, ranks: int):
        self.rank, self.ranks = rank, ranks
        self.peers: list = []
        self.servers: list = []
        self.calls: dict[int, _Call] = {}
        self.finished: set[int] = set()  # late or duplicate messages of these calls are ignored

    def connect(self, peers, servers) -> None:
        self.peers, self.servers = peers, servers

    def load(self, call: int, algorithm: str, array) -> None:
        early = self.calls[call].early if call in self.calls else {}  # what peers sent before this load
        self.calls[call] = _Call(algorithm, array)
        self.calls[call].early = early

    def forget(self, call: int) -> None:
        """Drop a call the driver gave up on (a message of it was lost)."""
        self.calls.pop(call, None)
        self.finished.add(call)

    def run(self, call: int):
        c = self.calls[call]
        c.reply, c.start = context().defer(), time.monotonic()
        if self.ranks == 1:
            self._finish(call)
        elif c.algorithm == "ring":
            self._ring_send(call, c, 0)
            self._ring_take(call, c)
        elif c.algorithm == "tree":
            self._tree_up_if_ready(call, c)
        else:
            bounds = _bounds(len(c.work), len(self.servers))
            c.waiting = len(self.servers)
            for j, server in enumerate(self.servers):
                self._send(c, server.push, call, self.rank, c.work[bounds[j]:bounds[j + 1]])
            self._ps_take(call, c)

    def _send(self, c: _Call, method, *args) -> None:
        c.sent_bytes += args[-1].nbytes
        c.messages += 1
        method.send(*args)

    def _finish(self, call: int) -> None:
        c = self._done(call)
        c.reply.send((c.work, self._stats(c)))

    def _done(self, call: int) -> _Call:
        """The call, whose sum ``work`` now holds, taken out of those in progress."""
        self.finished.add(call)
        return self.calls.pop(call)

    def _stats(self, c: _Call) -> dict:
        return {"rank": self.rank, "start": c.start, "end": time.monotonic(), "sent_bytes": c.sent_bytes,
                "messages": c.messages}

    def _live(self, call: int) -> _Call | None:
        """The call a message belongs to, or None for one finished or forgotten. A peer may
        start a call before this rank has its input (data-parallel SGD loads and runs each
        round in one message): its messages wait in a placeholder for the load."""
        if call in self.finished:
            return None
        if call not in self.calls:
            self.calls[call] = _Call("", np.empty(0))
        return self.calls[call]

    # -- ring: step k sends one chunk right and takes one from the left --------------
    def _ring_chunk(self, k: int) -> int:
        """The chunk this rank sends at step ``k`` (reduce-scatter for k < n - 1, then all-gather)."""
        n = self.ranks
        return (self.rank - k) % n if k < n - 1 else (self.rank + 1 - (k - n + 1)) % n

    def _ring_send(self, call: int, c: _Call, k: int) -> None:
        bounds = _bounds(len(c.work), self.ranks)
        chunk = self._ring_chunk(k)
        self._send(c, self.peers[(self.rank + 1) % self.ranks].ring, call, k, c.work[bounds[chunk]:bounds[chunk + 1]])

    def ring(self, call: int, k: int, data) -> None:
        c = self._live(call)
        if c is None or k < c.step or k in c.early:
            return  # a duplicate copy, or a call already done
        c.early[k] = data
        if c.reply is not None:
            self._ring_take(call, c)

    def _ring_take(self, call: int, c: _Call) -> None:
        """Take in the left neighbour's chunks in step order, forwarding each as the next step."""
        n, bounds = self.ranks, _bounds(len(c.work), self.ranks)
        while c.step in c.early:
            k = c.step
            data = c.early.pop(k)
            chunk = (self.rank - k - 1) % n if k < n - 1 else (self.rank - (k - n + 1)) % n
            part = c.work[bounds[chunk]:bounds[chunk + 1]]
            if k < n - 1:
                part += data
            else:
                part[:] = data
            c.step += 1
            if c.step == 2 * (n - 1):
                self._finish(call)
                return
            self._ring_send(call, c, c.step)

    # -- binomial tree: reduce up to rank 0, broadcast back down ----------------------
    def _children(self) -> list[int]:
        r, n = self.rank, self.ranks
        span = (r & -r) if r else 1 << (n - 1).bit_length()
        return [r + (1 << i) for i in range(span.bit_length() - 1) if r + (1 << i) < n]

    def tree_up(self, call: int, child: int, data) -> None:
        c = self._live(call)
        if c is None or ("up", child) in c.early:
            return
        c.early[("up", child)] = data
        if c.reply is not None:
            self._tree_up_if_ready(call, c)

    def _tree_up_if_ready(self, call: int, c: _Call) -> None:
        children = self._children()
        if any(("up", child) not in c.early for child in children) or ("sent", "up") in c.early:
            return
        for child in children:
            c.work += c.early[("up", child)]
        c.early[("sent", "up")] = True
        if self.rank == 0:
            self._tree_down_and_finish(call, c)
        else:
            self._send(c, self.peers[self.rank - (self.rank & -self.rank)].tree_up, call, self.rank, c.work)

    def tree_down(self, call: int, data) -> None:
        c = self._live(call)  # the parent sends the sum only once this rank's own went up
        if c is None:
            return
        c.work[:] = data
        self._tree_down_and_finish(call, c)

    def _tree_down_and_finish(self, call: int, c: _Call) -> None:
        for child in self._children():
            self._send(c, self.peers[child].tree_down, call, c.work)
        self._finish(call)

    # -- parameter server: shards up to the servers, sums back -----------------------
    def pulled(self, call: int, shard: int, data) -> None:
        c = self._live(call)
        if c is None or ("shard", shard) in c.early or ("taken", shard) in c.early:
            return
        c.early[("shard", shard)] = data
        if c.reply is not None:
            self._ps_take(call, c)

    def _ps_take(self, call: int, c: _Call) -> None:
        bounds = _bounds(len(c.work), len(self.servers))
        for key in [key for key in c.early if key[0] == "shard"]:
            shard = key[1]
            c.work[bounds[shard]:bounds[shard + 1]] = c.early.pop(key)
            c.early[("taken", shard)] = True
            c.waiting -= 1
        if c.waiting == 0 and c.reply is not None:
            self._finish(call)


class _Server:
    """One parameter-server shard: sums the ranks' pushes of a call, sends the sum to each."""

    def __init__(self, index: int, ranks: int):
        self.index, self.ranks = index, ranks
        self.pushes: dict[int, dict[int, np.ndarray]] = {}
        self.finished: set[int] = set()
        self.stats: dict[int, tuple[int, int]] = {}  # call -> (payload bytes sent, messages)
        self.peers: list = []

    def connect(self, peers) -> None:
        self.peers = peers

    def push(self, call: int, rank: int, data) -> None:
        if call in self.finished:
            return
        pushes = self.pushes.setdefault(call, {})
        pushes.setdefault(rank, data)  # a duplicate copy is ignored
        if len(pushes) < self.ranks:
            return
        total = np.array(pushes[0], copy=True)
        for rank in range(1, self.ranks):  # in rank order, so every run adds alike
            total += pushes[rank]
        del self.pushes[call]
        self.finished.add(call)
        for peer in self.peers:
            peer.pulled.send(call, self.index, total)
        self.stats[call] = (total.nbytes * self.ranks, self.ranks)

    def sent(self, call: int) -> tuple[int, int]:
        return self.stats.pop(call, (0, 0))

    def forget(self, call: int) -> None:
        self.pushes.pop(call, None)
        self.finished.add(call)
        self.stats.pop(call, None)


_instances = itertools.count()


class Collective:
    """``ranks`` rank actors on ``cluster`` (rank r on worker r mod n) and ``servers``
    parameter-server actors, for all-reduce by ring, binomial tree or parameter server.

        coll = Collective(cluster, ranks=4)
        sums = coll.allreduce([np.ones(1_000_000, np.float32)] * 4, algorithm="ring")
        coll.stats   # one row per call: nccl-tests' columns and the payload bytes

    The actors live as long as the cluster. ``timeout``: how long a call may take before
    it is given up (a message lost to a ``drop`` fault), raising ActorTimeoutError.
    """

    def __init__(self, cluster: Cluster, ranks: int | None = None, servers: int = 1, timeout: float | None = None):
        if not isinstance(cluster, Cluster):
            raise TypeError(f"cluster must be a mlsys_ext.cluster.Cluster, got {type(cluster).__name__}")
        ranks = cluster.n if ranks is None else ranks
        for name, value in (("ranks", ranks), ("servers", servers)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                    or not timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.cluster, self.ranks, self.n_servers = cluster, int(ranks), int(servers)
        self.timeout = cluster.timeout if timeout is None else float(timeout)
        prefix = f"allreduce{next(_instances)}"
        workers = cluster.workers
        self._ranks = [cluster.spawn(_Rank, r, self.ranks, name=f"{prefix}-rank{r}", worker=workers[r % len(workers)])
                       for r in range(self.ranks)]
        self._servers = [cluster.spawn(_Server, j, self.ranks, name=f"{prefix}-ps{j}",
                                       worker=workers[(self.ranks + j) % len(workers)])
                         for j in range(self.n_servers)]
        cluster.gather([r.connect.remote(self._ranks, self._servers) for r in self._ranks]
                       + [s.connect.remote(self._ranks) for s in self._servers], timeout=self.timeout)
        self._calls = itertools.count()
        self._rows: list[dict] = []

    def allreduce(self, arrays, algorithm: str = "ring") -> list[np.ndarray]:
        """The element-wise sum of ``arrays`` (one per rank, same shape and dtype), as every
        rank holds it at the end: one array per rank, in rank order."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        arrays = self._check(arrays)
        call = next(self._calls)
        started = time.perf_counter()
        try:
            self.cluster.gather([r.load.remote(call, algorithm, a) for r, a in zip(self._ranks, arrays)],
                                timeout=self.timeout)
            answers = self.cluster.gather([r.run.remote(call) for r in self._ranks], timeout=self.timeout)
            served = ([s.sent.remote(call) for s in self._servers] if algorithm == "ps" and self.ranks > 1
                      else [])
            server_sent = self.cluster.gather(served, timeout=self.timeout)
        except ActorTimeoutError as exc:
            for actor in [*self._ranks, *self._servers]:
                actor.forget.send(call)
            raise ActorTimeoutError(f"all-reduce ({algorithm}, {self.ranks} ranks) did not finish within "
                                    f"{self.timeout:g} s: a message between ranks was lost or held "
                                    f"(network: {self.cluster.network()}); nothing was returned") from exc
        call_seconds = time.perf_counter() - started
        stats = [s for _, s in answers]
        seconds = max(s["end"] for s in stats) - min(s["start"] for s in stats)
        size = arrays[0].nbytes
        algbw = size / seconds if seconds > 0 else float("inf")
        self._rows.append({
            "algorithm": algorithm, "ranks": self.ranks, "servers": self.n_servers if algorithm == "ps" else 0,
            "count": arrays[0].size, "type": arrays[0].dtype.name, "size_bytes": size,
            "sent_bytes_per_rank": [s["sent_bytes"] for s in stats],
            "server_sent_bytes": sum(b for b, _ in server_sent),
            "messages": sum(s["messages"] for s in stats) + sum(m for _, m in server_sent),
            "seconds": seconds, "call_seconds": call_seconds,
            "algbw": algbw, "busbw": bus_bandwidth(algbw, self.ranks),
        })
        shape = arrays[0].shape
        return [np.asarray(out).reshape(shape) for out, _ in answers]

    @property
    def stats(self):
        """One row per all-reduce: algorithm, ranks, servers, count, type, size_bytes,
        sent_bytes_per_rank (payload, a list), server_sent_bytes, messages, seconds (first
        rank's start to last rank's end), call_seconds (the whole call, loading inputs and
        returning results included), algbw and busbw (bytes/s, nccl-tests' definitions)."""
        import pandas as pd

        return pd.DataFrame(self._rows)

    def _check(self, arrays) -> list[np.ndarray]:
        if isinstance(arrays, np.ndarray) or not hasattr(arrays, "__len__"):
            raise TypeError(f"arrays must be a list of {self.ranks} arrays, one per rank, got "
                            f"{type(arrays).__name__}")
        if len(arrays) != self.ranks:
            raise ValueError(f"arrays must hold one array per rank ({self.ranks}), got {len(arrays)}")
        arrays = [np.asarray(a) for a in arrays]
        first = arrays[0]
        if first.dtype.kind not in "iuf":
            raise TypeError(f"arrays must be numeric (integer or float), got dtype {first.dtype}")
        for r, a in enumerate(arrays):
            if a.shape != first.shape or a.dtype != first.dtype:
                raise ValueError(f"every rank's array must have rank 0's shape {first.shape} and dtype "
                                 f"{first.dtype}; rank {r} has {a.shape} {a.dtype}")
        return arrays
