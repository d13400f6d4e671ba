"""Actor classes importable by workers (tests of notebook-defined classes define their own)."""
import os
import time

from mlsys_ext.cluster import context


class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n

    def value(self):
        return self.n

    def pid(self):
        return os.getpid()

    def fail(self, message):
        raise ValueError(message)

    def shout(self, text):
        print(text)
        return len(text)

    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds


class Relay:
    """Calls or messages another actor: actor-to-actor traffic."""

    def __init__(self):
        self.got = []

    def call(self, other, k):
        return other.incr.remote(k).result()

    def call_by_name(self, name, k):
        return context().handle(name).incr.remote(k).result()

    def tell(self, other, k):
        other.incr.send(k)

    def receive(self, item):
        self.got.append(item)

    def received(self):
        return list(self.got)


class Ticker:
    """Arms a timer that re-arms itself: time-driven behaviour inside an actor."""

    def __init__(self):
        self.ticks = 0

    def start(self, n, every):
        self.left = n
        context().set_timer(every, "tick", every)

    def tick(self, every):
        self.ticks += 1
        self.left -= 1
        if self.left > 0:
            context().set_timer(every, "tick", every)

    def count(self):
        return self.ticks

    def arm_and_cancel(self):
        timer = context().set_timer(0.05, "tick", 1.0)
        context().cancel_timer(timer)


class Blaster:
    """Sends big messages to a peer, and prints a lot: traffic that fills socket buffers."""

    def __init__(self):
        self.received = 0

    def blast(self, peer, mb, times=1):
        payload = bytes(int(mb * 2**20))
        for _ in range(times):
            context().handle(peer).take.send(payload)
        return len(payload) * times

    def take(self, payload):
        self.received += len(payload)

    def total(self):
        return self.received

    def chatter(self, mb):
        line = "x" * 1023
        for _ in range(int(mb * 1024)):
            print(line)
        return mb


class SlowStart(Counter):
    """A constructor that takes a while: a model loading, numba compiling."""

    def __init__(self, seconds):
        time.sleep(seconds)
        super().__init__()


class Prober(Relay):
    """A Relay that can count the calls it still waits for (the worker's pending table)."""

    def call_with_timeout(self, name, timeout):
        try:
            return context().handle(name).incr.remote(1).result(timeout=timeout)
        except Exception as exc:
            return type(exc).__name__

    def pending_calls(self):
        from mlsys_ext.cluster._actor import current

        pending = getattr(current.actor, "pending", None)  # local: the actor's own table
        return len(context()._runtime._pending if pending is None else pending)  # Ray: its host's


class ArrayKeeper:
    """Holds arrays it is sent, and tells how they arrived."""

    def __init__(self):
        self.kept = []

    def describe(self, array):
        import mmap

        base = array
        while getattr(base, "base", None) is not None and not isinstance(base, memoryview):
            base = base.base
        mapped = isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
        return {"sum": float(array.sum()), "shape": array.shape, "writeable": array.flags.writeable,
                "mapped": mapped}

    def keep(self, array):
        self.kept.append(array)
        return len(self.kept)

    def forget(self):
        self.kept.clear()

    def echo(self, array):
        return array

    def make(self, n):
        import numpy as np

        return np.arange(n, dtype=np.float32)

    def forward_kept(self, peer):
        return context().handle(peer).keep.remote(self.kept[-1]).result()

    def pass_on(self, peer, array):
        return context().handle(peer).describe.remote(array).result()

    def mapped_memfds(self):
        """Inodes of the memfds this process maps (the shared memory it sees)."""
        with open("/proc/self/maps") as f:
            return sorted({int(line.split()[4]) for line in f if "/memfd:mlsys_ext" in line})


class Caller:
    """Makes the calls and sends the driver asks for, from inside an actor: the direct path.

    ``start_call`` returns at once with an id, so the driver can watch a call that
    is pending inside the actor (``call_done``) and collect it (``finish_call``).
    """

    def start_call(self, target, method, args=(), kwargs=None):
        calls = self.__dict__.setdefault("_calls", {})
        calls[len(calls) + 1] = getattr(context().handle(target), method).remote(*args, **(kwargs or {}))
        return len(calls)

    def call_done(self, call_id):
        return self._calls[call_id].done()

    def finish_call(self, call_id, timeout):
        """(True, value) or (False, the exception): the driver re-raises it."""
        fut = self._calls.pop(call_id)
        try:
            return True, fut.result(timeout=timeout)
        except Exception as exc:
            return False, exc

    def send_each(self, target, method, args_list):
        handle = getattr(context().handle(target), method)
        for args in args_list:
            handle.send(*args)

    def send_to(self, target, method, args=(), times=1):
        handle = getattr(context().handle(target), method)
        for _ in range(times):
            handle.send(*args)

    def call_many(self, target, method, times, timeout):
        """Outcomes of ``times`` calls one after the other: values, or exception type names."""
        handle = getattr(context().handle(target), method)
        out = []
        for _ in range(times):
            try:
                out.append(handle.remote().result(timeout=timeout))
            except Exception as exc:
                out.append(type(exc).__name__)
        return out

    def timed_calls(self, target, times):
        handle = context().handle(target)
        start = time.perf_counter()
        for _ in range(times):
            handle.incr.remote(1).result()
        return time.perf_counter() - start


class Peer(Counter, Caller):
    """A Counter that can also call other actors."""


class SharingPeer(ArrayKeeper, Caller):
    """An ArrayKeeper that can also call other actors."""

    def kept_sums(self):
        return [float(array.sum()) for array in self.kept]
