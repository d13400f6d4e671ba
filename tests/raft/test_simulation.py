"""The Raft course scenario battery on the deterministic simulator, each over many seeds."""
import random

import pytest

from mlsys_ext.raft import RaftConfig, Simulation, Snapshot, check_linearizable
from mlsys_ext.raft._simulation import CLIENT_TIMEOUT

SEEDS = range(12)
ELECTION = 5.0  # seconds within which a leader must emerge


def leaders_by_term(sim):
    terms = {}
    for i in range(sim.n):
        term, role = sim.state(i)
        if role == "leader":
            terms.setdefault(term, []).append(i)
    return terms


def check_one_leader(sim, within=ELECTION, among=None):
    """Run until exactly one leader leads the newest term (among ``among``); return it."""
    among = set(range(sim.n)) if among is None else set(among)
    waited = 0.0
    while waited < within:
        sim.run_for(0.1)
        waited += 0.1
        terms = leaders_by_term(sim)
        assert all(len(ids) == 1 for ids in terms.values()), f"two leaders in one term: {terms}"
        live = {term: ids for term, ids in terms.items() if ids[0] in among}
        if live:
            return live[max(live)][0]
    raise AssertionError(f"no leader among {sorted(among)} within {within} s")


def check_no_leader(sim, among):
    for i in among:
        assert sim.state(i)[1] != "leader", f"node {i} leads without a quorum"


def committed(sim, index):
    """(servers that applied ``index``, the command); fails if two servers disagree on it."""
    seen = {}
    for i in range(sim.n):
        for at, command in sim.applied(i):
            if at == index:
                seen[i] = command
    commands = set(map(repr, seen.values()))
    assert len(commands) <= 1, f"servers disagree at index {index}: {seen}"
    return len(seen), next(iter(seen.values()), None)


def one(sim, command, expected, within=10.0, retry=True):
    """Submit ``command`` until ``expected`` servers applied it; its index (the 6.824 ``one``)."""
    waited = 0.0
    while waited < within:
        for i in range(sim.n):
            index, _, is_leader = sim.start(i, command)
            if is_leader:
                for _ in range(20):
                    sim.run_for(0.1)
                    waited += 2 * 0.05
                    count, got = committed(sim, index)
                    if count >= expected and got == command:
                        return index
                if not retry:
                    raise AssertionError(f"{command!r} did not reach {expected} servers")
                break
        sim.run_for(0.05)
        waited += 0.05
    raise AssertionError(f"{command!r} did not reach {expected} servers within {within} s")


def check_applied_consistently(sim):
    """State machine safety: every server applied increasing indices, and all agree on each."""
    for i in range(sim.n):
        indices = [index for index, _ in sim.applied(i)]
        assert indices == sorted(set(indices)), f"server {i} applied out of order: {indices}"
    for index in {index for i in range(sim.n) for index, _ in sim.applied(i)}:
        committed(sim, index)


@pytest.mark.parametrize("seed", SEEDS)
def test_initial_election_is_stable(seed):
    sim = Simulation(3, seed=seed)
    check_one_leader(sim)
    terms = {sim.state(i)[0] for i in range(3)}
    assert len(terms) == 1
    sim.run_for(2 * ELECTION)
    assert {sim.state(i)[0] for i in range(3)} == terms, "the term changed with no failure"
    check_one_leader(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_reelection_and_none_without_a_quorum(seed):
    sim = Simulation(3, seed=seed)
    first = check_one_leader(sim)
    sim.disconnect(first)
    check_one_leader(sim, among={0, 1, 2} - {first})
    sim.connect(first)  # the old leader rejoins: still one leader per term
    second = check_one_leader(sim)
    sim.disconnect(second)
    sim.disconnect((second + 1) % 3)
    sim.run_for(2 * ELECTION)
    check_no_leader(sim, [(second + 2) % 3])
    sim.connect((second + 1) % 3)
    check_one_leader(sim, among={(second + 1) % 3, (second + 2) % 3})
    sim.connect(second)
    check_one_leader(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_many_elections_with_random_peers_out(seed):
    sim = Simulation(7, seed=seed)
    rng = random.Random(seed)
    check_one_leader(sim)
    for _ in range(8):
        out = rng.sample(range(7), 3)
        for i in out:
            sim.disconnect(i)
        check_one_leader(sim, among=set(range(7)) - set(out))  # four of seven: a quorum
        for i in out:
            sim.connect(i)
    check_one_leader(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_agreement_despite_follower_and_leader_failures(seed):
    sim = Simulation(3, seed=seed)
    assert one(sim, 101, 3) > 0
    follower = (check_one_leader(sim) + 1) % 3
    sim.disconnect(follower)
    one(sim, 102, 2)
    one(sim, 103, 2)
    sim.connect(follower)
    one(sim, 104, 3)
    leader = check_one_leader(sim)
    sim.crash(leader)
    one(sim, 105, 2)
    sim.restart(leader)
    one(sim, 106, 3)
    check_applied_consistently(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_agreement_without_a_majority(seed):
    sim = Simulation(5, seed=seed)
    one(sim, 10, 5)
    leader = check_one_leader(sim)
    for offset in (1, 2, 3):
        sim.disconnect((leader + offset) % 5)
    index, _, is_leader = sim.start(leader, 20)
    assert is_leader
    sim.run_for(2 * ELECTION)
    assert committed(sim, index)[0] == 0, "committed without a majority"
    sim.heal()
    one(sim, 30, 5)
    check_applied_consistently(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_concurrent_starts_all_commit(seed):
    sim = Simulation(3, seed=seed)
    leader = check_one_leader(sim)
    indices = [sim.start(leader, 1000 + c)[0] for c in range(5)]
    sim.run_for(1.0)
    assert sorted(committed(sim, index)[1] for index in indices) == [1000 + c for c in range(5)]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_stale_leaders_entries_are_overwritten_on_rejoin(seed):
    sim = Simulation(3, seed=seed)
    one(sim, 101, 3)
    old = check_one_leader(sim)
    sim.disconnect(old)
    for command in (102, 103, 104):
        sim.start(old, command)  # never committed: the old leader is alone
    one(sim, 103, 2)
    new = check_one_leader(sim, among={0, 1, 2} - {old})
    sim.disconnect(new)
    sim.connect(old)
    one(sim, 104, 2)
    sim.heal()
    one(sim, 105, 3)
    check_applied_consistently(sim)


@pytest.mark.parametrize("seed", range(4))
def test_fast_backup_over_fifty_divergent_entries(seed):
    sim = Simulation(5, seed=seed)
    rng = random.Random(seed)
    one(sim, rng.random(), 5)
    leader = check_one_leader(sim)
    for offset in (2, 3, 4):  # the leader and one follower alone: nothing commits
        sim.disconnect((leader + offset) % 5)
    for _ in range(50):
        sim.start(leader, rng.random())
    sim.run_for(0.5)
    sim.disconnect(leader)
    sim.disconnect((leader + 1) % 5)
    for offset in (2, 3, 4):
        sim.connect((leader + offset) % 5)
    for _ in range(50):
        one(sim, rng.random(), 3)
    other = check_one_leader(sim, among={(leader + offset) % 5 for offset in (2, 3, 4)})
    third = next(i for i in range(5) if i not in (leader, (leader + 1) % 5, other))
    sim.disconnect(third)  # the new leader and one follower: again nothing commits
    for _ in range(50):
        sim.start(other, rng.random())
    sim.run_for(0.5)
    for i in range(5):
        sim.disconnect(i)
    for i in (leader, (leader + 1) % 5, third):  # the first group's old entries meet a fresh majority
        sim.connect(i)
    for _ in range(50):
        one(sim, rng.random(), 3)
    sim.heal()
    one(sim, rng.random(), 5)
    check_applied_consistently(sim)


@pytest.mark.parametrize("seed", SEEDS)
def test_rpc_counts_of_an_election_and_of_idle_heartbeats(seed):
    sim = Simulation(3, seed=seed)
    check_one_leader(sim)
    assert sum(sim.rpc_count(i) for i in range(3)) <= 30 + 3 * 2 * 10  # the election, plus a few heartbeats
    before = [sim.rpc_count(i) for i in range(3)]
    sim.run_for(1.0)
    sent = [sim.rpc_count(i) - b for i, b in zip(range(3), before)]
    assert max(sent) <= 2 * 10 + 2, f"more than 10 heartbeats per second per peer: {sent}"


@pytest.mark.parametrize("seed", SEEDS)
def test_persistence_across_crashes_of_one_several_and_all(seed):
    sim = Simulation(3, seed=seed)
    one(sim, 11, 3)
    for i in range(3):
        sim.crash(i)
    for i in range(3):
        sim.restart(i)
    one(sim, 12, 3)
    leader = check_one_leader(sim)
    sim.crash(leader)
    sim.restart(leader)
    one(sim, 13, 3)
    leader = check_one_leader(sim)
    sim.crash((leader + 1) % 3)
    one(sim, 14, 2)
    sim.restart((leader + 1) % 3)
    one(sim, 15, 3)
    values = [command for _, command in sim.applied((leader + 1) % 3)]
    assert values[-5:] == [11, 12, 13, 14, 15], "a restarted server re-applies the committed log"
    check_applied_consistently(sim)


@pytest.mark.parametrize("reliable", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_figure_8(seed, reliable):
    """Leaders crash right after appending, over and over; whatever commits stays committed."""
    sim = Simulation(5, seed=seed)
    sim.set_reliable(reliable)
    sim.set_long_reordering(not reliable)
    rng = random.Random(seed)
    one(sim, rng.random(), 1)
    up = 5
    for _ in range(60 if reliable else 40):
        leader = next((i for i in range(5) if sim.start(i, rng.random())[2]), None)
        sim.run_for(rng.uniform(0, 0.5) if rng.random() < 0.1 else rng.uniform(0, 0.013))
        if leader is not None:
            sim.crash(leader)
            up -= 1
        if up < 3:
            down = [i for i in range(5) if sim.state(i)[1] == "down"]
            sim.restart(rng.choice(down))
            up += 1
        if not reliable and rng.random() < 0.1:
            sim.disconnect(rng.randrange(5))
        check_applied_consistently(sim)
    sim.set_reliable(True)
    sim.set_long_reordering(False)
    sim.heal()
    for i in range(5):
        if sim.state(i)[1] == "down":
            sim.restart(i)
    one(sim, rng.random(), 5, within=20.0)
    check_applied_consistently(sim)


@pytest.mark.parametrize("seed", range(8))
def test_kv_is_linearizable_under_churn_partitions_and_loss(seed):
    sim = Simulation(5, seed=seed)
    clients = sim.kv(4)
    rng = random.Random(seed)
    pending = [None] * len(clients)
    sim.set_reliable(seed % 2 == 0)
    for step in range(150):
        for c, client in enumerate(clients):
            if pending[c] is None or pending[c].done:
                key = rng.choice("ab")
                choice = rng.random()
                pending[c] = (client.get(key) if choice < 0.4 else client.append(key, f"{c}.{step} ")
                              if choice < 0.8 else client.put(key, "x") if choice < 0.9 else client.cas(key, "x", "y"))
        if step % 40 == 5:
            sim.crash(sim.leader() if sim.leader() is not None else rng.randrange(5))
        if step % 40 == 20:
            for i in range(5):
                if sim.state(i)[1] == "down":
                    sim.restart(i)
        if step % 50 == 30:
            sim.partition(*[[0, 1], [2, 3, 4]] if rng.random() < 0.5 else [[0, 2, 4], [1, 3]])
        if step % 50 == 45:
            sim.heal()
        sim.run_for(0.1)
    sim.heal()
    sim.set_reliable(True)
    for i in range(5):
        if sim.state(i)[1] == "down":
            sim.restart(i)
    sim.run_for(5.0)
    history = sim.history()
    assert history.ret.notna().sum() >= len(history) - len(clients)
    assert check_linearizable(history).result == "ok"


@pytest.mark.parametrize("seed", range(6))
def test_snapshots_reach_lagging_and_crashed_followers(seed):
    sim = Simulation(3, seed=seed)
    one(sim, 0, 3)
    leader = check_one_leader(sim)
    lagging = (leader + 1) % 3
    sim.disconnect(lagging)
    last = 0
    for command in range(1, 60):
        last = one(sim, command, 2)
    for i in range(3):
        if i != lagging:
            sim.snapshot(i, last, b"state up to %d" % last)
    small = sim.persisted_size(leader)
    sim.connect(lagging)
    one(sim, 60, 3)
    installed = [entry for entry in sim.applied(lagging) if hasattr(entry[1], "data")]
    assert installed and installed[-1][0] == last and installed[-1][1].data == b"state up to %d" % last
    assert sim.persisted_size(leader) < 200 + small
    sim.crash(lagging)
    sim.restart(lagging)
    one(sim, 61, 3)
    check_applied_consistently(sim)


def test_same_seed_same_run_bit_for_bit():
    def run(seed):
        sim = Simulation(5, seed=seed, config=RaftConfig(election_timeout=(0.3, 0.6), heartbeat=0.05, tick=0.01))
        sim.set_reliable(False)
        for command in range(20):
            sim.start(command % 5, command)
            sim.run_for(0.2)
        sim.crash(1)
        sim.run_for(1.0)
        return sim.events(), [sim.applied(i) for i in range(5)], [sim.bytes_sent(i) for i in range(5)]

    first, second, other = run(4), run(4), run(5)
    assert first[0].equals(second[0]) and first[1:] == second[1:]
    assert not first[0].equals(other[0])


def test_bad_arguments_are_refused():
    sim = Simulation(3, seed=0)
    with pytest.raises(ValueError, match="node must be an id from 0 to 2"):
        sim.crash(3)
    with pytest.raises(ValueError, match="cover each of the 3 nodes"):
        sim.partition([0], [1])
    with pytest.raises(ValueError, match="n must be a positive integer"):
        Simulation(0)


@pytest.mark.parametrize("seed", range(6))
def test_kv_with_snapshots_stays_linearizable_and_small_through_crashes(seed):
    sim = Simulation(3, seed=seed)
    clients = sim.kv(3, snapshot_every=20)
    rng = random.Random(seed)
    pending = [None] * 3
    lagging = rng.randrange(3)
    for step in range(250):
        for c, client in enumerate(clients):
            if pending[c] is None or pending[c].done:
                key = rng.choice("abc")
                pending[c] = client.append(key, f"{c}.{step},") if rng.random() < 0.6 else client.get(key)
        if step == 30:
            sim.disconnect(lagging)  # falls behind the others' snapshots
        if step == 150:
            sim.connect(lagging)
        if step in (80, 200):
            sim.crash(rng.randrange(3))
        if step in (100, 220):
            for i in range(3):
                if sim.state(i)[1] == "down":
                    sim.restart(i)
        sim.run_for(0.05)
    for i in range(3):
        if sim.state(i)[1] == "down":
            sim.restart(i)
    sim.run_for(3.0)
    assert check_linearizable(sim.history()).result == "ok"
    assert any(hasattr(command, "data") for _, command in sim.applied(lagging)), "the lagging node got a snapshot"
    assert max(sim.persisted_size(i) for i in range(3)) < 60 * 200, "logs were compacted"
    stores = {repr(sorted(sim.kv_state(i).items())) for i in range(3)}
    assert len(stores) == 1, "every server ends with the same store"


@pytest.mark.parametrize("seed", range(4))
def test_a_kv_client_hears_at_once_when_a_new_leaders_entry_takes_its_index(seed):
    # no pre-vote or leader lease, so force_timeout elects a new leader at once, long before the 1 s client timeout
    sim = Simulation(3, seed=seed, config=RaftConfig(prevote=False, check_quorum=False))
    client = sim.kv(1)[0]
    warmup = client.put("k", "v0")
    while not warmup.done:
        sim.run_for(0.1)
    sim.run_for(0.5)
    old = sim.leader()
    others = [i for i in range(3) if i != old]
    sim.partition([old], others)
    index = sim.status(old).last_index + 1
    operation = client.put("k", "v1")
    sim.run_for(0.01)
    assert sim.status(old).last_index == index and sim.status(others[0]).last_index == index - 1
    sim.force_timeout(others[0])  # the new leader's empty entry takes the index the old leader proposed at
    sim.run_for(0.01)
    assert sim.leader() == others[0] and sim.status(others[0]).commit == index
    sim.heal()
    sim.run_for(0.2)
    assert sim.status(old).applied >= index and index not in [at for at, _ in sim.applied(old)], \
        "the old leader applied the new leader's empty entry at the index"
    assert operation.done, "the client was told at once to retry, not left to its timeout"
    assert check_linearizable(sim.history()).result == "ok"


@pytest.mark.parametrize("seed", range(4))
def test_a_kv_client_hears_at_once_when_a_snapshot_covers_its_index(seed):
    sim = Simulation(3, seed=seed, config=RaftConfig(prevote=False, check_quorum=False))
    writer, waiting = sim.kv(2, snapshot_every=2)  # both start by asking server 0

    def finish(operation):
        while not operation.done:
            sim.run_for(0.02)

    sim.run_for(0.5)
    sim.force_timeout(0)
    sim.run_for(0.2)
    finish(writer.put("k", "v0"))
    sim.partition([0], [1, 2])
    sim.force_timeout(1)
    sim.run_for(0.05)
    finish(writer.put("k", "v1"))  # times out on the cut-off old leader 0, then finds the new one
    operation = waiting.put("k", "v2")  # proposed on the old leader, which cannot commit it
    sim.run_for(0.01)
    for n in range(6):  # the majority moves on and compacts past the index
        finish(writer.put("k", f"w{n}"))
    assert sim.status(1).first_index > sim.status(0).last_index, "the new leader compacted past the index"
    assert not operation.done
    sim.heal()
    sim.run_for(0.2)
    assert any(isinstance(item, Snapshot) for _, item in sim.applied(0)), "the old leader caught up by a snapshot"
    assert operation.done, "the client was told at once to retry, not left to its timeout"
    history = sim.history()
    record = history[history.client == waiting.id].iloc[-1]
    assert record.ret - record.call < CLIENT_TIMEOUT
    assert check_linearizable(sim.history()).result == "ok"
