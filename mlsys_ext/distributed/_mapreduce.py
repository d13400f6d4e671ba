"""MapReduce on the actor cluster, with the paper's failure model (Dean & Ghemawat, OSDI 2004).

The driver is the master. Each cluster worker hosts one ``_MapReduceWorker`` actor (spawned
once per cluster, restarted whenever its process dies) that runs one task at a time. A map
task's intermediate files live in its worker's own scratch directory, which a restarted
worker wipes: the outputs of its completed *and* in-progress map tasks die with it, so the
master sends those tasks back to idle. Reduce output goes to a temporary file linked to its
final name, so a duplicate execution leaves exactly one final file and no reader ever sees
half of one; completed reduce tasks are never redone. A task not done within
``task_timeout`` is given to another worker as well, and near the end of a phase stragglers
get backup copies: the first attempt to finish wins.

Intermediate and output files are pickles this job wrote in a private directory (mode 0700);
they are read back only by this job.
"""
from __future__ import annotations

import os
import pickle
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cluster import ActorDiedError, ActorTimeoutError, Cluster
from ..sketches import hash64

POLL_SECONDS = 0.002  # the master's look at its futures: tasks take milliseconds
TASKS_PER_WORKER = 2  # a worker's next task waits in its mailbox: it never idles waiting for the master
STRAGGLER_FACTOR = 2.0  # near a phase's end, an attempt this many times the median task is a straggler
MIN_STRAGGLER_SECONDS = 0.5  # and at least this long: a busy machine's hiccups are not stragglers
OUTCOMES = ("done", "failed", "lost", "backup", "superseded")


class MapReduceError(RuntimeError):
    """A job that cannot finish: a map or reduce function raised (not a process death)."""


@dataclass
class MapReduceResult:
    output: dict  # key -> reduced value, the union of every reduce output
    files: list[Path]  # the final output files, one per reduce task
    tasks: "pandas.DataFrame"  # one row per attempt: task, kind, attempt, worker, start, end, outcome, backup
    seconds: float


def partitions(keys: list, n_reduce: int) -> np.ndarray:
    """The reduce task of each key: a stable 64-bit hash of the key (``hash64`` for ints,
    floats, str and bytes; of its pickle for anything else) mod ``n_reduce``. The same in
    every process and run, unlike Python's ``hash``."""
    try:
        hashes = hash64(keys)
    except TypeError:  # mixed or composite keys (tuples ...): one at a time
        hashes = np.array([hash64(k) if isinstance(k, (int, float, str, bytes)) and not isinstance(k, bool)
                           else hash64(pickle.dumps(k, protocol=4)) for k in keys], dtype=np.uint64)
    return (hashes % np.uint64(n_reduce)).astype(np.int64)


class _MapReduceWorker:
    """One per cluster worker. Its scratch directory is its local disk: wiped when the actor
    is (re)built, as a machine that died comes back without what it held."""

    def __init__(self, root: str, worker: str):
        self.scratch = Path(root) / worker
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(mode=0o700, parents=True)
        self.incarnation = uuid.uuid4().hex
        partitions(["warm"], 1)  # import and load the hash kernels now, not in the first task's time

    def ready(self) -> str:
        return self.incarnation

    def map(self, job: str, task: int, attempt: int, source, map_fn, combine_fn, n_reduce: int):
        """Run ``map_fn`` over one input and write its output to one file in R regions, one per
        reduce task (as the paper's map workers do), each a list of (key, [values]); returns
        (incarnation, (path, offset, length) of each region)."""
        name, text = source
        if text is None:
            text = Path(name).read_text()
        groups = defaultdict(list)  # key -> its values in the order emitted: one hash per key, not per pair
        for key, value in map_fn(name, text):
            groups[key].append(value)
        buckets = [[] for _ in range(n_reduce)]
        if groups:
            for (key, values), r in zip(groups.items(), partitions(list(groups), n_reduce)):
                buckets[r].append((key, values if combine_fn is None else [combine_fn(key, values)]))
        directory = self.scratch / job
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"map-{task}-{attempt}.pkl"
        regions = [pickle.dumps(bucket, protocol=5) for bucket in buckets]
        offsets = np.cumsum([0] + [len(region) for region in regions]).tolist()
        _write_new(path, b"".join(regions))  # one file, not R: opening a file costs more than writing a region
        return self.incarnation, [(str(path), offsets[r], len(regions[r])) for r in range(n_reduce)]

    def reduce(self, task: int, inputs: dict, reduce_fn, out_dir: str):
        """Reduce partition ``task`` from ``inputs`` (map task -> (path, offset, length) of its
        region for this partition). Returns (incarnation, "done", final path), or
        (incarnation, "missing", the map tasks whose files died with their worker)."""
        groups, missing = defaultdict(list), []
        for map_task, (path, offset, length) in inputs.items():
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    region = pickle.loads(f.read(length))
            except FileNotFoundError:
                missing.append(map_task)
                continue
            for key, values in region:
                groups[key].extend(values)
        if missing:
            return self.incarnation, "missing", missing
        output = {key: reduce_fn(key, groups[key]) for key in _ordered(groups)}
        final = Path(out_dir) / f"mr-out-{task}.pkl"
        temporary = Path(out_dir) / f".mr-out-{task}-{uuid.uuid4().hex}.tmp"
        _write_new(temporary, pickle.dumps(output, protocol=5))
        try:
            os.link(temporary, final)  # never replaces: the first attempt's file is the one
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        return self.incarnation, "done", str(final)


def _ordered(groups: dict) -> list:
    """The keys sorted when they can be (as the paper's reducers see them), else in first-seen order."""
    try:
        return sorted(groups)
    except TypeError:
        return list(groups)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, so no reader sees half of it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)


# -- the master ---------------------------------------------------------------------

_workers: dict[int, tuple[Path, dict]] = {}  # id(cluster) -> (scratch root, {worker: handle}), until it stops
_workers_lock = threading.Lock()


def _worker_actors(cluster: Cluster) -> tuple[Path, dict]:
    """The cluster's scratch root and MapReduce actors, one per worker, spawned on first use;
    both are forgotten, and the root removed, when the cluster stops."""
    with _workers_lock:
        if id(cluster) not in _workers:
            root = Path(tempfile.mkdtemp(prefix="mlsys-mapreduce-"))
            handles = {worker: cluster.spawn(_MapReduceWorker, str(root), worker, name=f"mapreduce-{worker}",
                                             worker=worker, max_restarts=-1)
                       for worker in cluster.workers}

            def forget(stopped, event, key=id(cluster), root=root):
                if event == "stop":
                    _workers.pop(key, None)
                    shutil.rmtree(root, ignore_errors=True)

            cluster.on_change(forget)
            for handle in handles.values():  # built, before any clock; asked again if a fault lost the answer
                _until_answered(handle.ready, cluster)
            _workers[id(cluster)] = root, handles
        return _workers[id(cluster)]


def _until_answered(method, cluster: Cluster) -> None:
    """Call ``method`` until an answer comes (a lossy network drops calls), for up to the
    cluster's timeout; then raise its ActorTimeoutError."""
    deadline = time.monotonic() + cluster.timeout
    while True:
        try:
            method.remote().result(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            return
        except ActorTimeoutError:
            if time.monotonic() >= deadline:
                raise


def _sources(inputs) -> list[tuple[str, str | None]]:
    """(name, data) per map task: a ``pathlib.Path`` is a file its map task's worker reads
    (data None), a string or numpy array is the data itself (so a mistyped path is never
    read as text)."""
    if isinstance(inputs, (str, Path, np.ndarray)):
        raise TypeError("inputs must be a list of texts (str), arrays or files (pathlib.Path), got one "
                        f"{type(inputs).__name__}: wrap it in a list")
    sources = []
    for i, item in enumerate(inputs):
        if isinstance(item, Path):
            if not item.is_file():
                raise FileNotFoundError(f"input {i}: no file {str(item)!r}")
            sources.append((str(item), None))
        elif isinstance(item, (str, np.ndarray)):
            sources.append((f"input-{i}", item))
        else:
            raise TypeError(f"input {i} must be a text (str), an array or a file (pathlib.Path), "
                            f"got {type(item).__name__}")
    return sources


@dataclass
class _Attempt:
    task: tuple  # ("map", i) or ("reduce", r)
    number: int
    worker: str
    future: object
    start: float  # when it was sent; for one queued behind another on its worker, when that one ended
    backup: bool
    queued: bool = False  # sent while its worker still ran another: it starts when that one ends
    end: float = float("nan")
    outcome: str = ""
    files: list | None = None  # a map attempt's regions (path, offset, length); a reduce attempt's output file
    incarnation: str = ""


def mapreduce(cluster: Cluster, inputs, map_fn, reduce_fn, combine_fn=None, n_reduce: int = 10,
              backup_tasks: bool = True, task_timeout: float = 1.0, workdir=None,
              progress: bool = True) -> MapReduceResult:
    """Run a MapReduce job on ``cluster``'s workers, one map task per input: a text (str) or
    a numpy array, named ``input-<i>``, or a file (``pathlib.Path``), named by its path and
    read as text; ``map_fn`` gets (name, the text or array).

    ``map_fn(name, text)`` yields (key, value) pairs; ``reduce_fn(key, values)`` returns one
    value; ``combine_fn(key, values)``, when given, does the same on the map side, per map
    task. ``n_reduce`` reduce tasks, keys partitioned by ``partitions``. ``workdir`` holds the
    final files (when None, a private directory removed when the cluster stops). ``progress``: a tqdm bar per phase.
    Returns when every output file is final; a worker that dies, is killed or pauses
    meanwhile costs time, not the answer."""
    if not isinstance(n_reduce, int) or isinstance(n_reduce, bool) or not 1 <= n_reduce <= 10_000:
        raise ValueError(f"n_reduce must be an integer from 1 to 10,000, got {n_reduce!r}")
    if not isinstance(task_timeout, (int, float)) or not task_timeout > 0:
        raise ValueError(f"task_timeout must be a positive number of seconds, got {task_timeout!r}")
    for name, fn in (("map_fn", map_fn), ("reduce_fn", reduce_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
    if combine_fn is not None and not callable(combine_fn):
        raise TypeError(f"combine_fn must be a function or None, got {type(combine_fn).__name__}")
    sources = _sources(inputs)
    if workdir is not None:
        stale = sorted(Path(workdir).glob("mr-out-*.pkl"))
        if stale:
            raise ValueError(f"workdir {str(workdir)!r} holds the output of an earlier job ({stale[0].name}): "
                             f"give an empty directory")
    scratch, actors = _worker_actors(cluster)
    if workdir is None:  # beside the workers' scratch: removed with it when the cluster stops
        out_dir = Path(tempfile.mkdtemp(prefix="output-", dir=scratch))
    else:
        out_dir = Path(workdir)
        out_dir.mkdir(parents=True, exist_ok=True)
    return _Master(scratch, actors, sources, map_fn, reduce_fn, combine_fn, n_reduce, backup_tasks,
                   float(task_timeout), out_dir, progress).run()


class _Master:
    def __init__(self, scratch, actors, sources, map_fn, reduce_fn, combine_fn, n_reduce, backup_tasks,
                 task_timeout, out_dir, progress):
        self.scratch, self.actors = scratch, actors
        self.sources, self.map_fn, self.reduce_fn, self.combine_fn = sources, map_fn, reduce_fn, combine_fn
        self.n_reduce, self.backup_tasks, self.task_timeout = n_reduce, backup_tasks, task_timeout
        self.out_dir, self.progress = out_dir, progress
        self.job = uuid.uuid4().hex[:12]
        self.attempts: list[_Attempt] = []
        self.running: list[_Attempt] = []  # attempts not yet answered (a dropped call never is)
        self.waking: dict[str, tuple] = {}  # worker -> (its ready() future, when asked): it is restarting
        self.done: dict[tuple, _Attempt] = {}  # task -> the attempt whose result was taken
        self.incarnations: dict[str, str] = {}  # worker -> the incarnation its outputs came from
        self.durations = {"map": [], "reduce": []}
        self.clock = time.monotonic()
        self.bars = {}

    def run(self) -> MapReduceResult:
        from tqdm.auto import tqdm

        started = time.perf_counter()
        maps = [("map", i) for i in range(len(self.sources))]
        reduces = [("reduce", r) for r in range(self.n_reduce)]
        self.bars = {kind: tqdm(total=len(tasks), desc=kind, disable=not self.progress, leave=True)
                     for kind, tasks in (("map", maps), ("reduce", reduces))}
        try:
            while not all(task in self.done for task in reduces):
                self._collect()
                maps_done = all(task in self.done for task in maps)
                pending = [task for task in (reduces if maps_done else maps) if task not in self.done]
                for worker in self._free_workers():
                    task, backup = self._next_task(pending, worker)
                    if task is not None:
                        self._dispatch(worker, task, backup)
                time.sleep(POLL_SECONDS)
        finally:
            for bar in self.bars.values():
                bar.close()
        for attempt in self.running:  # still running: a copy whose twin won, a straggler, or a lost call
            attempt.outcome = "backup" if attempt.backup else "superseded"
        for worker in self.actors:  # the intermediate files are no longer needed (a straggler may add some back)
            shutil.rmtree(self.scratch / worker / self.job, ignore_errors=True)
        files = [Path(self.done[task].files[0]) for task in reduces]
        output = {}
        for path in files:
            with open(path, "rb") as f:
                output.update(pickle.load(f))
        return MapReduceResult(output, files, self._table(), time.perf_counter() - started)

    def _next_task(self, pending, worker: str):
        """(task, is it a backup) for free ``worker``: an idle task first; then a task whose only
        attempt has run past task_timeout; then, with backups on, a straggler. Not a copy of a
        task the worker holds already while another worker could take it: a paused worker's
        lost call looks like a free worker."""
        in_flight = defaultdict(list)
        for attempt in self.running:
            in_flight[attempt.task].append(attempt)
        idle = [task for task in pending if not in_flight[task]]
        if idle:
            return idle[0], False
        now = time.monotonic()
        kind = pending[0][0] if pending else "map"
        durations = self.durations[kind]
        straggling = max(MIN_STRAGGLER_SECONDS, STRAGGLER_FACTOR * statistics.median(durations)) \
            if durations else self.task_timeout
        for task in pending:
            holders = {attempt.worker for attempt in in_flight[task]}
            if worker in holders and len(holders) < len(self.actors):
                continue  # another worker can take the copy; when all hold one, calls were lost: resend
            ran = min(now - attempt.start for attempt in in_flight[task])
            if ran > self.task_timeout or (self.backup_tasks and len(in_flight[task]) == 1 and ran > straggling):
                return task, True
        return None, False

    def _dispatch(self, worker: str, task: tuple, backup: bool) -> None:
        kind, index = task
        number = sum(1 for a in self.attempts if a.task == task)
        actor = self.actors[worker]
        if kind == "map":
            future = actor.map.remote(self.job, index, number, self.sources[index], self.map_fn, self.combine_fn,
                                      self.n_reduce)
        else:
            inputs = {map_task: self.done[("map", map_task)].files[index] for map_task in range(len(self.sources))}
            future = actor.reduce.remote(index, inputs, self.reduce_fn, str(self.out_dir))
        queued = any(a.worker == worker for a in self.running)
        attempt = _Attempt(task, number, worker, future, time.monotonic(), backup, queued)
        self.attempts.append(attempt)
        self.running.append(attempt)

    def _free_workers(self) -> list[str]:
        """Each worker not restarting, once for each of its TASKS_PER_WORKER slots that no
        attempt younger than task_timeout holds: a call that was lost (dropped, or its worker
        paused) frees its slot once it has timed out."""
        now = time.monotonic()
        held = defaultdict(int)
        for a in self.running:
            held[a.worker] += now - a.start <= self.task_timeout
        return [worker for worker in self.actors if worker not in self.waking
                for _ in range(TASKS_PER_WORKER - held[worker])]

    def _collect(self) -> None:
        now = time.monotonic()
        for worker, (future, asked) in list(self.waking.items()):
            if future.done():
                del self.waking[worker]  # back (or dead again: its next task will say so)
            elif now - asked > self.task_timeout:  # the question or its answer was lost: ask again
                self.waking[worker] = self.actors[worker].ready.remote(), now
        for attempt in list(self.running):
            if not attempt.future.done():
                continue
            self.running.remove(attempt)
            worker = attempt.worker
            attempt.end = time.monotonic()
            for waiting in self.running:  # the task queued behind it starts now (a lost one never ends)
                if waiting.worker == worker and waiting.queued:
                    waiting.start, waiting.queued = attempt.end, False
                    break
            try:
                result = attempt.future.result(0)
            except ActorDiedError:
                attempt.outcome = "failed"
                self._worker_lost(worker)
                self.waking[worker] = self.actors[worker].ready.remote(), now  # no task waits on its restart
                continue
            except Exception as error:  # the user's function raised: it would raise again anywhere
                raise MapReduceError(f"{attempt.task[0]} task {attempt.task[1]} raised on {worker}: "
                                     f"{type(error).__name__}: {error}") from error
            incarnation = result[0]
            if self.incarnations.get(worker, incarnation) != incarnation:
                self._worker_lost(worker)  # it died and came back between two of its tasks
            self.incarnations[worker] = incarnation
            attempt.incarnation = incarnation
            if attempt.task[0] == "map":
                self._finished(attempt, result[1])
            elif result[1] == "missing":
                attempt.outcome = "failed"
                for map_task in result[2]:
                    self._lose(("map", map_task))
            else:
                self._finished(attempt, [result[2]])

    def _finished(self, attempt: _Attempt, files: list) -> None:
        if attempt.task in self.done:  # its twin won
            attempt.outcome = "backup" if attempt.backup else "superseded"
            return
        attempt.outcome, attempt.files = "done", files
        self.done[attempt.task] = attempt
        self.durations[attempt.task[0]].append(attempt.end - attempt.start)
        self.bars[attempt.task[0]].update(1)

    def _worker_lost(self, worker: str) -> None:
        """``worker`` died: the map outputs on its disk died too (completed reduce output is
        on the shared disk and stays)."""
        self.incarnations.pop(worker, None)
        for task, attempt in list(self.done.items()):
            if task[0] == "map" and attempt.worker == worker:
                self._lose(task)

    def _lose(self, task: tuple) -> None:
        """A done map task's output is gone: the task is idle again."""
        attempt = self.done.pop(task, None)
        if attempt is not None:
            attempt.outcome = "lost"
            self.bars["map"].update(-1)

    def _table(self):
        import pandas as pd  # here, not at the top: workers import this module, and pandas costs them 0.2 s a start

        rows = [(a.task[1], a.task[0], a.number, a.worker, a.start - self.clock, a.end - self.clock,
                 a.outcome or ("backup" if a.backup else "superseded"), a.backup) for a in self.attempts]
        return pd.DataFrame(rows, columns=["task", "kind", "attempt", "worker", "start", "end", "outcome", "backup"])
