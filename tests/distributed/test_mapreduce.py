"""MapReduce on the local cluster, and a smaller set on Ray, modelled on MIT 6.5840's lab 1
test script: outputs equal the sequential job's, tasks run in parallel, nothing runs twice
without a fault, outputs are final, and killed, crashing and paused workers cost time but not
the answer."""
import functools
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlsys_ext.cluster import context
from mlsys_ext.distributed import (
    MapReduceError, inverted_index, inverted_index_map, inverted_index_reduce, mapreduce, partitions, word_count,
    word_count_map, word_count_reduce,
)

from ..conftest import wait_until

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "Iota", "kappa"]


def texts(n: int = 8, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"input-{i}": " ".join(rng.choice(WORDS) + rng.choice(["", ",", ".", " 42"]) for _ in range(300))
            for i in range(n)}


def slow_map(name, text):
    time.sleep(0.3)
    return word_count_map(name, text)


def slow_reduce(key, values):
    time.sleep(0.05)
    return sum(values)


def crashing_map(name, text):
    """MIT's crash test: exit the process with probability 1/3, stall with probability 1/3."""
    roll = random.SystemRandom().random()
    if roll < 1 / 3:
        os._exit(1)
    if roll < 2 / 3:
        time.sleep(random.SystemRandom().uniform(0, 0.3))
    return word_count_map(name, text)


def crashing_reduce(key, values):
    """Called per key, about 4 keys a task: 1/10 a call is about 1/3 a task."""
    roll = random.SystemRandom().random()
    if roll < 0.1:
        os._exit(1)
    if roll < 0.2:
        time.sleep(0.05)
    return sum(values)


def overlapping(tasks, kind):
    """True when two done attempts of ``kind`` on different workers overlapped in time."""
    rows = tasks[(tasks.kind == kind) & (tasks.outcome == "done")]
    return any(a.worker != b.worker and a.start < b.end and b.start < a.end
               for a in rows.itertuples() for b in rows.itertuples())


def test_word_count_and_inverted_index_equal_the_sequential_jobs(cluster, tmp_path):
    docs = texts()
    res = mapreduce(cluster, list(docs.values()), word_count_map, word_count_reduce, n_reduce=3, progress=False)
    assert res.output == word_count(docs)
    files = {}
    for i, (name, text) in enumerate(docs.items()):
        files[str(tmp_path / f"{name}.txt")] = text
        Path(tmp_path / f"{name}.txt").write_text(text)
    res = mapreduce(cluster, [Path(p) for p in files], inverted_index_map, inverted_index_reduce, n_reduce=4,
                    progress=False)
    assert res.output == inverted_index(files)
    assert [f.name for f in res.files] == [f"mr-out-{r}.pkl" for r in range(4)]


def test_map_and_reduce_tasks_run_in_parallel_and_each_exactly_once_without_faults(cluster):
    docs = texts(6)
    res = mapreduce(cluster, list(docs.values()), slow_map, slow_reduce, n_reduce=4, progress=False)
    assert res.output == word_count(docs)
    assert overlapping(res.tasks, "map") and overlapping(res.tasks, "reduce")
    assert len(res.tasks) == 6 + 4 and set(res.tasks.outcome) == {"done"} and not res.tasks.backup.any()
    assert set(res.tasks[res.tasks.kind == "map"].task) == set(range(6))
    for _, attempts in res.tasks.groupby("worker"):  # two in flight a worker, but run one after another:
        attempts = attempts.sort_values("start")  # a queued task's start is when the one before it ended
        assert (attempts.start.to_numpy()[1:] >= attempts.end.to_numpy()[:-1]).all()


def test_outputs_are_final_when_it_returns_and_never_half_written(cluster, tmp_path):
    docs = texts(4)
    res = mapreduce(cluster, list(docs.values()), word_count_map, word_count_reduce, n_reduce=3,
                    workdir=tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"mr-out-{r}.pkl" for r in range(3)]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in res.files}
    time.sleep(0.5)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in res.files} == before
    with pytest.raises(ValueError, match="holds the output of an earlier job"):
        mapreduce(cluster, list(docs.values()), word_count_map, word_count_reduce, workdir=tmp_path / "out")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(2))
def test_workers_that_crash_or_stall_at_random_do_not_change_the_output(cluster, seed):
    docs = texts(6, seed)
    res = mapreduce(cluster, list(docs.values()), crashing_map, crashing_reduce, n_reduce=3, task_timeout=0.5,
                    progress=False)
    assert res.output == word_count(docs)
    assert set(res.tasks.outcome) <= {"done", "failed", "lost", "backup", "superseded"}
    wait_until(lambda: cluster.status().state.eq("alive").all())  # a copy still running may crash later: it comes back


def kill_when_running(cluster, worker, kind, tasks_seen):
    """Kill ``worker`` as soon as one of its ``kind`` tasks is running (polling the trace)."""
    def watch():
        wait_until(lambda: any(f"mapreduce-{worker}" == m.dst and m.method == kind
                               for m in cluster.trace().itertuples()), timeout=20, interval=0.005)
        time.sleep(0.05)
        cluster.kill(worker)
        tasks_seen.append(kind)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_a_worker_killed_mid_task_has_its_tasks_run_again(cluster, kind):
    docs = texts(6)
    killed = []
    watcher = kill_when_running(cluster, "w0", kind, killed)
    res = mapreduce(cluster, list(docs.values()), slow_map, slow_reduce, n_reduce=4, progress=False)
    watcher.join(5)
    assert killed == [kind] and res.output == word_count(docs)
    failed = res.tasks[res.tasks.outcome == "failed"]
    assert len(failed) >= 1 and set(failed.worker) == {"w0"}
    if kind == "reduce":  # w0's finished map outputs died with it and ran again
        assert "lost" in set(res.tasks.outcome)
        assert (res.tasks[res.tasks.kind == "map"].groupby("task").size() >= 1).all()


def marking_map(marks: str, name, text):
    """``slow_map`` that first leaves a file named after its worker in ``marks``."""
    Path(marks, context().worker).touch()
    return slow_map(name, text)


@pytest.mark.timeout(120)
def test_a_paused_worker_is_overtaken_by_a_copy_of_its_task(cluster, tmp_path):
    docs = texts(4)
    paused = threading.Event()

    def pause_w1():  # as soon as w1 starts a map task: a file appears, cheaper to watch than the trace
        wait_until(lambda: (tmp_path / "w1").exists(), timeout=20, interval=0.002)
        cluster.pause("w1")
        paused.set()

    threading.Thread(target=pause_w1, daemon=True).start()
    try:
        res = mapreduce(cluster, list(docs.values()), functools.partial(marking_map, str(tmp_path)),
                        word_count_reduce, n_reduce=2, task_timeout=0.5, progress=False)
    finally:
        paused.wait(20)
        cluster.resume("w1")
    assert res.output == word_count(docs)
    copies = res.tasks[res.tasks.backup]
    assert len(copies) >= 1 and set(copies.worker) == {"w0"}
    stuck = res.tasks[(res.tasks.worker == "w1") & (res.tasks.outcome != "done")]
    assert len(stuck) >= 1


def failing_map(name, text):
    raise KeyError("a bug in the map function")


def test_a_function_that_raises_fails_the_job_with_its_error(cluster):
    with pytest.raises(MapReduceError, match="map task 0 raised on w.*a bug in the map function"):
        mapreduce(cluster, ["a b"], failing_map, word_count_reduce, n_reduce=1, progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(inputs="just one string"), TypeError, r"inputs must be a list of texts \(str\), arrays or files"),
    (dict(inputs=[b"bytes"]), TypeError, r"input 0 must be a text \(str\), an array or a file \(pathlib.Path\), "
                                         "got bytes"),
    (dict(inputs=[Path("/no/such/file")]), FileNotFoundError, "input 0: no file '/no/such/file'"),
    (dict(n_reduce=0), ValueError, "n_reduce must be an integer from 1 to 10,000, got 0"),
    (dict(task_timeout=-1), ValueError, "task_timeout must be a positive number of seconds"),
    (dict(map_fn="word_count_map"), TypeError, "map_fn must be a function, got str"),
])
def test_bad_arguments_are_refused_before_any_actor_is_spawned(kwargs, error, message):
    from mlsys_ext.cluster import Cluster

    arguments = dict(inputs=["a b"], map_fn=word_count_map, reduce_fn=word_count_reduce) | kwargs
    with Cluster(1, timeout=10.0) as fresh:
        with pytest.raises(error, match=message):
            mapreduce(fresh, arguments.pop("inputs"), arguments.pop("map_fn"), arguments.pop("reduce_fn"),
                      **arguments)
        assert fresh.actors == []


def test_partitions_are_stable_and_cover_every_reduce_task():
    keys = [f"word{i}" for i in range(10_000)]
    first = partitions(keys, 7)
    assert np.array_equal(first, partitions(keys, 7)) and set(first) == set(range(7))
    assert np.bincount(first).min() > 1_000  # about 1,429 each
    assert list(partitions([("a", 1), 3, "x", 2.5], 5)) == list(partitions([("a", 1), 3, "x", 2.5], 5))


def test_the_workers_scratch_directories_go_with_the_cluster():
    from mlsys_ext.cluster import Cluster
    from mlsys_ext.distributed import _mapreduce

    with Cluster(1, timeout=10.0) as fresh:
        res = mapreduce(fresh, ["a b a"], word_count_map, word_count_reduce, n_reduce=1, progress=False)
        root = _mapreduce._workers[id(fresh)][0]
        assert root in res.files[0].parents  # the default output directory goes with it too
        assert root.is_dir() and oct(root.stat().st_mode & 0o777) == "0o700"
        assert list(root.rglob("map-*")) == []  # a finished job's intermediate files are removed
    assert not root.exists() and id(fresh) not in _mapreduce._workers


def test_kmeans_as_iterated_mapreduce_equals_the_kernels_kmeans_from_the_same_start(cluster):
    from mlsys_ext.distributed import kmeans_mapreduce
    from mlsys_ext.kernels import kmeans

    rng = np.random.default_rng(3)
    means = rng.uniform(-50, 50, (5, 3)) + 1e4  # offsets far from zero
    X = means[rng.integers(0, 5, 3_000)] + rng.standard_normal((3_000, 3))
    start = X[rng.choice(len(X), 5, replace=False)]
    fitted = kmeans(X, 5, init=start, max_iter=4, tol=0, backend="numpy")
    centroids, jobs = kmeans_mapreduce(cluster, X, start, iterations=fitted.n_iter, shards=5)
    assert len(jobs) == fitted.n_iter
    np.testing.assert_allclose(centroids, fitted.centroids, rtol=0, atol=1e-8 * 1e4)


def test_pagerank_as_iterated_mapreduce_equals_the_power_iteration(cluster):
    from mlsys_ext.distributed import pagerank, pagerank_mapreduce

    rng = np.random.default_rng(4)
    edges = rng.integers(0, 200, (1_000, 2))
    edges = edges[edges[:, 0] < 180]  # nodes 180..199 link nowhere: dangling
    ranks = pagerank_mapreduce(cluster, edges, 200, iterations=10, shards=3)
    np.testing.assert_allclose(ranks, pagerank(edges, 200, 10), rtol=1e-12)
    assert ranks.sum() == pytest.approx(1.0)


@pytest.mark.timeout(120)
def test_a_lossy_network_costs_time_not_the_answer(cluster):
    """A dropped call never answers: after task_timeout its worker takes other work and the task a copy."""
    docs = texts(6)
    cluster.set_network(drop=0.4)
    try:
        res = mapreduce(cluster, list(docs.values()), word_count_map, word_count_reduce, n_reduce=3, task_timeout=0.3,
                        progress=False)
    finally:
        cluster.set_network()
    assert res.output == word_count(docs) and res.tasks.backup.any()


# -- the same jobs on the Ray backend: a smaller set ---------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    from mlsys_ext.cluster import Cluster

    with Cluster(2, backend="ray", timeout=20.0, seed=0) as c:
        yield c


@pytest.mark.timeout(180)
def test_on_ray_jobs_equal_the_sequential_ones_each_task_once_and_in_parallel(ray_cluster, tmp_path):
    docs = texts(6)
    res = mapreduce(ray_cluster, list(docs.values()), slow_map, slow_reduce, n_reduce=4, progress=False)
    assert res.output == word_count(docs)
    assert overlapping(res.tasks, "map") and overlapping(res.tasks, "reduce")
    assert len(res.tasks) == 6 + 4 and set(res.tasks.outcome) == {"done"}
    files = {}
    for name, text in docs.items():
        files[str(tmp_path / f"{name}.txt")] = text
        Path(tmp_path / f"{name}.txt").write_text(text)
    res = mapreduce(ray_cluster, [Path(p) for p in files], inverted_index_map, inverted_index_reduce, n_reduce=3,
                    workdir=tmp_path / "out", progress=False)
    assert res.output == inverted_index(files)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"mr-out-{r}.pkl" for r in range(3)]


@pytest.mark.timeout(180)
def test_on_ray_a_worker_killed_mid_map_has_its_tasks_run_again(ray_cluster):
    docs = texts(6)
    killed = []
    watcher = kill_when_running(ray_cluster, "w0", "map", killed)
    res = mapreduce(ray_cluster, list(docs.values()), slow_map, slow_reduce, n_reduce=4, progress=False)
    watcher.join(5)
    assert killed == ["map"] and res.output == word_count(docs)
    failed = res.tasks[res.tasks.outcome == "failed"]
    assert len(failed) >= 1 and set(failed.worker) == {"w0"}
