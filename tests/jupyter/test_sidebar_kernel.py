"""The sidebar's comm in a real kernel: %load_ext registers the target, a comm opened from outside gets the state."""
import time
import uuid

import pytest
from jupyter_client.manager import start_new_kernel

from mlsys_ext.jupyter.sidebar import TARGET


@pytest.fixture
def kernel():
    manager, client = start_new_kernel(kernel_name="python3")
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def send(client, msg_type, content):
    client.shell_channel.send(client.session.msg(msg_type, content))


def comm_messages(client, comm_id, until, timeout=30.0):
    """iopub comm_msg data for ``comm_id`` until ``until(data)`` holds."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=0.5)
        except Exception:
            continue
        if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == comm_id:
            seen.append(msg["content"]["data"])
            if until(seen[-1]):
                return seen
    raise AssertionError(f"no matching comm message within {timeout} s; saw {seen}")


def test_load_ext_registers_the_target_and_a_sidebar_comm_sees_a_cluster_start(kernel):
    reply = kernel.execute_interactive("%load_ext mlsys_ext", timeout=60)
    assert reply["content"]["status"] == "ok"
    comm_id = uuid.uuid4().hex
    send(kernel, "comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {"protocol": 1}})
    first = comm_messages(kernel, comm_id, lambda d: d["type"] == "state")[-1]
    assert first["state"]["clusters"] == [] and first["state"]["panels"]
    kernel.execute("cluster = %cluster start 2\nclass Echo:\n    def ping(self): return 1\n"
                   "a = cluster.spawn(Echo, name='a', max_restarts=1)")
    seen = comm_messages(kernel, comm_id, lambda d: d["type"] == "state" and d["state"]["clusters"]
                         and d["state"]["clusters"][0]["actors"])
    cluster = seen[-1]["state"]["clusters"][0]
    assert cluster["current"] and cluster["workers"] == ["w0", "w1"] and cluster["actors"][0]["name"] == "a"
    send(kernel, "comm_msg", {"comm_id": comm_id, "data": {
        "type": "action", "request": 1, "action": "kill", "cluster": cluster["id"], "name": "a"}})
    comm_messages(kernel, comm_id, lambda d: d.get("request") == 1 and d["type"] == "reply")
    comm_messages(kernel, comm_id, lambda d: d["type"] == "state" and d["state"]["clusters"][0]["actors"][0][
        "restarts"] == 1 and d["state"]["clusters"][0]["actors"][0]["state"] == "alive")
    send(kernel, "comm_msg", {"comm_id": comm_id, "data": {"type": "nonsense"}})
    error = comm_messages(kernel, comm_id, lambda d: d["type"] == "error")[-1]
    assert "expected an action message" in error["message"]
    kernel.execute("%cluster stop")  # still serving after the bad message: the stop is pushed
    comm_messages(kernel, comm_id, lambda d: d["type"] == "state" and d["state"]["clusters"] == [])
