"""Log replication: consistency check, commit rule (Figure 8), fast backtracking, batching, pipelining."""
import pytest

from mlsys_ext.raft import Entry, Message, NotLeader, RaftConfig

from .harness import Network


def config(**overrides):
    return RaftConfig(**{"election_timeout": (0.5, 1.0), "heartbeat": 0.1, "tick": 0.05, **overrides})


@pytest.mark.parametrize("n", [1, 3, 5])
def test_proposals_are_replicated_committed_and_applied_in_order(n):
    net = Network(n)
    net.elect(0)
    for k in range(20):
        index, term = net.propose(b"cmd%d" % k)
        assert term == 1
    net.stabilize()
    net.tick(4)
    assert index == 21  # after the leader's empty entry at index 1
    for i in net.nodes:
        assert [data for _, _, data in net.applied[i]] == [b""] + [b"cmd%d" % k for k in range(20)]
        assert net.nodes[i].log.committed == 21
    net.check_safety()


def test_the_leader_appends_an_empty_entry_on_election():
    net = Network(3)
    net.elect(0)
    assert net.nodes[0].log.slice(1, 2) == [Entry(1, 1, b"")]


def test_propose_on_a_follower_raises_not_leader_with_a_hint():
    net = Network(3)
    net.elect(0)
    with pytest.raises(NotLeader) as error:
        net.nodes[1].propose(b"x")
    assert error.value.leader == 0


def test_an_entry_is_committed_only_with_a_majority():
    net = Network(5)
    net.elect(0)
    net.partition([0, 1], [2, 3, 4])
    index, _ = net.propose(b"x")
    net.stabilize()
    assert net.nodes[0].log.committed < index
    net.recover()
    net.tick(3)
    assert all(node.log.committed >= index for node in net.nodes.values())


def test_a_follower_rejects_an_append_that_does_not_match_its_log():
    net = Network(3)
    net.elect(0)
    follower = net.nodes[1]
    follower.step(Message("append", 0, 1, 1, log_term=1, index=5, entries=(Entry(6, 1, b"x"),)))
    reply = follower.ready().messages[-1]
    assert reply.reject and reply.conflict_term == 0 and reply.last_index == 1
    assert follower.log.last_index() == 1


def test_figure_8_an_old_term_entry_is_not_committed_by_counting():
    """Node 0 leads term 1 and appends index 2 alone. Cut off, it steps down; back, it wins term 2
    (its log is the longest). Index 2 reaches a majority but is from term 1, so counting replicas
    must not commit it: only when index 3 (term 2) is on a majority do both commit."""
    net = Network(3, config=config(max_batch=1))
    net.elect(0)
    net.tick(2)
    net.filter = lambda m: m.src != 0           # index 2 stays on node 0
    net.propose(b"old")
    net.stabilize()
    for i in net.nodes:
        net.isolate(i)
    net.tick(30)                                # node 0 steps down; nobody can win alone
    net.recover()
    net.nodes[0].campaign()
    net.filter = lambda m: not (m.kind == "append_resp" and m.index >= 3)  # nobody hears index 3 arrived
    net.stabilize()
    leader = net.nodes[0]
    assert leader.role == "leader" and leader.term >= 2
    assert [e.term for e in leader.log.slice(1, 4)] == [1, 1, leader.term]
    assert net.nodes[1].log.term(2) == 1 and net.nodes[2].log.term(2) == 1  # old entry on all three
    assert leader.status().progress[1].match == leader.status().progress[2].match == 2
    assert leader.log.committed == 1, "an entry of an earlier term was committed by counting replicas"
    net.filter = None
    net.tick(3)
    assert leader.log.committed == 3  # index 2 commits indirectly, with index 3
    net.check_safety()


def make_divergent_follower(stale_entries: int, new_entries: int = 60):
    """Node 0 leads term 1, then, cut off, appends ``stale_entries`` entries nobody else sees.
    Nodes 1 and 2 elect a leader that commits ``new_entries`` entries of term 2, then hand
    leadership over, so the final leader starts with next = its last index + 1 for node 0.
    Returns the network (node 0 still cut off) and the leader's id."""
    net = Network(3, config=config(max_batch=16))
    net.elect(0)
    net.tick(2)
    net.isolate(0)
    for k in range(stale_entries):
        net.nodes[0].propose(b"stale%d" % k)
    net.stabilize()
    net.tick(40)
    leader = net.leader()
    assert leader in (1, 2)
    for k in range(new_entries):
        net.propose(b"new%d" % k)
    net.stabilize()
    other = 3 - leader
    net.nodes[leader].transfer_leadership(other)
    net.stabilize()
    assert net.leader() == other
    return net, other


def test_fast_backtracking_skips_a_divergent_term_in_few_round_trips():
    net, leader = make_divergent_follower(50)
    assert net.nodes[0].log.last_index() == 51
    assert net.nodes[leader].status().progress[0].next > 60
    net.record = True
    net.recover()
    net.tick(6)
    rejections = [m for m in net.log if m.kind == "append_resp" and m.reject and m.src == 0]
    assert 1 <= len(rejections) <= 3  # entry by entry, this would take 50 round trips
    assert net.nodes[0].log.slice(2, 3)[0].term > 1  # the stale entries were overwritten
    assert net.nodes[0].log.committed == net.nodes[leader].log.committed
    net.check_safety()


def test_batching_respects_max_batch_and_max_bytes():
    net = Network(3, config=config(max_batch=4, max_bytes=100))
    net.elect(0)
    net.tick(2)
    net.isolate(2)
    for k in range(20):
        net.propose(bytes(40))   # 40 bytes each: at most 2 fit in 100 bytes
    for k in range(6):
        net.propose(bytes(10))
    net.stabilize()
    net.record = True
    net.recover()
    net.tick(10)
    appends = [m for m in net.log if m.kind == "append" and m.dst == 2 and m.entries]
    assert appends, "node 2 caught up through appends"
    for m in appends:
        assert len(m.entries) <= 4
        assert len(m.entries) == 1 or sum(len(e.data) for e in m.entries) <= 100
    assert max(len(m.entries) for m in appends) == 4  # the 10-byte entries fill a batch by count
    assert net.nodes[2].log.last_index() == net.nodes[0].log.last_index()
    assert m.size() == 64 + sum(24 + len(e.data) for e in m.entries)


def test_pipelining_keeps_at_most_max_inflight_appends_unacknowledged():
    net = Network(3, config=config(max_inflight=3))
    net.elect(0)
    net.propose(b"warm-up")
    net.tick(2)
    assert net.nodes[0].status().progress[2].state == "replicate"
    net.cut |= {(2, 0)}             # node 2 receives but its answers are lost
    net.record = True
    for k in range(10):
        net.propose(b"x%d" % k)
    net.stabilize()
    appends = [m for m in net.log if m.kind == "append" and m.dst == 2 and m.entries]
    assert len(appends) == 3        # one entry each, then the window is full
    assert net.nodes[0].status().progress[2].inflight == 3
    net.recover()
    net.tick(4)
    assert net.nodes[2].log.last_index() == net.nodes[0].log.last_index()
    net.check_safety()


def test_a_probing_leader_sends_one_append_at_a_time():
    net = Network(3)
    net.elect(0)
    net.tick(2)
    net.isolate(2)
    for k in range(5):
        net.propose(b"x%d" % k)
    net.stabilize()
    net.tick(30)   # heartbeats to node 2 get no answer: it is back in probe state
    net.recover()
    net.crash(2)
    net.restart(2)
    net.nodes[0].report_unreachable(2)
    assert net.nodes[0].status().progress[2].state == "probe"
    net.record = True
    net.cut |= {(2, 0)}
    for k in range(5):
        net.propose(b"y%d" % k)
    net.stabilize()
    appends = [m for m in net.log if m.kind == "append" and m.dst == 2]
    assert len(appends) == 1
