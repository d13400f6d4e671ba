"""Actor-runtime benchmark: mlsys_ext's local backend ("this") against Ray actors
and a multiprocessing.Pool baseline, and this package's Ray backend ("this on ray")
against plain Ray, measured in one run on this machine.

    .venv/bin/python benchmarks/bench_cluster.py           # full run, about 1-2 minutes
    .venv/bin/python benchmarks/bench_cluster.py --quick   # smoke run, small counts

Every runtime goes through the same measurements (the "between" column of the
table says which peers each is between: each of the 4 actors has a worker
process of its own, c0 on w0, c1 on w1, so actor -> actor rows cross processes;
on this runtime they go over the two actors' direct socket, not the driver):

    sync calls          the driver calls one actor, waits for the result, repeats
    pipelined calls     issue many calls to one actor, then gather them all
    actor->actor calls  actor A calls actor B and waits, k times (rate as seen by A)
    actor->actor sends  A sends k one-way messages to B, then one call to flush them
    64 MiB round trip   A makes a 64 MiB float32 array, passes it to B, which returns
                        it (effective GB/s: 2 x 64 MiB over the time A waited)
    4 actors ready      from nothing to 4 actors that have each answered one call

Each rate is the median of several timed repeats after a warm-up that also sizes
the repeat's call count; "±" is half the min-max spread relative to the median.
The runtimes run one after another (this, pool, then Ray and this on Ray, each on
a Ray of its own, so that Ray's background processes are not running while the
others are timed).

The script reports whether the targets are met; it always exits 0.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

from mlsys_ext import describe_machine

CORES = os.cpu_count() or 1
ACTORS = 4


@dataclass(frozen=True)
class Settings:
    seconds: float  # target length of one timed repeat
    repeats: int  # timed repeats per rate (the median is reported)
    warmup: float  # the warm-up doubles its count until one run lasts this long
    start_repeats: int  # cold starts of 4 actors (the median is reported)
    array_repeats: int  # 64 MiB round trips (the median is reported)


FULL = Settings(seconds=1.0, repeats=5, warmup=0.3, start_repeats=5, array_repeats=9)
QUICK = Settings(seconds=0.1, repeats=2, warmup=0.05, start_repeats=1, array_repeats=3)


# -- the actor every runtime hosts ------------------------------------------
class Counter:
    """A trivial actor; subclasses say how one actor calls (``ask``) or messages (``tell``) a peer."""

    def __init__(self):
        self.n = 0

    def incr(self, k=1):
        self.n += k
        return self.n

    def call_peer(self, peer, k):
        """k calls to ``peer.incr``, each waited for; the seconds taken, as seen here."""
        start = time.perf_counter()
        for _ in range(k):
            self.ask(peer, 1)
        return time.perf_counter() - start

    def send_peer(self, peer, k):
        """k one-way ``peer.incr`` messages, then a call that answers once all are processed."""
        before = self.ask(peer, 0)
        start = time.perf_counter()
        for _ in range(k):
            self.tell(peer, 1)
        after = self.ask(peer, 0)
        elapsed = time.perf_counter() - start
        if after != before + k:
            raise RuntimeError(f"only {after - before} of {k} one-way messages were processed at the flush")
        return elapsed


    def echo(self, array):
        return array

    def array_round_trip(self, peer, elements, repeats):
        """Seconds of each call passing a fresh float32 array to ``peer``, which returns it."""
        import numpy as np

        self.ask_echo(peer, np.ones(elements, dtype=np.float32))  # warm
        times = []
        for _ in range(repeats):
            array = np.ones(elements, dtype=np.float32)
            start = time.perf_counter()
            back = self.ask_echo(peer, array)
            times.append(time.perf_counter() - start)
            assert back.shape == array.shape
        return times


class ClusterCounter(Counter):
    @staticmethod
    def ask_echo(peer, array):
        return peer.echo.remote(array).result()

    @staticmethod
    def ask(peer, k):
        return peer.incr.remote(k).result()

    @staticmethod
    def tell(peer, k):
        peer.incr.send(k)


class RayCounter(Counter):
    @staticmethod
    def ask_echo(peer, array):
        import ray

        return ray.get(peer.echo.remote(array))

    @staticmethod
    def ask(peer, k):
        import ray

        return ray.get(peer.incr.remote(k))

    @staticmethod
    def tell(peer, k):
        peer.incr.remote(k)


# -- what a Pool worker runs --------------------------------------------------
_barrier = None


def _pool_init(barrier) -> None:
    global _barrier
    _barrier = barrier


def _meet(_):
    """Answer only once every worker of the pool holds one of these tasks."""
    _barrier.wait(timeout=30)
    return os.getpid()


def _incr(k):
    return k + 1


# -- runtimes: one class each, the same shape --------------------------------
class Runtime:
    """One runtime under test. Its methods do the work; the functions below time it.

    ``a2a_call``/``a2a_send`` take a count k and return the seconds actor A
    measured itself; None on a runtime without actor-to-actor messages.
    """

    name = "?"

    def open(self) -> str | None:
        """Set up what outlives the actors; may return a note to print."""
        return None

    def start(self, n: int) -> None:
        """Bring up n actors, each of which has answered one call."""
        raise NotImplementedError

    def call(self):
        """One synchronous call to actor 0."""
        raise NotImplementedError

    def pipelined(self, count: int) -> None:
        """Issue ``count`` calls to actor 0, then wait for all of them."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear down the actors of ``start``."""

    def close(self) -> None:
        """Tear down what ``open`` set up."""

    def sync(self, count: int) -> None:
        call = self.call
        for _ in range(count):
            call()


class ThisRuntime(Runtime):
    name = "this"

    backend = "local"

    def start(self, n):
        from mlsys_ext.cluster import Cluster

        self.cluster = Cluster(n, backend=self.backend)
        self.actors = [self.cluster.spawn(ClusterCounter, name=f"c{i}") for i in range(n)]
        self.cluster.gather([a.incr.remote(0) for a in self.actors])

    def call(self):
        return self.actors[0].incr.remote(1).result()

    def pipelined(self, count):
        actor = self.actors[0]
        self.cluster.gather([actor.incr.remote(1) for _ in range(count)])

    def a2a_call(self, k):
        return self.actors[0].call_peer.remote(self.actors[1], k).result()

    def a2a_send(self, k):
        return self.actors[0].send_peer.remote(self.actors[1], k).result()

    def a2a_array(self, repeats):
        return self.actors[0].array_round_trip.remote(self.actors[1], ARRAY_ELEMENTS, repeats).result(timeout=120)

    def stop(self):
        self.cluster.stop()


def init_ray() -> str:
    """Start a local Ray, as both Ray runtimes run on it; a note of what it took."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=CORES, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="ERROR", log_to_driver=False)
    return f"ray.init took {time.perf_counter() - start:.2f} s (num_cpus={CORES}); not counted in '4 actors ready'"


class ThisOnRayRuntime(ThisRuntime):
    """This package's cluster API on its Ray backend, on a Ray started as plain Ray's is."""

    name = "this on ray"

    def open(self):
        return init_ray()

    backend = "ray"

    def close(self):
        import ray

        ray.shutdown()


class RayRuntime(Runtime):
    name = "ray"

    def open(self):
        import ray

        note = init_ray()
        self.ray, self.cls = ray, ray.remote(RayCounter)
        return note

    def start(self, n):
        self.actors = [self.cls.remote() for _ in range(n)]
        self.ray.get([a.incr.remote(0) for a in self.actors])

    def call(self):
        return self.ray.get(self.actors[0].incr.remote(1))

    def pipelined(self, count):
        actor = self.actors[0]
        self.ray.get([actor.incr.remote(1) for _ in range(count)])

    def a2a_call(self, k):
        return self.ray.get(self.actors[0].call_peer.remote(self.actors[1], k))

    def a2a_send(self, k):
        return self.ray.get(self.actors[0].send_peer.remote(self.actors[1], k))

    def a2a_array(self, repeats):
        return self.ray.get(self.actors[0].array_round_trip.remote(self.actors[1], ARRAY_ELEMENTS, repeats))

    def stop(self):
        for actor in self.actors:
            self.ray.kill(actor)

    def close(self):
        self.ray.shutdown()


class PoolRuntime(Runtime):
    """multiprocessing.Pool: stateless tasks, not actors; no actor-to-actor messages."""

    name = "pool"
    a2a_call = a2a_send = a2a_array = None

    def open(self):
        return f"multiprocessing.Pool starts its workers with {multiprocessing.get_start_method()!r}"

    def start(self, n):
        self.pool = multiprocessing.Pool(n, initializer=_pool_init, initargs=(multiprocessing.Barrier(n),))
        pids = self.pool.map(_meet, range(n), chunksize=1)
        assert len(set(pids)) == n, pids

    def call(self):
        return self.pool.apply(_incr, (1,))

    def pipelined(self, count):
        for result in [self.pool.apply_async(_incr, (1,)) for _ in range(count)]:
            result.get()

    def stop(self):
        self.pool.terminate()
        self.pool.join()


# -- measurements -------------------------------------------------------------
RATES = [  # (Runtime attribute, table label, between which peers)
    ("sync", "sync calls/s", "driver -> c0 (w0)"),
    ("pipelined", "pipelined calls/s", "driver -> c0 (w0)"),
    ("a2a_call", "actor->actor calls/s", "c0 (w0) -> c1 (w1)"),
    ("a2a_send", "actor->actor sends/s", "c0 (w0) -> c1 (w1)"),
]
ARRAY = ("a2a_array", "64 MiB round trip GB/s", "c0 (w0) -> c1 (w1) -> c0")
START = ("start", "4 actors ready (ms)", "driver")
ARRAY_ELEMENTS = 16 << 20  # float32: 64 MiB
ARRAY_BYTES = 4 * ARRAY_ELEMENTS
TODAY_A2A_CALLS = 2_600  # actor -> actor sync calls/s through the driver's router, before direct paths


def timed(work, count: int) -> float:
    """Seconds for ``work(count)``: the figure it returns if any (timed inside actor A), else wall time."""
    start = time.perf_counter()
    inner = work(count)
    return inner if isinstance(inner, float) else time.perf_counter() - start


def rates(work, cfg: Settings) -> list[float] | None:
    """Operations per second of ``work(count)`` over ``cfg.repeats`` runs; None if not applicable.

    The warm-up doubles the count until one run lasts ``cfg.warmup``; the timed
    runs then use a fixed count sized to last about ``cfg.seconds``.
    """
    if work is None:
        return None
    count, took = 64, 0.0
    while took < cfg.warmup:
        count *= 2
        took = timed(work, count)
    count = max(int(count * cfg.seconds / took), 1)
    return [count / timed(work, count) for _ in range(cfg.repeats)]


def start_times(rt: Runtime, cfg: Settings) -> list[float]:
    """Seconds to bring up 4 answering actors, ``cfg.start_repeats`` times; the last ones stay up."""
    times = []
    for i in range(cfg.start_repeats):
        if i:
            rt.stop()
        start = time.perf_counter()
        rt.start(ACTORS)
        times.append(time.perf_counter() - start)
    return times


def bench(rt: Runtime, cfg: Settings) -> dict:
    """Every measurement of one runtime: {key: list of samples or None}, plus its notes."""
    print(f"[{rt.name}] running ...", file=sys.stderr, flush=True)
    results = {"notes": []}
    try:
        note = rt.open()
        if note:
            results["notes"].append(note)
        try:
            results[START[0]] = start_times(rt, cfg)
            try:
                for key, _, _ in RATES:
                    results[key] = rates(getattr(rt, key), cfg)
                if rt.a2a_array is not None:  # round trips -> effective GB/s, one sample per trip
                    results[ARRAY[0]] = [2 * ARRAY_BYTES / t / 1e9 for t in rt.a2a_array(cfg.array_repeats)]
            finally:
                rt.stop()
        finally:
            rt.close()
    except Exception as exc:  # report a broken runtime, keep benchmarking the others
        traceback.print_exc()
        results["notes"].append(f"failed: {exc!r}")
    return results


# -- report ---------------------------------------------------------------------
def median(samples):
    return statistics.median(samples) if samples else None


def cell(samples, scale: float = 1.0, digits: int = 0) -> str:
    if not samples:
        return "n/a"
    mid = median(samples)
    spread = (max(samples) - min(samples)) / 2 / mid if mid else 0.0
    return f"{mid * scale:,.{digits}f} ±{spread:.0%}"


def ratio(a, b) -> str:
    return f"{median(a) / median(b):.2f}" if a and b else "n/a"


def table(results: dict) -> str:
    this, ray, pool, on_ray = (results[name] for name in ("this", "ray", "pool", "this on ray"))
    header = ("measurement", "between", "this", "ray", "pool", "this on ray", "this/ray", "this/pool",
              "this on ray/ray")
    rows = [header]
    for key, label, between in RATES + [ARRAY, START]:
        scale = 1000.0 if key == START[0] else 1.0
        digits = 2 if key == ARRAY[0] else 0
        rows.append((label, between, *(cell(r.get(key), scale, digits) for r in (this, ray, pool, on_ray)),
                     ratio(this.get(key), ray.get(key)), ratio(this.get(key), pool.get(key)),
                     ratio(on_ray.get(key), ray.get(key))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def targets(results: dict) -> list[tuple[str, bool | None, str]]:
    """(target, met?, figure) for each of the issue's targets; met is None when not measurable."""
    this = results["this"]
    this_sync = median(this.get("sync"))
    ray_sync = median(results["ray"].get("sync"))
    starts = this.get(START[0])
    checks = []

    def at_least(target: str, key: str, floor: float, unit: str, extra=None) -> None:
        value = median(this.get(key))
        if value is None:
            checks.append((target, None, "not measured"))
            return
        figure = f"{value:,.2f} {unit}" if unit == "GB/s" else f"{value:,.0f}{unit}"
        checks.append((target, value >= floor, figure + (extra(value) if extra else "")))

    at_least("driver -> actor sync calls >= 20,000/s", "sync", 20_000, "/s")
    at_least("actor -> actor sync calls >= 20,000/s (>= 8x the routed 2,600/s)", "a2a_call",
             max(20_000, 8 * TODAY_A2A_CALLS), "/s", lambda v: f" ({v / TODAY_A2A_CALLS:.1f}x)")
    at_least("actor -> actor one-way sends >= 100,000/s", "a2a_send", 100_000, "/s")
    at_least("64 MiB float32 actor -> actor and back >= 2 GB/s effective", ARRAY[0], 2.0, "GB/s")
    if this_sync is None or ray_sync is None:
        checks.append(("sync calls >= 10x Ray's", None, "not measured"))
    else:
        checks.append(("sync calls >= 10x Ray's", this_sync >= 10 * ray_sync, f"{this_sync / ray_sync:.1f}x"))
    on_ray_sync = median(results["this on ray"].get("sync"))
    if on_ray_sync is None or ray_sync is None:
        checks.append(("Ray backend sync calls >= 0.5x plain Ray's", None, "not measured"))
    else:
        checks.append(("Ray backend sync calls >= 0.5x plain Ray's", on_ray_sync >= 0.5 * ray_sync,
                       f"{on_ray_sync:,.0f}/s against {ray_sync:,.0f}/s ({on_ray_sync / ray_sync:.2f}x)"))
    if not starts:
        checks.append(("4 actors ready in < 1 s", None, "not measured"))
    else:
        checks.append(("4 actors ready in < 1 s", median(starts) < 1.0,
                       f"median {median(starts):.3f} s (best {min(starts):.3f}, worst {max(starts):.3f})"))
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with small counts")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    print(describe_machine())
    try:
        import ray

        print(f"ray {ray.__version__}")
    except ImportError:
        print("ray: not installed (pip install -e '.[bench]')")
    print(f"settings: {'quick' if args.quick else 'full'} - {cfg.repeats} repeats of ~{cfg.seconds:g} s per rate, "
          f"{cfg.start_repeats} cold starts\n", flush=True)
    began = time.perf_counter()
    runtimes = (ThisRuntime(), PoolRuntime(), RayRuntime(), ThisOnRayRuntime())
    results = {rt.name: bench(rt, cfg) for rt in runtimes}

    print(table(results))
    print("\nratios: rates, this/other (> 1: this is faster); '4 actors ready', time this/other (< 1: this is faster)")
    for name, res in results.items():
        for note in res["notes"]:
            print(f"note ({name}): {note}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"total {time.perf_counter() - began:.0f} s\n")
    for target, met, figure in targets(results):
        verdict = "n/a " if met is None else ("PASS" if met else "MISS")
        print(f"{verdict}  {target}: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
