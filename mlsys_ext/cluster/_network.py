"""The one network layer every message crosses: faults and the message trace.

Endpoints are actor names and ``"driver"``; a partition group or a link may also
name a worker (``"w1"``), which stands for every actor on it.

A ``Network`` decides each message's fate where the message is sent. On the
local backend that is in two kinds of places: the driver's Network decides
driver -> actor calls and the replies to the driver; each worker keeps a copy
that decides what its actors send each other on their direct sockets. The
driver's copy is the master: ``export()`` gives its settings (partition,
faults, paused workers) and ``load()`` installs them in a worker's copy. Every
link (ordered pair of endpoints) draws its fates from its own RNG, seeded from
the cluster's seed and the two names, so the fates of a link's messages do not
depend on which process decides them, nor on traffic on other links.
"""
from __future__ import annotations

import heapq
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

DRIVER = "driver"


@dataclass(frozen=True)
class LinkFaults:
    drop: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    duplicate: float = 0.0

    @property
    def is_clean(self) -> bool:
        return self.drop == 0.0 and self.delay == (0.0, 0.0) and self.duplicate == 0.0


def make_faults(drop=0.0, delay=0.0, duplicate=0.0) -> LinkFaults:
    """Validate fault settings at the edge and say which one is wrong."""
    for label, p in (("drop", drop), ("duplicate", duplicate)):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{label} must be a probability in [0, 1], got {p!r}")
    if isinstance(delay, (int, float)):
        delay = (float(delay), float(delay))
    try:
        lo, hi = (float(d) for d in delay)
    except (TypeError, ValueError):
        raise ValueError(f"delay must be seconds or a (low, high) pair of seconds, got {delay!r}") from None
    if not 0.0 <= lo <= hi:
        raise ValueError(f"delay must satisfy 0 <= low <= high, got ({lo}, {hi})")
    return LinkFaults(float(drop), (lo, hi), float(duplicate))


class Network:
    """Decides the fate of each message and records it.

    ``locate(name)`` maps an actor name to its worker name (or None), so that
    partitions and links may be given by worker.
    """

    def __init__(self, locate, seed=None, trace_size: int = 10_000, t0: float | None = None):
        self._locate = locate
        self.seed = seed
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._lock = threading.Lock()
        self._groups: list[frozenset[str]] = []
        self._default = LinkFaults()
        self._links: dict[frozenset[str], LinkFaults] = {}
        self._paused: frozenset[str] = frozenset()  # workers whose messages wait at their senders
        self.trace: deque = deque(maxlen=trace_size)
        self.t0 = time.monotonic() if t0 is None else t0  # CLOCK_MONOTONIC: one clock for every process
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.links: dict[tuple[str, str], tuple[int, int]] = {}  # (src, dst) -> messages, bytes sent
        self._clean = True

    # -- configuration -------------------------------------------------
    def partition(self, groups) -> None:
        sets = [frozenset(g) for g in groups]
        seen: set[str] = set()
        for g in sets:
            if not g:
                raise ValueError("a partition group is empty")
            overlap = seen & g
            if overlap:
                raise ValueError(f"{sorted(overlap)} appear in more than one partition group")
            seen |= g
        self._groups = sets
        self._refresh()

    def heal(self) -> None:
        self._groups = []
        self._refresh()

    def set_faults(self, faults: LinkFaults, link=None) -> None:
        if link is None:
            self._default = faults
        else:
            a, b = link
            key = frozenset((a, b))
            if faults.is_clean:
                self._links.pop(key, None)
            else:
                self._links[key] = faults
        self._refresh()

    def reset(self) -> None:
        self._groups = []
        self._default = LinkFaults()
        self._links.clear()
        self._refresh()

    def settings(self) -> dict:
        return {
            "partition": [sorted(g) for g in self._groups],
            "default": self._default,
            "links": {tuple(sorted(k)): v for k, v in self._links.items()},
        }

    def set_paused(self, worker: str, paused: bool) -> None:
        """Messages to the actors of a paused worker wait at their senders (``holds``)."""
        self._paused = self._paused | {worker} if paused else self._paused - {worker}

    def holds(self, dst: str) -> bool:
        """Whether a message to ``dst`` must wait: its worker is paused."""
        return bool(self._paused) and (dst in self._paused or self._locate(dst) in self._paused)

    def export(self) -> tuple:
        """Everything another process's copy needs to decide as this one does (see ``load``)."""
        return (list(self._groups), self._default, dict(self._links), self._paused)

    def load(self, state: tuple) -> None:
        """Install settings ``export()`` gave (a worker's copy of the driver's Network)."""
        groups, default, links, paused = state
        with self._lock:
            self._groups, self._default, self._links, self._paused = groups, default, links, paused
            self._refresh()

    def _refresh(self) -> None:
        self._clean = not self._groups and self._default.is_clean and not self._links

    # -- decisions -----------------------------------------------------
    def _group_of(self, name: str):
        worker = self._locate(name)
        for i, g in enumerate(self._groups):
            if name in g or (worker is not None and worker in g):
                return i
        return None

    def _faults_for(self, src: str, dst: str) -> LinkFaults:
        if self._links:
            for a in (src, self._locate(src)):
                for b in (dst, self._locate(dst)):
                    f = self._links.get(frozenset((a, b)))
                    if f is not None:
                        return f
        return self._default

    def decide(self, kind: str, src: str, dst: str, method: str, nbytes: int) -> list[float]:
        """Delays (seconds) of the copies to deliver; an empty list means dropped."""
        now = time.monotonic() - self.t0
        if self._clean:
            delays = [0.0]
            self._record(now, kind, src, dst, method, nbytes, "delivered")
            return delays
        if self._groups:
            gs, gd = self._group_of(src), self._group_of(dst)
            if gs is not None and gd is not None and gs != gd:
                self._record(now, kind, src, dst, method, nbytes, "dropped")
                return []
        f = self._faults_for(src, dst)
        with self._lock:
            rng = self._rngs.get((src, dst))
            if rng is None:
                rng = self._rngs[src, dst] = self._link_rng(src, dst)
            if f.drop and rng.random() < f.drop:
                fate_delays = []
            else:
                copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
                lo, hi = f.delay
                fate_delays = [rng.uniform(lo, hi) if hi > 0 else 0.0 for _ in range(copies)]
        if not fate_delays:
            self._record(now, kind, src, dst, method, nbytes, "dropped")
        for i, d in enumerate(fate_delays):
            fate = "duplicated" if i else ("delayed" if d > 0 else "delivered")
            self._record(now, kind, src, dst, method, nbytes, fate)
        return fate_delays

    def _link_rng(self, src: str, dst: str) -> random.Random:
        # a str seed goes through SHA-512: the same stream in every process, whatever PYTHONHASHSEED
        return random.Random(None if self.seed is None else f"{self.seed}:{src}->{dst}")

    def take_trace(self) -> list:
        """The trace rows recorded so far, removed from this Network (a worker's, gathered by the driver)."""
        with self._lock:
            rows = list(self.trace)
            self.trace.clear()
        return rows

    def counts(self) -> tuple[dict, dict, dict]:
        """Copies of the (sent, received) counters per endpoint, and of the link counters."""
        with self._lock:
            return dict(self.sent), dict(self.received), dict(self.links)

    def refuse(self, kind: str, src: str, dst: str, method: str, nbytes: int) -> None:
        """Record a message that could not be delivered at all (its destination is dead)."""
        self._record(time.monotonic() - self.t0, kind, src, dst, method, nbytes, "dropped")

    def _record(self, now, kind, src, dst, method, nbytes, fate) -> None:
        with self._lock:
            self.trace.append((now, kind, src, dst, method, nbytes, fate))
            self.sent[src] = self.sent.get(src, 0) + 1
            messages, total = self.links.get((src, dst), (0, 0))
            self.links[src, dst] = (messages + 1, total + nbytes)
            if fate != "dropped":
                self.received[dst] = self.received.get(dst, 0) + 1


def add_counts(total: dict, part: dict) -> None:
    """Add the counters of ``part`` into ``total``: ints, or tuples of ints added element-wise."""
    for key, count in part.items():
        before = total.get(key)
        if before is None:
            total[key] = count
        elif isinstance(count, int):
            total[key] = before + count
        else:
            total[key] = tuple(a + b for a, b in zip(before, count))


class Delayer(threading.Thread):
    """Runs ``fn(*args)`` after a delay: delivery of delayed messages."""

    def __init__(self):
        super().__init__(name="network-delay", daemon=True)
        self._heap: list = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stopped = False

    def post(self, delay: float, fn, *args) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, fn, args))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            fn(*args)
            del fn, args  # not kept until the next one: a message's memfds close with their last reference
