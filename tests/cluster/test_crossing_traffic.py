"""Big messages in both directions at once, and chatty output beside them: the driver must never wedge.

The driver forwards actor-to-actor frames. If it blocked writing to a receiver
whose own thread is blocked writing back to the driver, no socket would drain.
"""
import threading

import pytest

from mlsys_ext.cluster import Cluster

from .actors import Blaster, Counter


@pytest.fixture
def cluster3():
    with Cluster(3, timeout=20.0, seed=0, echo=False) as c:
        yield c


@pytest.mark.parametrize("mb", [1 / 1024, 0.3, 0.5, 4, 64])
def test_crossing_messages_arrive_and_a_bystander_stays_reachable(cluster3, mb):
    a = cluster3.spawn(Blaster, name="a", worker="w0")
    b = cluster3.spawn(Blaster, name="b", worker="w1")
    bystander = cluster3.spawn(Counter, name="c", worker="w2")
    fa, fb = a.blast.remote("b", mb), b.blast.remote("a", mb)
    assert bystander.incr.remote().result(timeout=10) == 1
    sent = int(mb * 2**20)
    assert fa.result(timeout=20) == sent and fb.result(timeout=20) == sent
    # one-way sends from the same sender arrive in order, before a later call is answered
    assert a.total.remote().result(timeout=20) == sent
    assert b.total.remote().result(timeout=20) == sent


def test_several_pairs_cross_while_receivers_print(cluster3):
    pairs = [(cluster3.spawn(Blaster, name=f"p{i}", worker=f"w{i % 3}"),
              cluster3.spawn(Blaster, name=f"q{i}", worker=f"w{(i + 1) % 3}")) for i in range(3)]
    talkers = [p.chatter.remote(10) for p, _ in pairs]  # 10 MB of printed lines each
    blasts = [f for p, q in pairs for f in (p.blast.remote(q.name, 1, 4), q.blast.remote(p.name, 1, 4))]
    assert [f.result(timeout=30) for f in blasts] == [4 * 2**20] * len(blasts)
    assert [f.result(timeout=30) for f in talkers] == [10] * 3
    for p, q in pairs:
        assert p.total.remote().result(timeout=20) == 4 * 2**20 == q.total.remote().result(timeout=20)
    assert len(cluster3.logs("p0").splitlines()) > 1000


def test_a_receiver_printing_30_mb_while_a_1_mb_message_reaches_it(cluster3):
    sender = cluster3.spawn(Blaster, name="s", worker="w0")
    printer = cluster3.spawn(Blaster, name="r", worker="w1")
    talk = printer.chatter.remote(30)
    assert sender.blast.remote("r", 1, 3).result(timeout=20) == 3 * 2**20
    assert talk.result(timeout=60) == 30
    assert printer.total.remote().result(timeout=20) == 3 * 2**20


def test_the_driver_sends_big_calls_from_many_threads(cluster3):
    a = cluster3.spawn(Blaster, name="a", worker="w0")
    payload = bytes(8 * 2**20)
    errors = []

    def call():
        try:
            for _ in range(3):
                a.take.remote(payload).result(timeout=20)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert a.total.remote().result(timeout=10) == 12 * len(payload)
