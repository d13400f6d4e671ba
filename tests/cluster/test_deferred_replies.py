"""Deferred answers: a method that must wait for other messages defers its call's answer
(``context().defer()``) and a later method sends it, so the actor's thread keeps serving."""
import pytest

from mlsys_ext.cluster import Cluster, ClusterError, context


class Collector:
    """Answers ``total(n)`` once ``n`` numbers have been added, by whoever adds them."""

    def __init__(self):
        self.numbers, self.waiting = [], []

    def total(self, n):
        self.waiting.append((n, context().defer()))
        self._answer_ready()
        return "ignored: the answer is deferred"

    def add(self, x):
        self.numbers.append(x)
        self._answer_ready()

    def _answer_ready(self):
        for n, reply in [w for w in self.waiting if len(self.numbers) >= w[0]]:
            self.waiting.remove((n, reply))
            reply.send(sum(self.numbers[:n]))

    def defer_then_fail(self):
        context().defer()
        raise ValueError("failed after deferring")

    def answer_twice(self):
        reply = context().defer()
        reply.send(1)
        try:
            reply.send(2)
        except ClusterError as exc:
            self.second = str(exc)

    def second_error(self):
        return self.second

    def defer_in_a_send(self):
        try:
            context().defer()
        except ClusterError as exc:
            self.in_send = str(exc)

    def send_error(self):
        return self.in_send

    def fail_later(self):
        self.failing = context().defer()

    def fail_now(self):
        self.failing.fail(KeyError("no such thing"))


class Adder:
    """Adds numbers to a Collector from another actor, on another worker."""

    def __init__(self, target):
        self.target = target

    def add_all(self, numbers):
        for x in numbers:
            self.target.add.send(x)


@pytest.fixture(scope="module", params=["local", "ray"])
def cluster(request):
    with Cluster(2, backend=request.param, timeout=10.0) as c:
        yield c


def test_a_deferred_call_is_answered_by_a_later_message_from_the_driver_or_a_peer(cluster):
    collector = cluster.spawn(Collector, worker="w0")
    adder = cluster.spawn(Adder, collector, worker="w1")
    first, second = collector.total.remote(3), collector.total.remote(5)
    collector.add.send(1)
    adder.add_all.remote([2, 3, 4, 5]).result(timeout=10)
    assert first.result(timeout=10) == 6 and second.result(timeout=10) == 15


def test_an_error_after_deferring_is_the_answer_and_a_reply_goes_once(cluster):
    collector = cluster.spawn(Collector)
    with pytest.raises(ValueError, match="failed after deferring"):
        collector.defer_then_fail.remote().result(timeout=10)
    assert collector.answer_twice.remote().result(timeout=10) == 1
    assert "answered already" in collector.second_error.remote().result(timeout=10)
    collector.defer_in_a_send.send()
    assert "has no caller to answer" in collector.send_error.remote().result(timeout=10)
    failing = collector.fail_later.remote()
    collector.fail_now.send()
    with pytest.raises(KeyError, match="no such thing"):
        failing.result(timeout=10)


def test_defer_outside_an_actor_is_refused():
    with pytest.raises(ClusterError, match="only available inside an actor"):
        context().defer()
