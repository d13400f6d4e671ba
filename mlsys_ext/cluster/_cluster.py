"""``Cluster``: the API both backends share (placement, faults, status, trace)."""
from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from ._errors import ActorDiedError, ActorTimeoutError, ClusterError
from ._future import gather
from ._handle import ActorHandle
from ._network import DRIVER, Network, add_counts, make_faults
from ._wire import SHARED_MEMORY_THRESHOLD, ObjectRef, dumps

_BACKENDS: dict = {}  # name -> a loader of its Cluster subclass (see register_backend)
MAX_WORKERS_VARIABLE = "MLSYS_MAX_WORKERS"
_live: "weakref.WeakSet[Cluster]" = weakref.WeakSet()


def register_backend(name: str, load) -> None:
    """Let ``Cluster(n, backend=name)`` build an instance of the class ``load()`` returns (a
    subclass of Cluster). The package registers its backends: this module, the contract they
    share, imports none of them."""
    _BACKENDS[name] = load


def live_clusters() -> list["Cluster"]:
    """Every cluster of this process that has not been stopped."""
    return [c for c in list(_live) if not c.stopped]


@atexit.register
def _stop_all() -> None:
    for cluster in live_clusters():
        cluster.stop()


@dataclass(eq=False)
class ActorRecord:
    """The driver's view of one actor."""

    name: str
    class_name: str
    worker: str
    payload: bytes  # cloudpickled (cls, args, kwargs): how to build it again
    max_restarts: int
    restarts: int = 0
    state: str = "starting"  # starting | alive | paused | restarting | dead
    held: list = field(default_factory=list)  # messages waiting for a paused or restarting actor
    logs: deque = field(default_factory=lambda: deque(maxlen=2000))
    processed: int = 0
    received_base: int = 0
    channel: object = None

    @property
    def can_restart(self) -> bool:
        return self.max_restarts < 0 or self.restarts < self.max_restarts


@dataclass(frozen=True)
class WorkerResult:
    """What ``run``/``execute`` gave on one worker: a value or an error, and what was printed."""

    value: object
    error: BaseException | None
    stdout: str

    def get(self):
        """The value, or the worker's error raised here."""
        if self.error is not None:
            raise self.error
        return self.value


def spawn_timeout_error(name: str, worker: str, timeout: float) -> ActorTimeoutError:
    return ActorTimeoutError(
        f"spawning {name!r} on {worker} took longer than the cluster's timeout ({timeout:g} s); it "
        "is dropped when its constructor returns, and the other actors go on. For slow "
        "constructors, start the cluster with a longer timeout"
    )


def job_timeout_error(worker: str, kind: str, timeout: float) -> ActorTimeoutError:
    return ActorTimeoutError(
        f"{worker} did not finish its {kind} within {timeout:g} s and is still running it (a job "
        f"cannot be interrupted): cluster.restart({worker!r}) ends it"
    )


def max_workers() -> int:
    """The most workers one cluster may have: 4 per CPU, or ``$MLSYS_MAX_WORKERS``.

    Every worker is a Python process of ~30 MB, so a mistyped count would
    otherwise fill the machine's memory before anything could refuse it.
    """
    override = os.environ.get(MAX_WORKERS_VARIABLE)
    if override is not None:
        try:
            limit = int(override)
        except ValueError:
            raise ValueError(f"${MAX_WORKERS_VARIABLE} must be an integer, got {override!r}") from None
        if limit < 1:
            raise ValueError(f"${MAX_WORKERS_VARIABLE} must be >= 1, got {limit}")
        return limit
    return 4 * (os.cpu_count() or 1)


def check_workers(n) -> int:
    """``n`` if it is a valid number of workers (None: one per CPU), else a one-line ValueError."""
    n = (os.cpu_count() or 1) if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (the number of workers) must be an integer >= 1, got {n!r}")
    limit = max_workers()
    if n > limit:
        source = f"${MAX_WORKERS_VARIABLE}" if MAX_WORKERS_VARIABLE in os.environ else "4 per CPU"
        raise ValueError(f"n = {n} workers is more than the limit of {limit} ({source}); "
                         f"set ${MAX_WORKERS_VARIABLE} to allow more")
    return n


class SharedMemoryUse(NamedTuple):
    segments: int  # in use: refs, arrays received, messages under way
    bytes: int
    pooled_bytes: int  # free memfds that senders keep to write their next messages into


class Cluster:
    """A cluster of n workers (w0 .. w{n-1}) running actors, with a faulty network.

    ``Cluster(n, backend="local")`` runs workers as local processes;
    ``backend="ray"`` runs actors on Ray. Use it as a context manager, or call
    ``stop()``: no worker outlives its cluster.

    On the local backend, numpy arrays of ``shared_memory_threshold`` bytes or more
    (256 KiB by default; None: never) in call arguments and return values travel
    through shared memory instead of the message stream, and arrive as read-only
    zero-copy views. Actors' messages to each other go straight from worker to
    worker; the network (partitions, link faults, pauses) acts on them at their
    sender exactly as on the driver's calls, and ``trace()`` lists them all.
    Fates are drawn per link (ordered pair of endpoints) from ``seed``.
    """

    def __new__(cls, n=None, backend: str = "local", **kwargs):
        if cls is Cluster:
            load = _BACKENDS.get(backend)
            if load is None:
                raise ValueError(f"backend must be one of {tuple(_BACKENDS)}, got {backend!r}")
            cls = load()
        return object.__new__(cls)

    def __init__(self, n: int | None = None, backend: str = "local", *, timeout: float = 30.0,
                 seed: int | None = None, trace_size: int = 10_000, echo: bool = True,
                 shared_memory_threshold: int | None = SHARED_MEMORY_THRESHOLD):
        n = check_workers(n)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(trace_size, int) or trace_size < 1:
            raise ValueError(f"trace_size must be an integer >= 1, got {trace_size!r}")
        if shared_memory_threshold is not None and (
                not isinstance(shared_memory_threshold, int) or isinstance(shared_memory_threshold, bool)
                or shared_memory_threshold < 1):
            raise ValueError(f"shared_memory_threshold must be a number of bytes >= 1, or None, "
                             f"got {shared_memory_threshold!r}")
        self.shared_memory_threshold = shared_memory_threshold
        self.n = n
        self.backend = backend
        self.timeout = float(timeout)
        self.echo = echo
        self.stopped = False
        self.workers = [f"w{i}" for i in range(n)]
        self._actors: dict[str, ActorRecord] = {}
        self._lock = threading.RLock()
        self._placement = itertools.count()
        self._spawned = itertools.count()  # default names stay unique when actors are removed
        self._listeners: list = []
        self._net = Network(self._locate, seed=seed, trace_size=trace_size)
        self._gathered: deque = deque(maxlen=trace_size)  # the workers' trace rows, by time
        self._retired: tuple[dict, dict, dict] = ({}, {}, {})  # the counts of workers that died
        _live.add(self)

    # -- naming --------------------------------------------------------
    def _locate(self, name: str):
        rec = self._actors.get(name)
        return rec.worker if rec is not None else None

    def _record(self, name: str) -> ActorRecord:
        rec = self._actors.get(name)
        if rec is None:
            raise ClusterError(f"no actor named {name!r}; actors: {', '.join(self._actors) or 'none'}")
        return rec

    def _callable(self, name: str, oneway: bool) -> ActorRecord:
        """The record of actor ``name`` for a call; unknown names, and sends to the dead, raise."""
        rec = self._actors.get(name)
        if rec is None:
            self._check_open()
            self._record(name)  # raises, naming the actors there are
        if oneway and rec.state == "dead":
            raise self._dead_error(name)
        return rec

    @staticmethod
    def _dead_error(name: str) -> ActorDiedError:
        return ActorDiedError(f"actor {name!r} is dead: restart it with cluster.restart({name!r})")

    def _worker_of(self, name: str) -> str:
        """A worker name, or the worker hosting actor ``name``."""
        if name in self.workers:
            return name
        if name in self._actors:
            return self._actors[name].worker
        raise ClusterError(
            f"{name!r} is neither a worker ({', '.join(self.workers)}) nor an actor "
            f"({', '.join(self._actors) or 'none'})"
        )

    def _check_open(self) -> None:
        if self.stopped:
            raise ClusterError("this cluster has been stopped")

    @property
    def actors(self) -> list[str]:
        return list(self._actors)

    def handle(self, name: str) -> ActorHandle:
        self._record(name)
        return ActorHandle(name, self)

    # -- change listeners (panels and the sidebar) ----------------------
    def on_change(self, callback):
        """Call ``callback(cluster, event)`` after every spawn, fault or stop; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _changed(self, event: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(self, event)
            except Exception:  # a broken listener must not break the cluster
                pass

    # -- actors ----------------------------------------------------------
    def spawn(self, cls, *args, name: str | None = None, worker: str | None = None,
              max_restarts: int = 0, **kwargs) -> ActorHandle:
        """Construct ``cls(*args, **kwargs)`` on a worker and return its handle.

        Placement is round-robin unless ``worker`` names one. With
        ``max_restarts`` left (-1: unlimited), an actor whose process dies is
        built again from these same arguments.
        """
        self._check_open()
        if not isinstance(cls, type):
            raise TypeError(f"spawn needs a class, got {type(cls).__name__} {cls!r}")
        if not isinstance(max_restarts, int) or max_restarts < -1:
            raise ValueError(f"max_restarts must be an integer >= -1, got {max_restarts!r}")
        with self._lock:
            name = name or f"{cls.__name__.lower()}{next(self._spawned)}"
            if name in self._actors:
                raise ClusterError(f"an actor named {name!r} exists already")
            if name == DRIVER or name in self.workers:
                raise ClusterError(f"{name!r} is reserved (the driver and worker names)")
            if worker is None:
                worker = self._place()
            elif worker not in self.workers:
                raise ClusterError(f"no worker named {worker!r}; workers: {', '.join(self.workers)}")
            import cloudpickle

            rec = ActorRecord(name, cls.__name__, worker, cloudpickle.dumps((cls, args, kwargs)), max_restarts)
            self._actors[name] = rec
        try:
            self._start_actor(rec)
        except BaseException:
            with self._lock:
                self._actors.pop(name, None)
            raise
        self._changed("spawn")
        return ActorHandle(name, self)

    def _place(self) -> str:
        """The next live worker, round-robin."""
        for _ in range(self.n):
            worker = self.workers[next(self._placement) % self.n]
            if self._worker_alive(worker):
                return worker
        raise ClusterError("no worker is alive: restart one with cluster.restart('w0')")

    def _worker_alive(self, worker: str) -> bool:
        return True

    def put(self, obj) -> ObjectRef:
        """``obj`` in shared memory, once: pass the ref to any number of actors, which receive
        the object itself (arrays as read-only views of the same pages), or ``ref.get()`` it.

        The memory is freed when the last ref, and every view of it, is gone; ``stop()``
        releases this cluster's refs. On the Ray backend the object lives in Ray's object
        store, which counts the references.
        """
        raise NotImplementedError

    def gather(self, futures, timeout: float | None = None) -> list:
        """Results of ``futures`` in order; raises the first error met."""
        return gather(futures, timeout)

    # -- network faults --------------------------------------------------
    def _check_endpoints(self, names) -> None:
        for n in names:
            if n != DRIVER:
                self._worker_of(n)

    def partition(self, *groups) -> None:
        """Cut the network between groups of actors, workers or ``"driver"``.

        ``partition(["a", "b"], ["c"])``: a and b still talk, neither reaches c.
        Endpoints in no group keep reaching everyone. In force for every message
        sent after this returns, from the driver and from every actor.
        """
        if len(groups) < 2:
            raise ValueError("partition needs at least two groups, e.g. partition(['a', 'b'], ['c'])")
        groups = [[g] if isinstance(g, str) else list(g) for g in groups]
        for g in groups:
            self._check_endpoints(g)
        self._net.partition(groups)
        self._push_network()
        self._changed("network")

    def heal(self) -> None:
        """Remove every partition (drop, delay and duplication settings stay)."""
        self._net.heal()
        self._push_network()
        self._changed("network")

    def set_network(self, drop: float = 0.0, delay=0.0, duplicate: float = 0.0, link=None) -> None:
        """Faults for every message, or only between the two ends of ``link=(a, b)``.

        ``delay`` is seconds, or a (low, high) range drawn uniformly per message.
        In force for every message sent after this returns, from the driver and
        from every actor.
        """
        faults = make_faults(drop, delay, duplicate)
        if link is not None:
            if len(link) != 2:
                raise ValueError(f"link must be a pair of endpoints, got {link!r}")
            self._check_endpoints(link)
        self._net.set_faults(faults, link)
        self._push_network()
        self._changed("network")

    def network(self) -> dict:
        """The current partition, default faults and per-link faults."""
        return self._net.settings()

    # -- observation -----------------------------------------------------
    def trace(self, n: int | None = None):
        """The last ``n`` messages (all kept, by default) as a DataFrame, ordered by time.

        On the local backend each worker records what its actors send, and this
        gathers the rows (a paused worker's rows come once it resumes; a worker
        that dies by itself takes the rows not yet gathered with it, while
        ``kill``/``restart``/``stop`` gather them first). At most ``trace_size``
        rows are kept.
        """
        import pandas as pd

        rows = self._trace_rows()
        if n is not None:
            rows = rows[-n:] if n > 0 else []
        return pd.DataFrame(rows, columns=["time", "kind", "src", "dst", "method", "bytes", "fate"])

    def elapsed(self) -> float:
        """Seconds since the cluster started: the clock of ``trace()``'s time column."""
        return time.monotonic() - self._net.t0

    def logs(self, name: str) -> str:
        """Everything actor ``name`` printed (the most recent lines)."""
        return "".join(self._record(name).logs)

    def _echo(self, rec: ActorRecord, stream: str, text: str) -> None:
        rec.logs.append(text)
        if self.echo:
            import sys

            out = sys.stderr if stream == "stderr" else sys.stdout
            lines = text.splitlines(keepends=True)
            out.write("".join(f"({rec.name}) {line}" for line in lines))
            out.flush()

    def _refresh_stats(self) -> None:
        """Backends update ``rec.processed`` for the queue-depth column, and gather what
        their workers counted and recorded (``_add_rows``, ``_worker_counts``)."""

    def _push_network(self) -> None:
        """Backends whose workers decide fates themselves hand them the new settings here."""

    def _add_rows(self, rows: list) -> None:
        """Merge trace rows gathered from workers, keeping the latest ``trace_size`` by time."""
        if rows:
            with self._lock:
                merged = sorted([*self._gathered, *rows], key=lambda row: row[0])
                self._gathered = deque(merged[-self._gathered.maxlen:], maxlen=self._gathered.maxlen)

    def _retire(self, counts: tuple[dict, dict, dict]) -> None:
        """Keep the last counts of a worker that died: its messages were sent all the same."""
        for total, part in zip(self._retired, counts):
            add_counts(total, part)

    def _worker_counts(self) -> list[tuple[dict, dict, dict]]:
        """(sent, received, links) as each live worker last reported them."""
        return []

    def _trace_rows(self) -> list:
        """Every kept trace row, the driver's and the workers', by time."""
        self._refresh_stats()
        rows = sorted([*self._net.trace, *self._gathered], key=lambda row: row[0])
        return rows[-self._net.trace.maxlen:]

    def _counts(self) -> tuple[dict, dict, dict]:
        """(sent, received) messages per endpoint and (messages, bytes) per link, everywhere."""
        totals = tuple(dict(part) for part in self._net.counts())
        for counts in [self._retired, *self._worker_counts()]:
            for total, part in zip(totals, counts):
                add_counts(total, part)
        return totals

    def _message_counts(self) -> tuple[dict, dict]:
        """(sent, received) messages per endpoint."""
        return self._counts()[:2]

    def _link_counts(self) -> dict:
        """(src, dst) -> (messages, bytes) sent."""
        return self._counts()[2]

    def _pid(self, rec: ActorRecord):
        return None

    def status(self):
        """One row per actor: name, class, worker, pid, state, restarts, queue, msgs_in, msgs_out."""
        import pandas as pd

        self._refresh_stats()
        rows = []
        sent, received = self._message_counts()
        for rec in list(self._actors.values()):
            got = received.get(rec.name, 0)
            queue = max(got - rec.received_base - rec.processed, 0) if rec.state != "dead" else 0
            rows.append((rec.name, rec.class_name, rec.worker, self._pid(rec), rec.state, rec.restarts,
                         queue, got, sent.get(rec.name, 0)))
        frame = pd.DataFrame(rows, columns=["name", "class", "worker", "pid", "state", "restarts",
                                            "queue", "msgs_in", "msgs_out"])
        return frame.astype({"pid": "Int64"})

    def links(self):
        """One row per link (ordered pair of endpoints) that carried a message: src, dst, and
        the messages and bytes sent on it since the cluster started (every copy, dropped
        ones too; bytes include buffers sent through shared memory). A rate is the
        difference of two readings over the time between them."""
        import pandas as pd

        self._refresh_stats()
        rows = sorted((src, dst, messages, size) for (src, dst), (messages, size) in self._link_counts().items())
        return pd.DataFrame(rows, columns=["src", "dst", "messages", "bytes"])

    def shared_memory(self) -> SharedMemoryUse:
        """The shared memory that the driver and the live workers hold: the segments and
        bytes in use (refs from ``put``, arrays received as views, messages under way), each
        segment counted once however many processes map it, and the bytes of free memfds
        kept in the senders' pools for their next messages."""
        raise NotImplementedError

    # -- lifetime --------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else f"{len(self._actors)} actors"
        return f"<{type(self).__name__} {self.backend} n={self.n} {state}>"

    # -- what a backend provides ------------------------------------------
    def _start_actor(self, rec: ActorRecord) -> None:
        raise NotImplementedError

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        raise NotImplementedError

    def _wait(self, fut, timeout) -> None:
        raise NotImplementedError

    def remove(self, name: str) -> None:
        """End actor ``name`` for good and free its name (a job's actors, once it is done).

        Its worker drops it once the method it runs returns; the other actors there run on.
        Calls still waiting for it fail with ActorDiedError, and it leaves ``status()``;
        what it sent and received stays in ``trace()`` and ``links()``. An actor being
        restarted is refused: remove it once it is back.
        """
        self._check_open()
        with self._lock:
            rec = self._record(name)
            if rec.state == "restarting":
                raise ClusterError(f"actor {name!r} is being restarted: remove it once it is back")
            del self._actors[name]
            rec.state = "dead"
        self._remove_actor(rec)
        error = ActorDiedError(f"actor {name!r} was removed")
        for key, fut in list(self._pending.items()):
            if fut.actor == name and self._pending.pop(key, None) is not None:
                fut._resolve(error=error)
        self._changed("remove")

    def _remove_actor(self, rec: ActorRecord) -> None:
        """Have ``rec``'s worker drop it (its record is gone and its state is dead already)."""
        raise NotImplementedError

    def kill(self, name: str) -> None:
        raise NotImplementedError

    def restart(self, name: str) -> None:
        raise NotImplementedError

    def pause(self, name: str) -> None:
        raise NotImplementedError

    def resume(self, name: str) -> None:
        raise NotImplementedError

    def run(self, fn, *args, targets=None, timeout: float | None = None, **kwargs) -> dict[str, WorkerResult]:
        """Run ``fn(*args, **kwargs)`` once on each live worker (or on ``targets``).

        ``timeout`` bounds the whole wait. A job that outlives it keeps running on
        its worker (Python cannot interrupt it there); ``restart(worker)`` ends it.
        """
        self._check_open()
        return self._jobs(targets, "run", dumps((fn, args, kwargs)), timeout)

    def execute(self, source: str, targets=None, timeout: float | None = None) -> dict[str, WorkerResult]:
        """Run Python ``source`` on each live worker in a namespace kept between calls;
        the value is that of the last line if it is an expression. ``timeout`` as in ``run``."""
        self._check_open()
        compile(source, "<cluster run>", "exec")  # a syntax error is reported here, once
        return self._jobs(targets, "exec", dumps(source), timeout)

    def _jobs(self, targets, kind: str, payload: bytes, timeout) -> dict[str, WorkerResult]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
