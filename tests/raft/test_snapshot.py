"""Snapshots and log compaction: compact(), InstallSnapshot to a lagging follower, restarts."""
import pytest

from mlsys_ext.raft import Message

from .harness import Network, decode_state


def compacted_cluster(seed=0):
    """Node 0 leads; node 2 is cut off while 30 entries commit; every live node compacts."""
    net = Network(3, seed=seed)
    net.elect(0)
    net.tick(2)
    net.isolate(2)
    for k in range(30):
        net.propose(b"v%d" % k)
    net.stabilize()
    net.tick(2)
    for i in (0, 1):
        net.compact(i)
    return net


def test_compact_drops_applied_entries_and_keeps_the_membership():
    net = compacted_cluster()
    storage = net.storages[0]
    assert storage.snapshot.index == 31 and storage.first_index() == 32
    assert storage.snapshot.voters == (0, 1, 2)
    assert decode_state(storage.snapshot.data) == net.applied[0]
    with pytest.raises(ValueError, match="applied"):
        net.nodes[0].compact(net.nodes[0].log.applied + 1, b"")


def test_a_lagging_follower_receives_the_snapshot_then_the_rest():
    net = compacted_cluster()
    net.propose(b"after the snapshot")
    net.stabilize()
    net.record = True
    net.recover()
    net.tick(6)
    snapshots = [m for m in net.log if m.kind == "snapshot"]
    assert len(snapshots) == 1 and snapshots[0].dst == 2 and snapshots[0].snapshot.index == 31
    assert net.storages[2].snapshot.index == 31
    assert net.nodes[2].log.committed == net.nodes[0].log.committed == 32
    assert net.applied[2] == net.applied[0]  # the service took the snapshot, then entry 32
    net.check_safety()


def test_a_lost_snapshot_is_sent_again():
    net = compacted_cluster()
    net.recover()
    net.filter = lambda m: m.kind != "snapshot"
    net.tick(6)
    assert net.nodes[0].status().progress[2].state == "snapshot"
    net.filter = None
    net.tick(net.config.election_ticks[0] + 4)
    assert net.nodes[2].log.committed == net.nodes[0].log.committed
    net.check_safety()


def test_a_node_restarts_from_its_snapshot():
    net = compacted_cluster()
    net.recover()
    net.tick(6)
    net.compact(2)
    for i in (0, 1, 2):
        net.crash(i)
        net.restart(i)
        assert net.nodes[i].log.first_index() == 32
        assert net.applied[i] == decode_state(net.storages[i].snapshot.data)
    net.tick(60)
    net.propose(b"later")
    net.tick(3)
    assert {len(a) for a in net.applied.values()} == {len(net.applied[net.leader()])}
    assert net.applied[0][-1][2] == b"later"
    net.check_safety()


def test_a_snapshot_older_than_the_commit_index_is_ignored():
    net = compacted_cluster()
    net.recover()
    net.tick(6)
    old = net.storages[0].snapshot
    follower = net.nodes[1]
    committed = follower.log.committed
    follower.step(Message("snapshot", 0, 1, follower.term, snapshot=old))
    ready = follower.ready()
    assert ready.snapshot is None
    assert ready.messages[-1].index == committed
