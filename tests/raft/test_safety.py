"""Randomised runs over many seeds: partitions, crashes, restarts, lost and reordered messages,
compactions and leadership transfers, checking Raft's safety properties throughout and that
the cluster recovers once the network heals."""
import random

import pytest

from mlsys_ext.raft import ProposalDropped, RaftConfig

from .harness import FAST, Network

SEEDS = range(50)
PLAIN = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, prevote=False, check_quorum=False)
SMALL_WINDOWS = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, max_batch=3, max_bytes=16,
                           max_inflight=2, read_only="lease")


def deliver_some(net: Network, rng: random.Random, rounds: int = 3) -> None:
    """Deliver part of the queue, keep the rest for later (so messages get delayed and reordered)."""
    for _ in range(rounds):
        batch, net.queue = list(net.queue), type(net.queue)()
        for m in batch:
            if rng.random() < 0.75:
                net.deliver(m)
            else:
                net.queue.append(m)


def chaos(seed: int, n: int = 5, ticks: int = 400, config: RaftConfig = FAST) -> Network:
    rng = random.Random(seed)
    net = Network(n, seed=seed, config=config)
    net.drop_rate = 0.05
    proposed = 0
    for t in range(ticks):
        event = rng.random()
        if event < 0.02:
            ids = list(net.nodes)
            rng.shuffle(ids)
            cut = rng.randint(1, n - 1)
            net.cut.clear()
            net.partition(ids[:cut], ids[cut:])
        elif event < 0.04:
            net.cut.clear()
        elif event < 0.05 and len(net.down) < 2:
            net.crash(rng.choice([i for i in net.nodes if i not in net.down]))
        elif event < 0.07 and net.down:
            net.restart(rng.choice(sorted(net.down)))
        elif event < 0.08:
            live = [i for i in net.nodes if i not in net.down]
            net.compact(rng.choice(live))
        elif event < 0.085 and net.leader() is not None:
            leader = net.nodes[net.leader()]
            try:
                leader.transfer_leadership(rng.choice([i for i in leader.voters if i != leader.id]))
            except ProposalDropped:
                pass
        if rng.random() < 0.3 and net.leader() is not None:
            try:
                net.propose(b"s%d-%d" % (seed, proposed))
                proposed += 1
            except ProposalDropped:
                pass
        net.tick(1, stabilize=False)
        deliver_some(net, rng)
        if t % 50 == 0:
            net.check_safety()
    net.check_safety()
    return net


CASES = ([("prevote+checkquorum", FAST, seed) for seed in SEEDS]
         + [("plain", PLAIN, seed) for seed in range(20)]
         + [("small-windows+lease", SMALL_WINDOWS, seed) for seed in range(20)])


@pytest.mark.parametrize("name, config, seed", CASES, ids=[f"{name}-{seed}" for name, _, seed in CASES])
def test_safety_under_partitions_crashes_and_message_loss(name, config, seed):
    heal_and_check(chaos(seed, config=config))


def heal_and_check(net: Network) -> None:
    """Heal everything: a leader emerges, commits a new entry, and every node converges on it."""
    for i in sorted(net.down):
        net.restart(i)
    net.recover()
    net.queue.clear()
    proposed_in_term = None
    for _ in range(600):
        net.tick()
        leader = net.leader()
        if leader is not None and net.nodes[leader].term != proposed_in_term:
            try:
                net.propose(b"final")   # again if that leader was deposed before it committed
                proposed_in_term = net.nodes[leader].term
            except ProposalDropped:     # a leadership transfer is still under way
                pass
        if all(applied and applied[-1][2] == b"final" for applied in net.applied.values()):
            break
    net.check_safety()
    assert all(applied and applied[-1][2] == b"final" for applied in net.applied.values()), "no convergence"
    assert len({node.log.committed for node in net.nodes.values()}) == 1
