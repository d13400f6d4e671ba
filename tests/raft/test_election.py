"""Leader election: randomised timeouts, persisted votes, the up-to-date check, PreVote, CheckQuorum."""
import random

import pytest

from mlsys_ext.raft import MemoryStorage, Message, RaftConfig, RaftNode

from .harness import FAST, Network


def run_until_leader(net, max_ticks=200):
    for _ in range(max_ticks):
        net.tick()
        if net.leader() is not None:
            return net.nodes[net.leader()]
    raise AssertionError("no leader elected")


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("seed", range(5))
def test_a_single_leader_is_elected_and_terms_agree(n, seed):
    net = Network(n, seed=seed)
    leader = run_until_leader(net)
    net.tick(30)  # heartbeats spread the word; nobody else times out
    assert [node.role for node in net.nodes.values()].count("leader") == 1
    assert {node.term for node in net.nodes.values()} == {leader.term}
    assert {node.leader for node in net.nodes.values()} == {leader.id}
    net.check_safety()


def test_election_timeouts_are_drawn_from_the_rng_within_the_range():
    config = RaftConfig(election_timeout=(1.0, 2.0), heartbeat=0.1, tick=0.05)
    assert config.election_ticks == (20, 40)
    timeouts = set()
    for seed in range(30):
        node = RaftNode(0, [0, 1, 2], config, MemoryStorage(), random.Random(seed))
        ticks = 0
        while node.role == "follower":
            node.tick()
            ticks += 1
        timeouts.add(ticks)
    assert min(timeouts) >= 20 and max(timeouts) <= 40 and len(timeouts) > 5
    again = RaftNode(0, [0, 1, 2], config, MemoryStorage(), random.Random(0))
    assert again._randomized_timeout == RaftNode(0, [0, 1, 2], config, MemoryStorage(),
                                                 random.Random(0))._randomized_timeout


def test_votes_are_persisted_before_they_are_sent():
    net = Network(3)
    net.elect(0)
    for i in (0, 1, 2):
        assert net.storages[i].hard_state.term == 1
        assert net.storages[i].hard_state.vote == 0


def test_a_node_restarted_from_storage_keeps_its_term_and_vote():
    net = Network(3)
    net.elect(0)
    net.crash(1)
    net.restart(1)
    node = net.nodes[1]
    assert (node.term, node.vote, node.role) == (1, 0, "follower")
    # It will not vote for another candidate in the same term.
    node.step(Message("vote", 2, 1, 1, log_term=1, index=10))
    assert node.ready().messages[-1].reject
    assert node.vote == 0


def test_a_candidate_with_a_shorter_log_cannot_win():
    net = Network(3)
    net.elect(0)
    net.isolate(2)
    net.propose(b"a")
    net.stabilize()
    net.recover()
    net.isolate(0)
    winner = None
    for _ in range(200):
        net.tick()
        winner = next((i for i in (1, 2) if net.nodes[i].role == "leader"), None)
        if winner is not None:
            break
    assert winner == 1, "node 1 never votes for node 2, whose log is behind"
    net.check_safety()


def test_prevote_stops_a_rejoining_partitioned_node_from_disrupting_the_cluster():
    net = Network(3)
    net.elect(0)
    net.isolate(2)
    net.tick(200)
    assert net.nodes[2].term == 1, "a pre-candidate does not bump its term"
    assert net.nodes[2].role == "pre_candidate"
    net.recover()
    net.tick(50)
    assert net.leader() == 0 and {n.term for n in net.nodes.values()} == {1}


def test_without_prevote_a_rejoining_node_forces_a_new_term():
    config = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, prevote=False, check_quorum=False)
    net = Network(3, config=config)
    net.elect(0)
    net.isolate(2)
    net.tick(200)
    assert net.nodes[2].term > 5
    net.recover()
    net.tick(50)
    assert net.nodes[0].term > 1, "the old leader was deposed by the rejoining node"


def test_check_quorum_makes_an_isolated_leader_step_down():
    net = Network(3)
    net.elect(0)
    net.isolate(0)
    net.tick(FAST.election_ticks[0] * 2)
    assert net.nodes[0].role == "follower"
    net.check_one_leader_per_term()


def test_without_check_quorum_an_isolated_leader_stays_leader():
    config = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, check_quorum=False)
    net = Network(3, config=config)
    net.elect(0)
    net.isolate(0)
    net.tick(100)
    assert net.nodes[0].role == "leader"


def test_followers_that_heard_from_the_leader_ignore_vote_requests():
    config = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, prevote=False)
    net = Network(3, config=config)
    net.elect(0)
    net.tick(3)
    net.nodes[2].campaign()   # a disruptive candidate, term 2
    net.stabilize()
    assert net.nodes[0].role == "leader" and net.nodes[0].term == 1
    assert net.nodes[1].term == 1 and net.nodes[1].vote == 0


def test_a_deposed_leader_learns_the_new_term_from_the_answer_to_its_heartbeat():
    net = Network(3)
    net.elect(0)
    net.isolate(0)
    net.tick(40)
    assert net.leader() in (1, 2)
    new_term = net.nodes[net.leader()].term
    stale = Message("heartbeat", 0, 1, 1)
    net.recover()
    net.send(stale)
    assert net.nodes[0].term == new_term and net.nodes[0].role == "follower"


def test_a_learner_never_campaigns():
    net = Network(3, voters=[0, 1], learners=[2])
    net.isolate(0)
    net.isolate(1)
    net.tick(200)
    assert net.nodes[2].role == "follower" and net.nodes[2].term == 0
