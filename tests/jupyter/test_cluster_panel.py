"""The %cluster panel, headless: ipywidgets' test comm, traits set, cluster state asserted."""
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.cluster import Cluster
from mlsys_ext.jupyter import ClusterPanel
from tests.cluster.actors import ArrayKeeper, Counter
from tests.conftest import wait_until


@pytest.fixture
def panel():
    setup_test_comm()
    cluster = Cluster(2, timeout=10.0)
    cluster.spawn(Counter, name="a", worker="w0")
    cluster.spawn(Counter, name="b", worker="w1")
    p = ClusterPanel(cluster, refresh_interval=None)
    yield p
    p.close()
    cluster.stop()
    teardown_test_comm()


def state(panel, name):
    return panel.cluster.status().set_index("name").loc[name, "state"]


def test_panel_lists_actors_and_draws_rates(panel):
    assert panel.actor.options == ("a", "b")
    assert "<table" in panel.table.value and "Counter" in panel.table.value
    assert bytes(panel.plot.value[:8]) == b"\x89PNG\r\n\x1a\n"
    sent_before = panel.table.value
    panel.cluster.handle("a").incr.remote().result()
    panel.refresh()
    assert panel.table.value != sent_before


def test_panel_shows_bytes_per_second_per_link_and_the_shared_memory_held(panel):
    import numpy as np

    assert "no messages since the last refresh" in panel.links.value and "0.0 MiB in 0 segments" in panel.links.value
    keeper = panel.cluster.spawn(ArrayKeeper, name="k", worker="w1")
    array = np.ones(1 << 20, np.float32)  # 4 MiB: through shared memory
    for _ in range(3):
        keeper.keep.remote(array).result()
    panel.refresh()
    assert "driver &rarr; k" in panel.links.value and "MB/s" in panel.links.value
    assert "12.0 MiB in 3 segments" in panel.links.value  # k keeps the three arrays it was sent


def test_the_actor_choice_is_never_blank_and_survives_new_actors():
    setup_test_comm()
    with Cluster(1, timeout=10.0) as cluster:
        panel = ClusterPanel(cluster, refresh_interval=None)
        try:
            assert panel.actor.value is None
            cluster.spawn(Counter, name="a")
            panel.refresh()
            assert panel.actor.value == "a", "the first actor is chosen as soon as there is one"
            cluster.spawn(Counter, name="b")
            panel.refresh()
            panel.actor.value = "b"
            cluster.spawn(Counter, name="c")
            panel.refresh()
            assert panel.actor.options == ("a", "b", "c") and panel.actor.value == "b"
        finally:
            panel.close()
    teardown_test_comm()


def test_sliders_set_the_network(panel):
    panel.drop.value = 0.25
    panel.delay.value = [5, 40]
    faults = panel.cluster.network()["default"]
    assert faults.drop == 0.25 and faults.delay == (0.005, 0.04)
    assert "drop 0.25" in panel.message.value


def test_buttons_kill_restart_pause_resume(panel):
    panel.actor.value = "a"
    panel.buttons["kill"].click()
    panel.last_action.result(timeout=10)
    assert state(panel, "a") == "dead"
    panel.buttons["restart"].click()
    panel.last_action.result(timeout=10)
    assert state(panel, "a") == "alive"
    panel.actor.value = "b"
    panel.buttons["pause"].click()
    panel.last_action.result(timeout=10)
    assert state(panel, "b") == "paused"
    panel.buttons["resume"].click()
    panel.last_action.result(timeout=10)
    assert state(panel, "b") == "alive"
    assert "resume b: done" in panel.message.value


def test_failed_action_is_reported_not_raised(panel):
    panel.actor.value = "a"
    panel.cluster.kill("a")
    panel.buttons["pause"].click()
    panel.last_action.result(timeout=10)
    assert "pause a failed" in panel.message.value


def test_new_actors_appear_after_a_change(panel):
    panel.cluster.spawn(Counter, name="c")
    wait_until(lambda: "c" in panel.actor.options)


def test_stopped_cluster_shows_as_stopped(panel):
    panel.cluster.stop()
    panel.refresh()
    assert "stopped" in panel.table.value


def test_live_refresh_runs_in_the_background():
    setup_test_comm()
    try:
        with Cluster(1) as cluster:
            c = cluster.spawn(Counter, name="a")
            p = ClusterPanel(cluster, refresh_interval=0.05)
            c.incr.remote().result()
            wait_until(lambda: ">1</td>" in p.table.value)
            p.close()
    finally:
        teardown_test_comm()


def test_rates_cover_the_last_minute_and_never_before_the_start():
    import pandas as pd

    from mlsys_ext.jupyter.cluster_panel import rate_by_fate

    trace = pd.DataFrame({"time": [0.5, 1.2, 1.7, 1.9, 70.1], "fate": ["delivered", "dropped", "delayed",
                                                                     "duplicated", "delivered"]})
    seconds, sent, delivered = rate_by_fate(trace, now=1.95)
    assert (seconds, sent, delivered) == ([0, 1], [1, 2], [1, 1])
    seconds, sent, delivered = rate_by_fate(trace, now=70.5)
    assert seconds[0] == 11 and len(seconds) == 60 and sent[-1] == delivered[-1] == 1
