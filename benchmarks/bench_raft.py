"""Raft: committed writes per second and their latency on a live 3-server cluster, this
package against PySyncObj (3 local nodes), and the simulator's speed.

Not a test. Both sides keep their logs in memory or unsynced (this package's
``FileStorage(fsync=False)``; PySyncObj without a journal) and run 3 servers as 3
processes on this machine. Two loads: client threads doing blocking writes one
after another (latency-bound), and one pipelining client with up to PIPELINE
writes in flight (this package's ``put_many``; PySyncObj's calls with callbacks):

    .venv/bin/python benchmarks/bench_raft.py [--seconds 5]

PySyncObj comes from the ``bench`` extra.
"""
from __future__ import annotations

import argparse
import multiprocessing
import socket
import threading
import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.raft import RaftCluster, RaftConfig, Simulation

CLIENT_THREADS = (1, 8)
PIPELINE = 1000
PIPELINED_WRITES = 30_000
CONFIG = dict(election_timeout=(0.3, 0.6), heartbeat=0.05, tick=0.01)
SETTINGS = {"batching off": dict(max_batch=1, max_inflight=1), "batching on": dict(max_batch=64, max_inflight=8)}


def drive(write, threads: int, seconds: float) -> tuple[float, np.ndarray]:
    """Writes per second and each write's latency, ``threads`` clients for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.monotonic() + seconds

    def client(t):
        i = 0
        while time.monotonic() < stop:
            start = time.perf_counter()
            write(t, i)
            latencies[t].append(time.perf_counter() - start)
            i += 1

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    every = np.concatenate([np.array(lat) for lat in latencies])
    return len(every) / (time.monotonic() - started), every


def ours(settings: dict, threads: int, seconds: float):
    with RaftCluster(3, config=RaftConfig(**CONFIG, **settings)) as raft:
        raft.wait_for_leader()
        clients = [raft.client() for _ in range(threads)]
        clients[0].put("warm", "up")
        return drive(lambda t, i: clients[t].put(f"k{t}", str(i)), threads, seconds)


def ours_pipelined(settings: dict) -> float:
    with RaftCluster(3, config=RaftConfig(**CONFIG, **settings), timeout=60.0) as raft:
        raft.wait_for_leader()
        start = time.perf_counter()
        applied = raft.put_many([(f"k{i % 100}", str(i)) for i in range(PIPELINED_WRITES)], window=PIPELINE)
        return applied / (time.perf_counter() - start)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _pysyncobj_node(me: str, others: list[str], threads: int, seconds: float, results, ready):
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class KV(SyncObj):
        def __init__(self):
            super().__init__(me, others, SyncObjConf(raftMinTimeout=0.3, raftMaxTimeout=0.6,
                                                     appendEntriesPeriod=0.05, dynamicMembershipChange=False))
            self.data = {}

        @replicated
        def put(self, key, value):
            self.data[key] = value

    kv = KV()
    if results is None:  # a follower: serve until the driving node is done
        ready.wait()
        time.sleep(seconds + 30)
        return
    while kv._getLeader() is None:
        time.sleep(0.05)
    kv.put("warm", "up", sync=True)
    if threads:
        results.put(drive(lambda t, i: kv.put(f"k{t}", str(i), sync=True), threads, seconds))
        return
    window = threading.Semaphore(PIPELINE)
    done = threading.Event()
    applied = [0]

    def applied_one(_result, _error):
        applied[0] += 1
        window.release()
        if applied[0] == PIPELINED_WRITES:
            done.set()

    start = time.perf_counter()
    for i in range(PIPELINED_WRITES):
        window.acquire()
        kv.put(f"k{i % 100}", str(i), callback=applied_one)
    done.wait(60)
    results.put((applied[0] / (time.perf_counter() - start), None))


def pysyncobj(threads: int, seconds: float):
    """Blocking writes from ``threads`` client threads, or (threads=0) one pipelining client."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(3)]
    context = multiprocessing.get_context("spawn")
    results, ready = context.Queue(), context.Event()
    nodes = [context.Process(target=_pysyncobj_node,
                             args=(addresses[i], [a for a in addresses if a != addresses[i]], threads, seconds,
                                   results if i == 0 else None, ready), daemon=True) for i in range(3)]
    for node in nodes:
        node.start()
    try:
        return results.get(timeout=seconds + 60)
    finally:
        ready.set()
        for node in nodes:
            node.kill()
            node.join()


def simulated_speed(seconds: float = 60.0) -> float:
    """Simulated seconds per wall second: 5 nodes, one proposal every 10 ms of simulated time."""
    sim = Simulation(5, seed=0)
    sim.run_for(3.0)
    start = time.perf_counter()
    for step in range(int(seconds / 0.01)):
        leader = sim.leader()
        if leader is not None:
            sim.start(leader, step)
        sim.run_for(0.01)
    return seconds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    seconds = parser.parse_args().seconds
    print(describe_machine(), end="\n\n")
    rows = []
    for threads in CLIENT_THREADS:
        for name, settings in SETTINGS.items():
            rows.append((f"this, {name}", f"{threads} blocking", *ours(settings, threads, seconds)))
        rows.append(("PySyncObj", f"{threads} blocking", *pysyncobj(threads, seconds)))
    for name, settings in SETTINGS.items():
        rows.append((f"this, {name}", f"{PIPELINE} in flight", ours_pipelined(settings), None))
    rows.append(("PySyncObj", f"{PIPELINE} in flight", *pysyncobj(0, seconds)))
    print(f"live 3-server Raft on this machine; blocking clients run {seconds:g} s, "
          f"pipelined ones write {PIPELINED_WRITES:,} keys")
    print(f"{'system':<22}{'clients':>18}{'writes/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, load, rate, latencies in rows:
        timing = ("" if latencies is None else
                  f"{1e3 * np.percentile(latencies, 50):>9.2f}{1e3 * np.percentile(latencies, 99):>9.2f}")
        print(f"{name:<22}{load:>18}{rate:>11,.0f}{timing}")
    for load in [f"{t} blocking" for t in CLIENT_THREADS] + [f"{PIPELINE} in flight"]:
        best = max(rate for name, l, rate, _ in rows if l == load and name.startswith("this"))
        peer = next(rate for name, l, rate, _ in rows if l == load and name == "PySyncObj")
        verdict = "PASS" if best >= peer else "MISS"
        print(f"target, {load}: at least PySyncObj's writes/s: {verdict} ({best / peer:.2f}x)")
    for name, load, rate, latencies in rows:  # on one machine a round trip should take well under a ms
        if name.startswith("this") and load == "1 blocking":
            p50 = 1e3 * np.percentile(latencies, 50)
            verdict = "PASS" if rate >= 1_000 and p50 <= 1.0 else "MISS"
            print(f"target, {name}, 1 blocking: >= 1,000 writes/s at p50 <= 1 ms: {verdict} "
                  f"({rate:,.0f} writes/s, p50 {p50:.2f} ms)")
    idle = Simulation(5, seed=0)
    start = time.perf_counter()
    idle.run_for(60.0)
    print(f"simulator, 5 nodes: {60.0 / (time.perf_counter() - start):,.0f} simulated s per wall s idle, "
          f"{simulated_speed():,.0f} with 100 proposals per simulated second")


if __name__ == "__main__":
    main()
