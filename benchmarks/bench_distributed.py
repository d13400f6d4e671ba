"""The distributed lab's collectives on this machine, beside torch.distributed's Gloo.

    .venv/bin/python benchmarks/bench_distributed.py            # about 2.5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_distributed.py --quick    # 1M floats, a 10 MB corpus, no Hogwild

All-reduce of one float32 array per rank, 4 ranks on a 4-worker local cluster (one
rank per worker process): ring, binomial tree, one parameter server and 4 sharded
ones, against ``torch.distributed.all_reduce`` with the Gloo backend over 127.0.0.1
(4 processes, the tensors resident, a barrier before each call). Columns as nccl-tests
prints them: size, count, type, time (median of the repeats, in-collective: the first
rank's start to the last rank's end), algbw = S/t and busbw = algbw x 2(n-1)/n; then
the whole call a user makes (loading the inputs into the ranks and returning the sums),
which Gloo's resident tensors do not pay. On 2 cores the 4 ranks share them: every
figure is that of a machine with fewer cores than ranks.

Then word count on a generated 100 MB corpus (64 files of Zipf-distributed words):
``mapreduce`` on 1 and 2 workers against one process's ``collections.Counter``, a
hand-written ``multiprocessing.Pool`` and Dask bag on 2 processes, every map task
counting its own file (in-mapper combining) on every side, and the counts checked equal.

Then Hogwild! on the same sparse data: the kernels lab's threads against the cluster's
processes updating one weight vector in shared memory (``hogwild_processes``).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.cluster import Cluster
from mlsys_ext.distributed import Collective, bus_bandwidth
from mlsys_ext.distributed._jobs import words

RANKS = 4
REPEATS = 7
HOGWILD_ROWS, HOGWILD_EPOCHS = 400_000, 5
CORPUS_FILES = 64


def ours(sizes: list[int]) -> dict:
    """(algorithm, count) -> (median in-collective seconds, median whole-call seconds)."""
    results = {}
    with Cluster(RANKS, timeout=60.0) as cluster:
        colls = {"ring": Collective(cluster, RANKS), "tree": Collective(cluster, RANKS),
                 "ps": Collective(cluster, RANKS, servers=1), "ps x4": Collective(cluster, RANKS, servers=RANKS)}
        for count in sizes:
            arrays = [np.full(count, r + 1, dtype=np.float32) for r in range(RANKS)]
            for name, coll in colls.items():
                algorithm = name.split()[0]
                coll.allreduce(arrays, algorithm)  # warm-up: connections, pages
                for _ in range(REPEATS):
                    coll.allreduce(arrays, algorithm)
                rows = coll.stats.tail(REPEATS)
                results[name, count] = (statistics.median(rows.seconds), statistics.median(rows.call_seconds))
    return results


def _gloo_rank(rank: int, port: int, sizes: list[int], repeats: int, out) -> None:
    import time

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    for count in sizes:
        tensor = torch.full((count,), float(rank + 1))
        dist.all_reduce(tensor)  # warm-up
        times = []
        for _ in range(repeats):
            tensor.fill_(rank + 1)
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - start)
        assert float(tensor[0]) == RANKS * (RANKS + 1) / 2
        out.put((rank, count, times))
    dist.destroy_process_group()


def gloo(sizes: list[int]) -> dict:
    """count -> median seconds of Gloo's all_reduce (the slowest rank's time each call), or a reason."""
    try:
        import torch
        import torch.multiprocessing as mp
    except ImportError:
        return {"missing": "torch is not installed (pip install -e '.[bench]')"}
    with socket.socket() as probe:  # a free port on loopback only, for Gloo's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=_gloo_rank, args=(r, port, sizes, REPEATS, out)) for r in range(RANKS)]
    for p in procs:
        p.start()
    times = {}
    for _ in range(RANKS * len(sizes)):
        rank, count, seconds = out.get(timeout=300)
        times.setdefault(count, []).append(seconds)
    for p in procs:
        p.join(60)
    return {count: statistics.median(max(per_rank) for per_rank in zip(*ranks))
            for count, ranks in times.items()} | {"version": torch.__version__}


def _count_file(path) -> Counter:
    """The sequential word count of one file (the Pool's and Dask's task)."""
    return Counter(words(Path(path).read_text()))


def _counting_map(name: str, text: str):
    """Word count's map with in-mapper combining (each task counts its own words, as the
    Pool's task does), so the two compare the framework, not the per-pair work."""
    return Counter(words(text)).items()


def corpus(directory: Path, megabytes: int) -> list[Path]:
    """``megabytes`` of generated text in CORPUS_FILES files: Zipf-distributed words over a
    5,000-word vocabulary, 12 words a line."""
    rng = np.random.default_rng(0)
    vocabulary = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 10)))
                           for _ in range(5_000)])
    paths = []
    per_file = megabytes * 2**20 // CORPUS_FILES
    for i in range(CORPUS_FILES):
        picks = np.minimum(rng.zipf(1.2, per_file // 4 // 12 * 12), len(vocabulary)) - 1  # words of 4+ bytes
        text = "\n".join(" ".join(line) for line in vocabulary[picks].reshape(-1, 12))
        path = directory / f"part-{i:03}.txt"
        path.write_text(text[:text.rfind("\n", 0, per_file)])
        paths.append(path)
    return paths


def word_count_rows(megabytes: int, rounds: int = 3) -> list[str]:
    """Word count of a generated corpus: this MapReduce on 1 and 2 workers (in-mapper
    combining), one process's Counter, a hand-written multiprocessing.Pool and Dask bag on 2
    processes. Every contender runs once a round, in turn, for ``rounds`` rounds, each
    figure the median of its rounds: this machine slows by 20% and more over minutes of
    load, which one run each, in sequence, charged to whichever ran last."""
    import contextlib
    import multiprocessing
    import tempfile
    import time

    from mlsys_ext.distributed import mapreduce, word_count_reduce

    try:
        import dask
        import dask.bag as db
    except ImportError:
        dask = None
    with tempfile.TemporaryDirectory(prefix="mlsys-wordcount-") as directory, contextlib.ExitStack() as stack:
        paths = corpus(Path(directory), megabytes)
        size = sum(p.stat().st_size for p in paths) / 1e6
        clusters = {workers: stack.enter_context(Cluster(workers, timeout=120.0)) for workers in (1, 2)}
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(2))
        for cluster in clusters.values():
            mapreduce(cluster, paths[:2], _counting_map, word_count_reduce, n_reduce=2, progress=False)  # warm-up
        pool.map(_count_file, paths[:2])  # warm-up: the processes started

        def this(workers):
            res = mapreduce(clusters[workers], paths, _counting_map, word_count_reduce, n_reduce=4, task_timeout=60.0,
                            progress=False)
            return Counter(res.output)

        contenders = {"Counter, 1 process": lambda: sum((_count_file(p) for p in paths), Counter()),
                      "this, 1 worker": lambda: this(1), "this, 2 workers": lambda: this(2),
                      "multiprocessing.Pool(2)": lambda: sum(pool.map(_count_file, paths), Counter())}
        if dask is not None:
            bag = db.from_sequence([str(p) for p in paths], npartitions=len(paths)).map(_count_file)

            def with_dask():
                with dask.config.set(scheduler="processes", num_workers=2):
                    return bag.fold(lambda a, b: a + b, initial=Counter()).compute()

            contenders[f"dask {dask.__version__} bag, 2 processes"] = with_dask
        seconds, answers = {name: [] for name in contenders}, {}
        for _ in range(rounds):
            for name, run in contenders.items():
                start = time.perf_counter()
                answers[name] = run()
                seconds[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(times) for name, times in seconds.items()}
    want = answers["Counter, 1 process"]
    lines = [f"\nword count, {size:,.0f} MB in {CORPUS_FILES} files (in-mapper combining, 4 reduce tasks; warm pools; "
             f"median of {rounds} rounds, the contenders in turn)",
             f"{'':<34}{'seconds':>9}{'MB/s':>8}  same counts"]
    for name, s in seconds.items():
        lines.append(f"{name:<34}{s:>9.2f}{size / s:>8.1f}  {answers[name] == want}")
    one, two, pool_seconds = seconds["this, 1 worker"], seconds["this, 2 workers"], seconds["multiprocessing.Pool(2)"]
    lines.append(f"{'PASS' if one / two >= 1.7 else 'MISS'}: >= 1.7x from 1 to 2 workers ({one / two:.2f}x)")
    lines.append(f"{'PASS' if two <= 1.1 * pool_seconds else 'MISS'}: within 10% of the hand-written Pool "
                 f"({two / pool_seconds:.2f}x its time)")
    dask_name = next((n for n in seconds if n.startswith("dask")), None)
    if dask_name:
        lines.append(f"{'PASS' if two < seconds[dask_name] else 'MISS'}: faster than Dask bag "
                     f"({seconds[dask_name] / two:.2f}x)")
    else:
        lines.append("dask: not installed (pip install -e '.[bench]')")
    return lines


def hogwild_rows() -> list[str]:
    """Lock-free SGD with the workers as threads of one process (the kernels lab's) and as
    processes of the cluster (one shared-memory weight vector), on the same data."""
    from mlsys_ext.distributed import hogwild_processes
    from mlsys_ext.kernels import hogwild_sgd, sparse_classification

    X, y = sparse_classification(HOGWILD_ROWS, 2**16, 16, seed=0)
    runs = {"serial": hogwild_sgd(X, y, epochs=HOGWILD_EPOCHS, mode="serial", seed=0, backend="numba")}
    for threads in (1, 2):
        runs[f"threads x{threads}"] = hogwild_sgd(X, y, epochs=HOGWILD_EPOCHS, threads=threads, seed=0,
                                                  backend="numba")
    with Cluster(2, timeout=60.0) as cluster:
        for workers in (1, 2):
            hogwild_processes(cluster, X, y, workers, epochs=1, seed=0)  # warm-up: numba's cache, the mappings
            runs[f"processes x{workers}"] = hogwild_processes(cluster, X, y, workers, epochs=HOGWILD_EPOCHS, seed=0)
    serial = runs["serial"].history.seconds.median()
    lines = [f"\nHogwild, {HOGWILD_ROWS:,} rows x 65,536 features, 16 nonzeros a row, {HOGWILD_EPOCHS} epochs "
             "(median epoch; processes: the driver's whole epoch, orders sent and answers gathered)",
             f"{'workers':<16}{'ms/epoch':>10}{'vs serial':>11}{'accuracy':>10}"]
    for name, run in runs.items():
        median = run.history.seconds.median()
        lines.append(f"{name:<16}{1e3 * median:>10.2f}{serial / median:>10.2f}x{run.history.accuracy.iloc[-1]:>10.4f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M floats, a 10 MB corpus, no Hogwild")
    args = parser.parse_args()
    print(describe_machine())
    sizes = [1 << 20] if args.quick else [1 << 20, 1 << 24]
    mine, peer = ours(sizes), gloo(sizes)
    print(f"\nall-reduce, {RANKS} ranks, float32, median of {REPEATS} (the whole call: inputs loaded, sums returned)")
    print(f"{'algorithm':<16}{'size (B)':>13}{'count':>12}{'type':>7}{'time (ms)':>11}{'algbw GB/s':>12}"
          f"{'busbw GB/s':>12}{'whole call ms':>15}")
    for count in sizes:
        size = 4 * count
        rows = [(name, *mine[name, count]) for name in ("ring", "tree", "ps", "ps x4")]
        if count in peer:
            rows.append((f"gloo {peer['version']}", peer[count], None))
        for name, seconds, whole in rows:
            algbw = size / seconds / 1e9
            print(f"{name:<16}{size:>13,}{count:>12,}{'float':>7}{1e3 * seconds:>11.2f}{algbw:>12.3f}"
                  f"{bus_bandwidth(algbw, RANKS):>12.3f}" + (f"{1e3 * whole:>15.2f}" if whole else f"{'n/a':>15}"))
    if "missing" in peer:
        print(f"gloo: {peer['missing']}")
    big = sizes[-1]
    ring, ps = mine["ring", big][0], mine["ps", big][0]
    print(f"\n{'PASS' if ps / ring >= 2 else 'MISS'}: ring >= 2x the single parameter server at {big:,} floats "
          f"({ps / ring:.2f}x)")
    if big in peer:
        print(f"{'PASS' if peer[big] >= ring else 'MISS'}: ring busbw >= Gloo's at {big:,} floats "
              f"({peer[big] / ring:.2f}x Gloo's time)")
    print("\n".join(word_count_rows(10 if args.quick else 100)))
    if not args.quick:
        print("\n".join(hogwild_rows()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
