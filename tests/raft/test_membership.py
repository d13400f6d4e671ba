"""Leadership transfer (TimeoutNow), learners, and single-server membership changes."""
import pytest

from mlsys_ext.raft import NotLeader, ProposalDropped

from .harness import Network


def test_leadership_moves_to_an_up_to_date_follower():
    net = Network(3)
    net.elect(0)
    net.tick(2)
    net.record = True
    net.nodes[0].transfer_leadership(1)
    net.stabilize()
    assert net.leader() == 1 and net.nodes[1].term == 2
    assert [m.dst for m in net.log if m.kind == "timeout_now"] == [1]
    assert not [m for m in net.log if m.kind == "prevote"], "a transfer skips the pre-vote"
    net.check_safety()


def test_a_lagging_target_is_caught_up_first_and_proposals_are_refused_meanwhile():
    net = Network(3)
    net.elect(0)
    net.isolate(2)
    for k in range(10):
        net.propose(b"x%d" % k)
    net.stabilize()
    net.nodes[0].transfer_leadership(2)
    with pytest.raises(ProposalDropped, match="handing leadership"):
        net.nodes[0].propose(b"during")
    net.recover()
    net.tick(3)
    assert net.leader() == 2
    assert net.nodes[2].log.committed == net.nodes[0].log.committed == 12
    net.check_safety()


def test_a_transfer_to_an_unreachable_node_is_abandoned_after_an_election_timeout():
    net = Network(3)
    net.elect(0)
    net.crash(2)
    net.nodes[0].transfer_leadership(2)
    net.tick(net.config.election_ticks[0] + 1)
    assert net.leader() == 0 and net.nodes[0].status().transferee is None
    net.propose(b"accepted again")


def test_transfer_arguments_are_checked():
    net = Network(3)
    net.elect(0)
    with pytest.raises(ValueError):
        net.nodes[0].transfer_leadership(0)
    with pytest.raises(ValueError):
        net.nodes[0].transfer_leadership(7)
    with pytest.raises(NotLeader):
        net.nodes[1].transfer_leadership(2)


def test_a_learner_receives_the_log_but_is_not_counted_in_quorums():
    net = Network(4, voters=[0, 1, 2], learners=[3])
    net.elect(0)
    for k in range(5):
        net.propose(b"x%d" % k)
    net.stabilize()
    net.tick(2)
    assert net.applied[3] == net.applied[0] and len(net.applied[3]) == 6
    assert net.nodes[0].status().progress[3].learner
    net.isolate(1)
    net.isolate(2)
    index, _ = net.propose(b"needs a voter")
    net.tick(4)
    assert net.nodes[3].log.last_index() == index       # the learner has it...
    assert net.nodes[0].log.committed < index           # ...but does not make a majority
    net.check_safety()


def test_add_a_voter_then_remove_one():
    net = Network(3)
    net.elect(0)
    net.tick(2)
    net.add_node(3)
    index, _ = net.nodes[0].propose_conf_change("add_learner", 3)
    with pytest.raises(ProposalDropped, match="one at a time"):
        net.nodes[0].propose_conf_change("add_voter", 4)
    net.stabilize()
    net.tick(2)
    assert net.nodes[0].learners == {3} and net.nodes[3].learners == {3}
    net.nodes[0].propose_conf_change("add_voter", 3)      # promote once it has caught up
    net.tick(4)
    assert all(n.voters == {0, 1, 2, 3} for n in net.nodes.values())
    net.nodes[0].propose_conf_change("remove_voter", 1)
    net.tick(4)
    assert net.nodes[0].voters == {0, 2, 3}
    net.crash(1)
    net.isolate(3)                                        # 2 of the 3 voters remain: still a majority
    index, _ = net.propose(b"works")
    net.tick(3)
    assert net.nodes[2].log.committed >= index
    net.check_safety()


def test_a_removed_leader_steps_down_and_the_rest_elect_a_new_one():
    net = Network(3)
    net.elect(0)
    net.tick(2)
    net.nodes[0].propose_conf_change("remove_voter", 0)
    net.tick(2)
    assert net.nodes[0].role == "follower"
    net.tick(60)
    assert net.leader() in (1, 2)
    assert net.nodes[net.leader()].voters == {1, 2}
    net.check_safety()


def test_membership_survives_a_restart_and_a_snapshot():
    net = Network(3)
    net.elect(0)
    net.tick(2)
    net.nodes[0].propose_conf_change("add_learner", 5)
    net.tick(2)
    net.compact(1)
    net.crash(1)
    net.restart(1)
    assert net.nodes[1].learners == {5} and net.storages[1].snapshot.learners == (5,)
    net.crash(2)
    net.restart(2)
    assert net.nodes[2].learners == {5}   # from the committed entry in its log
    with pytest.raises(ValueError, match="nothing to change"):
        net.nodes[0].propose_conf_change("add_learner", 5)
    with pytest.raises(ValueError, match="must be one of"):
        net.nodes[0].propose_conf_change("promote", 5)
