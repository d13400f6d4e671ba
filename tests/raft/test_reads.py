"""Linearizable reads: ReadIndex (a heartbeat round confirms leadership) and lease reads."""
import pytest

from mlsys_ext.raft import NotLeader, RaftConfig, ReadState

from .harness import Network

LEASE = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05, read_only="lease")


def settled(config=None):
    net = Network(3) if config is None else Network(3, config=config)
    if config is not None and config.read_only == "lease":
        net.tick(config.election_ticks[0])  # restarted-node lease guard: nobody votes before this
    net.elect(0)
    net.tick(2)
    return net


def test_read_index_needs_a_heartbeat_round_and_returns_the_commit_index():
    net = settled()
    net.propose(b"x")
    net.stabilize()
    net.record = True
    net.nodes[0].read_index(b"r1")
    net.flush()
    assert net.read_states[0] == []           # not before a quorum confirms the leadership
    rounds = [m for m in net.queue if m.kind == "heartbeat" and m.context == b"r1"]
    assert len(rounds) == 2
    net.stabilize()
    assert net.read_states[0] == [ReadState(2, b"r1")]
    assert net.applied[0][-1][0] >= 2           # released only with the entries it depends on


def test_a_leader_cut_off_from_the_majority_does_not_answer_reads():
    net = settled()
    net.isolate(0)
    net.nodes[0].read_index(b"stale?")
    net.tick(4)
    assert net.read_states[0] == []


def test_reads_wait_for_the_first_commit_of_the_leaders_term():
    net = Network(3)
    net.filter = lambda m: m.kind != "append_resp"   # the new leader's empty entry cannot commit
    net.elect(0)
    net.nodes[0].read_index(b"early")
    net.tick(4)
    assert net.read_states[0] == []
    net.filter = None
    net.tick(4)
    assert net.read_states[0] == [ReadState(1, b"early")]


def test_a_follower_forwards_reads_to_the_leader():
    net = settled()
    net.propose(b"x")
    net.stabilize()
    net.nodes[2].read_index(b"from-2")
    net.stabilize()
    assert net.read_states[2] == [ReadState(2, b"from-2")]
    assert net.applied[2][-1][0] >= 2
    net.nodes[0].become_follower(net.nodes[0].term, None)
    net.nodes[1].become_follower(net.nodes[1].term, None)
    with pytest.raises(NotLeader):
        net.nodes[1].read_index(b"nobody")


def test_a_follower_waits_until_it_has_applied_the_read_index():
    net = settled()
    net.filter = lambda m: not (m.kind == "append" and m.dst == 2)
    net.propose(b"x")               # node 2 does not get index 2...
    net.stabilize()
    net.nodes[2].read_index(b"r")   # ...but hears that the read index is 2
    net.stabilize()
    assert net.read_states[2] == []
    net.recover()
    net.tick(3)
    assert net.read_states[2] == [ReadState(2, b"r")]


def test_several_reads_are_confirmed_by_one_later_round():
    net = settled()
    net.filter = lambda m: not (m.kind == "heartbeat_resp" and m.context == b"a")
    net.nodes[0].read_index(b"a")
    net.stabilize()
    net.filter = None
    net.nodes[0].read_index(b"b")
    net.stabilize()
    assert [r.context for r in net.read_states[0]] == [b"a", b"b"]


def test_lease_reads_are_served_without_a_round_while_the_lease_holds():
    net = settled(LEASE)
    net.tick(2)
    net.nodes[0].read_index(b"fast")
    assert not [m for m in net.nodes[0].ready().messages if m.kind == "heartbeat"]
    net.flush()
    assert net.read_states[0] == [ReadState(1, b"fast")]


def test_a_lease_lapses_when_the_leader_is_cut_off():
    net = settled(LEASE)
    net.tick(2)
    net.isolate(0)
    net.nodes[0].read_index(b"in time")
    net.flush()
    assert net.read_states[0] == [ReadState(1, b"in time")]
    net.tick(LEASE.election_ticks[0] - 2)   # the lease is shorter than the followers' promise
    assert net.nodes[0].role == "leader"     # CheckQuorum has not noticed yet
    net.nodes[0].read_index(b"late")
    net.tick(1)
    assert net.read_states[0] == [ReadState(1, b"in time")]  # "late" needs a round that cannot finish


def test_followers_in_lease_mode_do_not_vote_right_after_a_restart():
    net = settled(LEASE)
    net.crash(1)
    net.restart(1)
    net.isolate(0)
    net.nodes[2].become_follower(net.nodes[2].term, None)  # node 2 forgets the leader and campaigns
    net.nodes[2].campaign()
    net.stabilize()
    assert net.nodes[2].role != "leader"  # node 1 may have promised node 0 a lease before it crashed
