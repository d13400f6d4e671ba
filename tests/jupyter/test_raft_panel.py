"""The %raft panel, headless: buttons and knobs through ipywidgets' test comm, the simulation checked."""
import time

import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter.raft_panel import ACTIONS, RaftPanel, RaftStudy
from mlsys_ext.raft import throughput_by_batch, time_to_elect


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_frames_show_the_elected_leader_and_the_logs(comm):
    panel = RaftPanel(n=3, seed=1)
    panel.advance(5.0)
    frame = panel.frames[-1]
    leaders = [view for view in frame.nodes if view.role == "leader"]
    assert len(leaders) == 1 and set(leaders[0].progress) == {0, 1, 2} - {leaders[0].id}
    panel.act("request")
    panel.advance(1.0)
    assert all(len(view.log_terms) >= 2 for view in panel.frames[-1].nodes)  # the leader's no-op and the request
    assert bytes(panel.image.value[:4]) == b"\x89PNG"
    assert panel.timeline.max == len(panel.frames) - 1


def test_crashing_the_leader_elects_another_and_scrubbing_shows_the_past(comm):
    panel = RaftPanel(n=5, seed=2)
    panel.advance(5.0)
    old = panel.sim.leader()
    panel.node.value = old
    panel.buttons["crash"].click()
    assert panel.frames[-1].nodes[old].role == "down"
    panel.advance(5.0)
    assert panel.sim.leader() not in (None, old)
    panel.timeline.value = 1
    assert not panel.play.value and "showing t =" in panel.status.value
    panel.node.value = old
    panel.buttons["restart"].click()
    panel.advance(2.0)
    assert panel.frames[-1].nodes[old].up


def test_knobs_restart_the_run_and_bad_combinations_are_reported(comm):
    panel = RaftPanel(n=3, seed=0)
    panel.advance(3.0)
    panel.knobs["max_batch"].value = 8
    assert panel.sim.config.max_batch == 8 and panel.sim.now == 0.0
    panel.knobs["heartbeat"].value = 0.5
    panel.knobs["election"].value = (0.2, 0.3)  # a 0.5 s heartbeat cannot keep a 0.2 s timeout quiet
    assert "not applied" in panel.status.value and "heartbeat" in panel.status.value
    panel.drop.value = 0.2
    assert panel.sim.network()["drop"] == 0.2


def test_play_advances_on_a_background_thread(comm):
    panel = RaftPanel(n=3, seed=0, speed=10.0)
    panel.play.value = True
    try:
        deadline = time.monotonic() + 10
        while panel.sim.now < 4.0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        panel.play.value = False
    assert panel.sim.now >= 4.0 and len(panel.frames) > 2


def test_every_action_runs(comm):
    panel = RaftPanel(n=3, seed=3)
    panel.advance(3.0)
    for action in ACTIONS:
        panel.act(action)
    panel.advance(3.0)
    with pytest.raises(ValueError, match="action must be one of"):
        panel.act("explode")


def test_studies_follow_their_theory_and_draw(comm):
    study = time_to_elect(timeouts=((150, 151), (150, 300)), trials=8)
    assert list(study.timeout.unique()) == ["150-151", "150-300"] and (study.seconds > 0).all()
    medians = study.groupby("timeout").seconds.median()
    assert medians["150-300"] < medians["150-151"]  # randomness ends split votes
    throughput = throughput_by_batch(batches=(1, 4, 64))
    # one append per 10 ms round trip: batch entries each, until the offered load is met
    assert throughput.committed_per_second.tolist() == pytest.approx([100, 400, 2000], rel=0.1)
    panel = RaftStudy(trials=2)
    panel.thread.join(60)
    assert bytes(panel.image.value[:4]) == b"\x89PNG" and "median time to elect" in panel.status.value


def test_partition_groups_and_leadership_transfer(comm):
    panel = RaftPanel(n=5, seed=4)
    panel.advance(5.0)
    leader = panel.sim.leader()
    target = (leader + 1) % 5
    panel.node.value = target
    panel.buttons["transfer"].click()
    panel.advance(2.0)
    assert panel.sim.leader() == target
    panel.groups.value = "0,1 | 2,3,4"
    panel.buttons["partition"].click()
    assert panel.frames[-1].groups == (0, 0, 1, 1, 1)
    panel.advance(5.0)
    assert panel.sim.leader() in (2, 3, 4) and panel.sim.status(panel.sim.leader()).term > 0
    panel.groups.value = "0,1 | 2"
    panel.buttons["partition"].click()
    assert "partition refused" in panel.status.value
