"""Raft on the live cluster: real processes, real timers, logs on disk, the cluster's faults."""
import pytest

from mlsys_ext.raft import RaftCluster

from ..conftest import pid_alive, wait_until


@pytest.fixture
def raft(tmp_path):
    with RaftCluster(3, data_dir=tmp_path / "logs", timeout=15.0) as cluster:
        yield cluster


def test_writes_commit_and_survive_the_leaders_death(raft):
    client = raft.client()
    for i in range(20):
        client.put(f"k{i % 4}", str(i))
    client.append("k3", "+")
    old = raft.kill("leader")
    assert client.get("k3") == "19+"  # answered by a newly elected leader
    states = raft.states()
    assert states.role[old] == "unreachable" and (states.role == "leader").sum() == 1
    raft.restart(old)
    assert client.cas("k3", "19+", "done") and client.get("k3") == "done"


def test_a_blocking_write_is_one_call_answered_once_applied(raft):
    client = raft.client()
    client.put("warm", "up")  # finds the leader
    start = raft.cluster.elapsed()
    assert client.put("k", "v") is None and client.get("k") == "v"
    trace = raft.cluster.trace()
    mine = trace[trace.time >= start]
    asked = mine[(mine.src == "driver") & (mine.kind == "call")]
    assert asked.method.tolist() == ["execute", "execute"], "no polling for the outcome"


def test_committed_writes_survive_restarting_every_server_from_disk(raft):
    raft.put("a", "1")
    raft.put("b", "2")
    for i in range(3):
        raft.kill(i)
    for i in range(3):
        raft.restart(i)
    assert raft.get("a") == "1" and raft.get("b") == "2"


def test_a_new_cluster_on_the_same_logs_has_the_same_data(tmp_path):
    with RaftCluster(3, data_dir=tmp_path) as first:
        first.put("kept", "yes")
        pids = first.cluster.status().pid.tolist()
    assert not any(pid_alive(pid) for pid in pids)
    with RaftCluster(3, data_dir=tmp_path) as second:
        assert second.get("kept") == "yes"


def test_the_majority_side_of_a_partition_serves_and_the_minority_does_not_lead(raft):
    raft.put("x", "before")
    leader = raft.wait_for_leader()
    minority = [leader]
    majority = [i for i in range(3) if i != leader]
    raft.partition(majority, minority)  # the driver sides with the majority
    raft.put("x", "during")
    assert raft.get("x") == "during"
    raft.heal()
    assert raft.get("x") == "during"
    # right after the heal the old leader may still lead its stale term: never two in one term,
    # and it steps down as soon as it hears the new term
    leaders = raft.states().query("role == 'leader'")
    assert leaders.term.is_unique
    wait_until(lambda: (raft.states().role == "leader").sum() == 1, timeout=10.0)


def test_bad_arguments_are_refused(raft):
    with pytest.raises(ValueError, match="server must be 'leader' or an id from 0 to 2"):
        raft.kill(7)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        RaftCluster(0)


def test_a_pipelining_writer_applies_every_write_once(raft):
    items = [(f"k{i % 7}", str(i)) for i in range(500)]
    assert raft.put_many(items, window=64) == 500
    assert raft.get("k3") == str(max(i for i in range(500) if i % 7 == 3))
