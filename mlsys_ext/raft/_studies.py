"""Studies that run the simulator many times: the Raft paper's Figure 16."""
from __future__ import annotations

import pandas as pd

from ._config import RaftConfig
from ._simulation import Simulation

# The paper's timeout ranges in ms (it also has 150-150, no randomness, which RaftConfig
# refuses: every node would time out together, and elections would split forever).
PAPER_TIMEOUTS = ((150, 151), (150, 155), (150, 175), (150, 200), (150, 300))


def time_to_elect(timeouts=PAPER_TIMEOUTS, trials: int = 50, n: int = 5, delay=(0.005, 0.010),
                  seed: int = 0, give_up: float = 10.0) -> pd.DataFrame:
    """Crash the leader of a steady ``n``-server cluster and time until a new one is
    elected, ``trials`` times for each election-timeout range (ms). One row per trial:
    timeout ("150-300"), trial, seconds (``give_up`` if none emerged by then).
    No PreVote or CheckQuorum, as in the paper; 1 ms ticks."""
    rows = []
    for low, high in timeouts:
        config = RaftConfig(election_timeout=(low / 1000, high / 1000), heartbeat=low / 3000, tick=0.001,
                            prevote=False, check_quorum=False)
        for trial in range(trials):
            sim = Simulation(n, seed=seed * 100_003 + trial, config=config)
            sim.set_network(delay=delay)
            sim.run_for(2.0)
            leader = sim.leader()
            if leader is None:
                continue
            sim.crash(leader)
            waited = 0.0
            while waited < give_up and sim.leader() is None:
                sim.run_for(0.001)
                waited += 0.001
            rows.append((f"{low}-{high}", trial, waited))
    return pd.DataFrame(rows, columns=["timeout", "trial", "seconds"])


def throughput_by_batch(batches=(1, 2, 4, 8, 16, 32, 64), offered: float = 2000.0, seconds: float = 1.0,
                        n: int = 3, max_inflight: int = 1, delay=(0.005, 0.005), seed: int = 0) -> pd.DataFrame:
    """Entries committed per simulated second against ``max_batch``, with ``offered``
    proposals per second at the leader, ``max_inflight`` appends in flight per follower
    and a fixed one-way ``delay``: with one append per round trip, batching is what lets
    the log keep up. One row per batch size: max_batch, committed_per_second, offered."""
    rows = []
    for batch in batches:
        config = RaftConfig(election_timeout=(0.3, 0.6), heartbeat=0.05, tick=0.01, max_batch=batch,
                            max_inflight=max_inflight)
        sim = Simulation(n, seed=seed, config=config)
        sim.set_network(delay=delay)
        sim.run_for(2.0)
        leader = sim.leader()
        if leader is None:
            continue
        before = sim.status(leader).commit
        step, per_step = 0.001, offered * 0.001
        owed = 0.0
        for _ in range(int(seconds / step)):
            owed += per_step
            while owed >= 1.0:
                sim.start(leader, 0)
                owed -= 1.0
            sim.run_for(step)
        rows.append((batch, (sim.status(leader).commit - before) / seconds, offered))
    return pd.DataFrame(rows, columns=["max_batch", "committed_per_second", "offered"])
