"""The cluster's data plane against Ray: large arrays between actors, and one array broadcast.

Not a test. Two of issue [I]'s targets, in one run beside Ray:

- a 64 MiB float32 array passed actor -> actor and returned: effective >= 2 GB/s
  (2 x 64 MiB over the round trip, timed inside the calling actor, which makes the
  array afresh each time), and faster than Ray's actor -> actor call with the same
  numpy argument;
- broadcasting a 256 MiB array to 4 actors with ``put`` adds <= 1.1x its size to the
  machine's shared memory (``Shmem`` in /proc/meminfo, so other processes' use is noise).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_data_plane.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.cluster import Cluster, context

MIB = 1 << 20


class Echo:
    def echo(self, array):
        return array

    def round_trip(self, peer: str, elements: int, repeats: int) -> list[float]:
        """Seconds for each call that sends a fresh float32 array to ``peer`` and gets it back
        (made here, as a model makes activations: an array received would go on uncopied)."""
        handle = context().handle(peer)
        handle.echo.remote(np.ones(elements, dtype=np.float32)).result()  # warm
        times = []
        for _ in range(repeats):
            array = np.ones(elements, dtype=np.float32)
            start = time.perf_counter()
            back = handle.echo.remote(array).result()
            times.append(time.perf_counter() - start)
            assert back.shape == array.shape
        return times

    def keep(self, array):
        self.kept = array
        return array.nbytes


def ours(elements: int, repeats: int, threshold) -> list[float]:
    with Cluster(2, echo=False, timeout=120, shared_memory_threshold=threshold) as cluster:
        a = cluster.spawn(Echo, name="a", worker="w0")
        cluster.spawn(Echo, name="b", worker="w1")
        return a.round_trip.remote("b", elements, repeats).result()


def ray_peer(elements: int, repeats: int) -> list[float]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        @ray.remote
        class RayEcho:
            def echo(self, array):
                return array

            def round_trip(self, peer, elements, repeats):
                ray.get(peer.echo.remote(np.ones(elements, dtype=np.float32)))
                times = []
                for _ in range(repeats):
                    array = np.ones(elements, dtype=np.float32)
                    start = time.perf_counter()
                    back = ray.get(peer.echo.remote(array))
                    times.append(time.perf_counter() - start)
                    assert back.shape == array.shape
                return times

        a, b = RayEcho.remote(), RayEcho.remote()
        return ray.get(a.round_trip.remote(b, elements, repeats))
    finally:
        ray.shutdown()


def shmem() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Shmem:"))


def broadcast(nbytes: int) -> float:
    """Shared memory added by putting one array and handing it to 4 actors, over its size."""
    array = np.ones(nbytes // 4, dtype=np.float32)
    with Cluster(2, echo=False, timeout=120) as cluster:
        actors = [cluster.spawn(Echo, name=f"k{i}") for i in range(4)]
        before = shmem()
        ref = cluster.put(array)
        assert [k.keep.remote(ref).result() for k in actors] == [nbytes] * 4
        return (shmem() - before) / nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine(), end="\n\n")
    elements = 64 * MIB // 4
    rows = [("this, shared memory", ours(elements, args.repeats, 256 * 1024)),
            ("this, pickled in the stream", ours(elements, args.repeats, None)),
            ("Ray", ray_peer(elements, args.repeats))]
    nbytes = 4 * elements
    print(f"64 MiB float32, made in an actor, sent to another and back (timed in the caller; "
          f"median of {args.repeats})")
    print(f"{'path':<30}{'ms':>8}{'best ms':>9}{'GB/s':>7}")
    for name, times in rows:
        median = statistics.median(times)
        print(f"{name:<30}{1e3 * median:>8.0f}{1e3 * min(times):>9.0f}{2 * nbytes / median / 1e9:>7.2f}")
    ours_s, ray_s = statistics.median(rows[0][1]), statistics.median(rows[2][1])
    rate = 2 * nbytes / ours_s / 1e9
    print(f"{'PASS' if rate >= 2 else 'MISS'}: effective {rate:.2f} GB/s (target >= 2 GB/s)")
    print(f"{'PASS' if ours_s < ray_s else 'MISS'}: {ours_s / ray_s:.2f}x Ray's time (target < 1x)")
    grown = broadcast(256 * MIB)
    print(f"{'PASS' if grown <= 1.1 else 'MISS'}: put of 256 MiB handed to 4 actors added {grown:.2f}x its size "
          "to the machine's shared memory (target <= 1.1x)")


if __name__ == "__main__":
    main()
