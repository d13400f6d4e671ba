"""No process outlives its cluster: stop, with-exit, interpreter exit, a killed parent, a kernel restart."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mlsys_ext.cluster import Cluster
from tests.conftest import pid_alive, wait_until

from .actors import Counter


def worker_pids(cluster) -> list[int]:
    return [r.get() for r in cluster.run(os.getpid).values()]


def test_repeated_start_stop_leaves_nothing():
    seen = []
    for _ in range(5):
        with Cluster(2) as cl:
            cl.spawn(Counter).incr.remote().result()
            seen += worker_pids(cl)
    assert len(set(seen)) == 10
    assert not [p for p in seen if pid_alive(p)]


def test_stop_kills_paused_and_busy_workers():
    cl = Cluster(2)
    busy = cl.spawn(Counter, worker="w0")
    cl.spawn(Counter, name="frozen", worker="w1")
    pids = worker_pids(cl)
    busy.sleep.send(60)
    cl.pause("frozen")
    cl.stop()
    assert not [p for p in pids if pid_alive(p)]


def _run_driver(script: str, **kwargs) -> subprocess.Popen:
    code = textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), **kwargs)


@pytest.mark.parametrize("pause_one", [False, True])
def test_killed_parent_takes_its_workers_along(pause_one):
    driver = _run_driver(f"""
        import json, os, sys, time
        from mlsys_ext.cluster import Cluster
        from tests.cluster.actors import Counter
        cl = Cluster(3)
        pids = [r.get() for r in cl.run(os.getpid).values()]
        cl.spawn(Counter, worker="w0").sleep.send(60)   # one worker busy in user code
        if {pause_one}:
            cl.spawn(Counter, name="p", worker="w1")
            cl.pause("p")                                  # one worker frozen by SIGSTOP
        print(json.dumps(pids), flush=True)
        time.sleep(60)
    """)
    pids = json.loads(driver.stdout.readline())
    assert all(pid_alive(p) for p in pids)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stdout.close()
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)


def test_interpreter_exit_without_stop_ends_workers():
    driver = _run_driver("""
        import json, os
        from mlsys_ext.cluster import Cluster
        cl = Cluster(2)
        print(json.dumps([r.get() for r in cl.run(os.getpid).values()]), flush=True)
    """)
    pids = json.loads(driver.stdout.readline())
    assert driver.wait(timeout=30) == 0
    driver.stdout.close()
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)


def test_kernel_restart_ends_workers():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        outputs = []
        reply = kc.execute_interactive(
            "%load_ext mlsys_ext\n"
            "import json, os\n"
            "cl = %cluster start 2\n"
            "print(json.dumps([r.get() for r in cl.run(os.getpid).values()]))",
            timeout=60, output_hook=outputs.append,
        )
        assert reply["content"]["status"] == "ok"
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        pids = json.loads(text.strip().splitlines()[-1])
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        km.restart_kernel(now=True)
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_local_backend_opens_no_network_port():
    import psutil

    me = psutil.Process()
    before = {c.laddr for c in me.net_connections(kind="inet")}
    with Cluster(2) as cl:
        cl.spawn(Counter).incr.remote().result()
        for pid in worker_pids(cl):
            assert psutil.Process(pid).net_connections(kind="inet") == []
        assert {c.laddr for c in me.net_connections(kind="inet")} == before


def test_a_worker_count_above_the_limit_is_refused_before_any_process_starts(monkeypatch):
    import psutil

    from mlsys_ext.cluster import max_workers

    before = len(psutil.Process().children())
    with pytest.raises(ValueError, match=r"n = 100000 workers is more than the limit of \d+ \(4 per CPU\)"):
        Cluster(100_000)
    assert len(psutil.Process().children()) == before
    assert max_workers() == 4 * os.cpu_count()
    monkeypatch.setenv("MLSYS_MAX_WORKERS", "1")
    with pytest.raises(ValueError, match="limit of 1"):
        Cluster(2)
    with Cluster(1) as c:
        assert c.workers == ["w0"]
    monkeypatch.setenv("MLSYS_MAX_WORKERS", "many")
    with pytest.raises(ValueError, match=r"\$MLSYS_MAX_WORKERS must be an integer"):
        Cluster(1)
