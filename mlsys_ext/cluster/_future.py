"""Futures returned by ``handle.method.remote(...)``."""
from __future__ import annotations

import time
from _thread import allocate_lock

from ._errors import ActorTimeoutError


class Future:
    """The eventual reply of one call: ``result(timeout)`` gives the value or raises.

    The runtime that issued the call does the waiting, because the fastest
    waiter is the thread that reads the reply off the socket itself.
    """

    __slots__ = ("_runtime", "actor", "method", "_id", "_gate", "_done", "_value", "_error", "__weakref__")

    def __init__(self, runtime, actor: str, method: str, msg_id: int = 0):
        self._runtime = runtime
        self._id = msg_id
        self.actor = actor
        self.method = method
        self._gate = allocate_lock()
        self._gate.acquire()
        self._done = False
        self._value = None
        self._error = None

    def done(self) -> bool:
        return self._done

    def _resolve(self, value=None, error: BaseException | None = None) -> None:
        if self._done:
            return  # a duplicated reply
        self._value, self._error = value, error
        self._done = True
        self._gate.release()

    def _wait_gate(self, seconds: float) -> None:
        if self._gate.acquire(timeout=max(seconds, 0.0)):
            self._gate.release()

    def result(self, timeout: float | None = None):
        """The return value; the remote exception re-raised; ActorTimeoutError after ``timeout``.

        ``timeout=None`` uses the cluster's default timeout, so a lost message
        never hangs a notebook.
        """
        if not self._done:
            self._runtime._wait(self, timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None):
        try:
            self.result(timeout)
        except ActorTimeoutError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handing the remote error back
            return exc
        return None

    def _timeout_error(self, timeout: float) -> ActorTimeoutError:
        return ActorTimeoutError(
            f"{self.actor}.{self.method} got no reply within {timeout:g} s: the actor may be "
            "paused, partitioned away or overloaded, or the request or reply was dropped "
            "(see cluster.trace())"
        )

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        return f"<Future {self.actor}.{self.method} {state}>"


def failed_future(runtime, actor: str, method: str, error: BaseException) -> Future:
    f = Future(runtime, actor, method)
    f._resolve(error=error)
    return f


def gather(futures, timeout: float | None = None) -> list:
    """Results of all ``futures`` in order; ``timeout`` bounds the whole wait."""
    futures = list(futures)
    if timeout is None:
        return [f.result() for f in futures]
    deadline = time.monotonic() + timeout
    return [f.result(max(deadline - time.monotonic(), 0.0)) for f in futures]
