"""What only direct (actor -> actor) paths have: no driver in the way, sockets per pair, and the
network's settings held by every worker. The fault contract both paths share is in test_contract.py (both backends)."""
import threading
import time

import pytest

from mlsys_ext.cluster import ActorDiedError, Cluster
from tests.conftest import wait_until

from .actors import Blaster, Counter, Peer, Relay
from .paths import PATHS, Path


def test_actors_talk_without_the_driver_once_connected(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    cluster.spawn(Counter, name="c", worker="w0")
    s.timed_calls.remote("c", 10).result()  # connected
    run = s.timed_calls.remote("c", 200)  # sent at once: the driver's sends need no pump
    with cluster._pump:  # nothing of the driver reads or routes while we hold this
        time.sleep(1.0)
    assert run.result() < 0.9, "the calls went on while the driver could not route"


def test_a_partition_cuts_a_direct_socket_both_ways(cluster):
    a = cluster.spawn(Peer, name="a", worker="w0")
    b = cluster.spawn(Peer, name="b", worker="w1")
    assert a.call_many.remote("b", "value", 1, 5).result() == [0]
    assert b.call_many.remote("a", "value", 1, 5).result() == [0]
    cluster.partition(["w0"], ["w1"])
    assert a.call_many.remote("b", "incr", 3, 0.1).result() == ["ActorTimeoutError"] * 3
    assert b.call_many.remote("a", "incr", 3, 0.1).result() == ["ActorTimeoutError"] * 3
    assert a.value.remote().result() == b.value.remote().result() == 0, "no request got through"
    cluster.heal()
    assert a.call_many.remote("b", "incr", 1, 5).result() == [1]
    assert b.call_many.remote("a", "incr", 1, 5).result() == [1]


def test_a_partition_that_lets_requests_through_drops_the_replies(cluster):
    cluster.spawn(Peer, name="a", worker="w0")
    b = cluster.spawn(Peer, name="b", worker="w1")
    cluster.set_network(drop=1.0, link=("b", "a"))
    assert b.call_many.remote("a", "incr", 2, 0.1).result() == ["ActorTimeoutError"] * 2
    cluster.set_network(link=("b", "a"))
    cluster.partition(["a"], ["b"])  # the cut applies to replies too
    assert b.call_many.remote("a", "incr", 1, 0.1).result() == ["ActorTimeoutError"]
    cluster.heal()
    assert cluster.handle("a").value.remote().result() == 0, "the requests were dropped too"


def test_a_caller_waiting_inside_a_method_fails_fast_when_the_callee_dies(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    cluster.spawn(Counter, name="c", worker="w0")
    call = s.start_call.remote("c", "sleep", (30,)).result()
    waiting = s.finish_call.remote(call, 20)  # s now waits in its method for c's reply
    time.sleep(0.1)
    start = time.monotonic()
    cluster.kill("c")
    ok, error = waiting.result(timeout=5)
    assert time.monotonic() - start < 0.5
    assert not ok and isinstance(error, ActorDiedError) and "before answering sleep" in str(error)


def test_actors_on_one_worker_and_an_actor_sending_to_itself(cluster):
    a = cluster.spawn(Peer, name="a", worker="w0")
    cluster.spawn(Counter, name="b", worker="w0")
    assert a.call_many.remote("b", "incr", 3, 5).result() == [1, 2, 3]
    a.send_to.remote("a", "incr", (10,), 2).result()  # to itself: queued behind this method
    wait_until(lambda: a.value.remote().result() == 20)
    t = cluster.trace()
    assert len(t[(t.src == "a") & (t.dst == "a") & (t.kind == "send")]) == 2


def test_a_sender_does_not_block_on_a_paused_receiver(cluster):
    s = cluster.spawn(Blaster, name="s", worker="w1")
    r = cluster.spawn(Blaster, name="r", worker="w0")
    assert s.blast.remote("r", 1 / 1024).result() == 1024  # connected
    cluster.pause("r")
    start = time.monotonic()
    assert s.blast.remote("r", 4, 4).result(timeout=5) == 16 * 2**20  # held at s, not written
    assert time.monotonic() - start < 2.0
    cluster.resume("r")
    assert r.total.remote().result(timeout=20) == 16 * 2**20 + 1024


def test_a_peer_that_is_restarted_is_reachable_again(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    c = cluster.spawn(Counter, 5, name="c", worker="w0", max_restarts=-1)
    fds = []
    for _ in range(4):
        assert s.call_many.remote("c", "incr", 1, 5).result() == [6]
        fds.append(cluster.run(lambda: len(__import__("os").listdir("/proc/self/fd")), targets="w1")["w1"].get())
        cluster.kill("c")
        wait_until(lambda: cluster.status().set_index("name").loc["c", "state"] == "alive")
    assert c.value.remote().result() == 5
    assert len(set(fds)) == 1, f"each stale socket is closed: {fds}"


def test_calls_to_a_spawning_and_an_unknown_actor(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    assert s.call_many.remote("ghost", "incr", 1, 5).result() == ["ActorDiedError"]
    t = cluster.trace()
    assert t[(t.src == "s") & (t.dst == "ghost")]["fate"].tolist() == ["dropped"]


@pytest.mark.parametrize("kind", PATHS)
@pytest.mark.parametrize("seed", range(4))
def test_every_message_is_accounted_for_under_faults_and_pauses(kind, seed):
    """Each send the trace says was delivered, delayed or duplicated arrives exactly once per copy,
    whatever the faults, with the receiver paused and resumed meanwhile."""
    with Cluster(2, seed=seed, timeout=20.0, echo=False) as cl:
        r = cl.spawn(Relay, name="r", worker="w0")
        path = Path(cl, kind)
        cl.set_network(drop=0.2, duplicate=0.3, delay=(0.0, 0.02), link=path.link)
        path.send_each("r", "receive", [(i,) for i in range(100)])
        cl.pause("r")
        path.send_each("r", "receive", [(i,) for i in range(100, 200)])
        cl.resume("r")
        path.send_each("r", "receive", [(i,) for i in range(200, 300)])
        cl.set_network(link=path.link)
        sends = path.trace("r")
        sends = sends[sends.kind == "send"]
        assert len(sends[sends.fate != "duplicated"]) == 300
        expected = (sends.fate != "dropped").sum()
        wait_until(lambda: len(r.received.remote().result()) >= expected, timeout=15)
        time.sleep(0.1)
        got = r.received.remote().result()
        assert len(got) == expected
        dropped = set(range(300)) - set(got)
        assert len(dropped) == (sends.fate == "dropped").sum()


def test_big_messages_cross_under_delay_from_the_delay_thread():
    """Delayed copies are written by the worker's delay thread, whose socket may be full: what it
    cannot write waits in the outbox, which the actor's own thread writes out."""
    with Cluster(2, seed=0, timeout=30.0, echo=False) as cl:
        a = cl.spawn(Blaster, name="a", worker="w0")
        b = cl.spawn(Blaster, name="b", worker="w1")
        cl.set_network(delay=(0.0, 0.02), duplicate=0.5, link=("a", "b"))
        fa, fb = a.blast.remote("b", 2, 5), b.blast.remote("a", 2, 5)
        assert fa.result(timeout=30) == fb.result(timeout=30) == 10 * 2**20
        t = cl.trace()
        copies = {name: len(t[(t.src == name) & (t.kind == "send") & (t.fate != "dropped")]) for name in "ab"}
        wait_until(lambda: b.total.remote().result() == copies["a"] * 2 * 2**20, timeout=20)
        wait_until(lambda: a.total.remote().result() == copies["b"] * 2 * 2**20, timeout=20)


def test_many_actors_call_one_at_once():
    with Cluster(3, timeout=20.0, echo=False) as cl:
        target = cl.spawn(Counter, name="t", worker="w0")
        callers = [cl.spawn(Peer, name=f"p{i}", worker=f"w{i % 3}") for i in range(6)]
        results = [p.call_many.remote("t", "incr", 50, 10) for p in callers]
        outcomes = [x for f in results for x in f.result(timeout=30)]
        assert sorted(outcomes) == list(range(1, 301))
        assert target.value.remote().result() == 300


def test_a_settings_change_is_in_force_when_set_network_returns(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    cluster.spawn(Counter, name="c", worker="w0")
    for _ in range(5):
        cluster.set_network(drop=1.0, link=("s", "c"))
        assert s.call_many.remote("c", "incr", 1, 0.05).result() == ["ActorTimeoutError"]
        cluster.set_network(link=("s", "c"))
        assert s.call_many.remote("c", "value", 1, 5).result() == [0]


def test_the_driver_and_peers_cross_big_calls_from_many_threads(cluster):
    a = cluster.spawn(Blaster, name="a", worker="w0")
    b = cluster.spawn(Blaster, name="b", worker="w1")
    payload = bytes(4 * 2**20)
    errors = []

    def call():
        try:
            for _ in range(2):
                a.take.remote(payload).result(timeout=20)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    assert b.blast.remote("a", 4, 3).result(timeout=30) == 12 * 2**20
    for t in threads:
        t.join(60)
    assert not errors
    assert a.total.remote().result(timeout=10) == 24 * 2**20 + 12 * 2**20


def test_a_call_to_a_restarting_peer_waits_for_it(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    cluster.spawn(Counter, 1, name="c", worker="w0", max_restarts=1)
    assert s.call_many.remote("c", "value", 1, 5).result() == [1]
    cluster.kill("c")
    assert s.call_many.remote("c", "incr", 1, 10).result() == [2]


def test_first_contact_with_a_paused_actor(cluster):
    """The paused actor's end of the new socket waits at the driver, what s sends waits at s;
    resume hands out both, without waiting for one another."""
    s = cluster.spawn(Blaster, name="s", worker="w1")
    r = cluster.spawn(Blaster, name="r", worker="w0")
    cluster.pause("r")
    assert s.blast.remote("r", 2, 3).result(timeout=5) == 6 * 2**20
    start = time.monotonic()
    cluster.resume("r")
    assert time.monotonic() - start < 2.0
    assert r.total.remote().result(timeout=20) == 6 * 2**20


def test_a_paused_worker_that_is_killed_and_restarted_is_not_held_for(cluster):
    s = cluster.spawn(Peer, name="s", worker="w1")
    cluster.spawn(Counter, 1, name="c", worker="w0", max_restarts=1)
    assert s.call_many.remote("c", "value", 1, 5).result() == [1]
    cluster.pause("c")
    cluster.kill("c")
    wait_until(lambda: cluster.status().set_index("name").loc["c", "state"] == "alive")
    assert s.call_many.remote("c", "incr", 1, 5).result() == [2]
