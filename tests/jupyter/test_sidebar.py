"""The sidebar's comm protocol, kernel side: state pushed on every cluster change, actions answered."""
import pytest

from mlsys_ext.cluster import Cluster
from mlsys_ext.jupyter.magics import PANELS
from mlsys_ext.jupyter.sidebar import PROTOCOL, Sidebar
from tests.conftest import wait_until


class FakeComm:
    """What the kernel's comm gives the sidebar: send, on_msg, on_close; messages kept."""

    def __init__(self):
        self.sent, self.closed = [], False
        self._on_msg = self._on_close = None

    def send(self, data):
        self.sent.append(data)

    def on_msg(self, callback):
        self._on_msg = callback

    def on_close(self, callback):
        self._on_close = callback

    def close(self):
        self.closed = True

    def receive(self, data):
        self._on_msg({"content": {"data": data}})

    def states(self):
        return [m["state"] for m in self.sent if m["type"] == "state"]

    def answer(self, request):
        return wait_until(lambda: next((m for m in self.sent if m.get("request") == request
                                        and m["type"] in ("reply", "error")), None))


class Magics:  # the two attributes of MlsysMagics the sidebar reads
    current = None
    raft_cluster = None


@pytest.fixture
def sidebar():
    served = Sidebar(Magics(), list(PANELS), interval=0.05)
    yield served
    served.close()


class Echo:
    def ping(self, x):
        return x


def actor_states(comm, cluster):
    state = comm.states()[-1]
    (mine,) = [c for c in state["clusters"] if c["id"] == str(id(cluster))]
    return {a["name"]: a for a in mine["actors"]}


def test_a_new_comm_gets_the_state_and_every_change_is_pushed(sidebar):
    comm = FakeComm()
    sidebar.attach(comm)
    first = wait_until(comm.states)[0]
    assert comm.sent[0]["protocol"] == PROTOCOL
    assert first["panels"] == list(PANELS) and {"cpu_count", "numba_threading", "cuda"} <= set(first["environment"])
    with Cluster(2, timeout=10.0) as cluster:
        cluster.spawn(Echo, name="a", max_restarts=1)
        cluster.spawn(Echo, name="b")
        wait_until(lambda: {"a", "b"} <= set(actor_states(comm, cluster)) if any(
            c["id"] == str(id(cluster)) for c in comm.states()[-1]["clusters"]) else False)
        rows = actor_states(comm, cluster)
        assert rows["a"]["state"] == "alive" and isinstance(rows["a"]["pid"], int)
        assert {"restarts", "queue", "msgs_in", "msgs_per_s", "worker"} <= set(rows["a"])
        handle = cluster.handle("b")
        for i in range(50):
            handle.ping.remote(i).result(timeout=5)
        wait_until(lambda: actor_states(comm, cluster)["b"]["msgs_in"] >= 50)
        links = [link for state in comm.states() for c in state["clusters"] if c["id"] == str(id(cluster))
                 for link in c["links"]]
        assert {(link["src"], link["dst"]) for link in links} >= {("driver", "b"), ("b", "driver")}
        assert all(link["msgs_per_s"] > 0 and link["bytes_per_s"] > 0 for link in links)
        mine = next(c for c in comm.states()[-1]["clusters"] if c["id"] == str(id(cluster)))
        assert mine["shared_memory"].startswith("shared memory held: 0.0 MiB")
        pushed = len(comm.sent)
        cluster.kill("a")  # dies, then comes back by itself: both are pushed
        wait_until(lambda: actor_states(comm, cluster)["a"]["restarts"] == 1
                   and actor_states(comm, cluster)["a"]["state"] == "alive", timeout=15)
        seen = [(a["state"], a["restarts"]) for state in comm.states()[pushed:] for c in state["clusters"]
                if c["id"] == str(id(cluster)) for a in c["actors"] if a["name"] == "a"]
        assert seen[0][0] == "restarting" and seen[-1] == ("alive", 1), seen
    wait_until(lambda: all(c["id"] != str(id(cluster)) for c in comm.states()[-1]["clusters"]))
    assert str(id(cluster)) not in sidebar._watched  # a later cluster with its id is watched afresh


def test_actions_are_carried_out_and_answered(sidebar):
    comm = FakeComm()
    sidebar.attach(comm)
    with Cluster(2, timeout=10.0) as cluster:
        cluster.spawn(Echo, name="a", max_restarts=1)
        key = str(id(cluster))
        comm.receive({"type": "action", "request": 1, "action": "pause", "cluster": key, "name": "a"})
        assert comm.answer(1) == {"type": "reply", "request": 1, "ok": True}
        wait_until(lambda: actor_states(comm, cluster)["a"]["state"] == "paused")
        comm.receive({"type": "action", "request": 2, "action": "resume", "cluster": key, "name": "a"})
        assert comm.answer(2)["ok"]
        comm.receive({"type": "action", "request": 3, "action": "partition", "cluster": key,
                      "groups": [["a"], ["driver"]]})
        assert comm.answer(3)["ok"] and cluster.network()["partition"]
        comm.receive({"type": "action", "request": 4, "action": "heal", "cluster": key})
        assert comm.answer(4)["ok"] and not cluster.network()["partition"]
        comm.receive({"type": "action", "request": 5, "action": "restart", "cluster": key, "name": "a"})
        assert comm.answer(5)["ok"]
        wait_until(lambda: actor_states(comm, cluster)["a"]["restarts"] == 1)
        comm.receive({"type": "action", "request": 6, "action": "stop", "cluster": key})
        assert comm.answer(6)["ok"]
        assert cluster.stopped


@pytest.mark.parametrize("message, error", [
    ({"type": "action", "request": 7, "action": "explode"}, "unknown action 'explode'"),
    ({"type": "action", "request": 7, "action": "kill", "cluster": "123"}, "no running cluster has id '123'"),
    ("not a dict", "expected an action message"),
    ({"type": "hello", "request": 7}, "expected an action message"),
])
def test_bad_or_unknown_actions_get_an_error_not_a_crash(sidebar, message, error):
    comm = FakeComm()
    sidebar.attach(comm)
    comm.receive(message)
    answer = wait_until(lambda: next((m for m in comm.sent if m["type"] == "error"), None))
    assert error in answer["message"]
    comm.receive({"type": "action", "request": 8, "action": "refresh"})
    assert comm.answer(8)["ok"]  # still serving


def test_a_refused_cluster_action_is_answered_with_the_cluster_s_message(sidebar):
    comm = FakeComm()
    sidebar.attach(comm)
    with Cluster(1, timeout=10.0) as cluster:
        comm.receive({"type": "action", "request": 9, "action": "kill", "cluster": str(id(cluster)), "name": "zz"})
        assert "neither a worker" in comm.answer(9)["message"]
        comm.receive({"type": "action", "request": 10, "action": "partition", "cluster": str(id(cluster)),
                      "groups": [["w0"]]})
        assert "two or more" in comm.answer(10)["message"]


def test_closing_stops_pushing_and_closes_the_comms():
    served = Sidebar(Magics(), [], interval=0.05)
    comm = FakeComm()
    served.attach(comm)
    wait_until(comm.states)
    served.close()
    assert comm.closed and served.comms == []


def test_live_raft_servers_are_in_the_state():
    import pandas as pd

    class Raft:  # what the sidebar reads of a RaftCluster
        class cluster:
            stopped = False

        @staticmethod
        def states():
            return pd.DataFrame([{"id": 0, "role": "leader", "term": 3, "commit": 7, "last_index": 7},
                                 {"id": 1, "role": "unreachable", "term": None, "commit": None}])

    magics = Magics()
    magics.raft_cluster = Raft()
    served = Sidebar(magics, [], interval=0.05)
    comm = FakeComm()
    served.attach(comm)
    try:
        expected = [{"id": 0, "role": "leader", "term": 3, "commit": 7},
                    {"id": 1, "role": "unreachable", "term": None, "commit": None}]
        assert served.raft_rows() == expected
        wait_until(lambda: comm.states() and comm.states()[-1]["raft"] == expected)  # pushed
        Raft.cluster.stopped = True
        wait_until(lambda: comm.states()[-1]["raft"] == [])
    finally:
        served.close()
