"""``context()``: what code running inside an actor can ask of its runtime."""
from __future__ import annotations

import threading

from ._errors import ClusterError

_current = threading.local()


class ActorContext:
    """The running actor's name and worker, its timers, and handles to its peers."""

    def __init__(self, name: str, worker: str, runtime, timers):
        self.name = name
        self.worker = worker
        self._runtime = runtime
        self._timers = timers

    def set_timer(self, delay: float, method: str, *args, **kwargs) -> int:
        """Call ``self.<method>(*args, **kwargs)`` on this actor after ``delay`` seconds.

        The call is queued like any message, so it never runs concurrently with
        another method. Returns an id for ``cancel_timer``.
        """
        if not delay >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
        return self._timers.add(self.name, float(delay), method, args, kwargs)

    def cancel_timer(self, timer_id: int) -> None:
        self._timers.cancel(timer_id)

    def defer(self):
        """Answer the call being served later: returns a ``Reply`` whose ``send(value)`` (or
        ``fail(error)``), from a later method or timer of this actor, resolves the caller's
        future. The method's own return value is then ignored; an error it raises is still
        the answer."""
        from ._actor import current

        return current.actor.defer()

    def handle(self, name: str | None = None):
        """A handle to actor ``name``, or to this actor itself."""
        from ._handle import ActorHandle

        return ActorHandle(name or self.name, self._runtime)


def context() -> ActorContext:
    """The context of the actor whose method is running on this thread."""
    ctx = getattr(_current, "context", None)
    if ctx is None:
        raise ClusterError("context() is only available inside an actor's method")
    return ctx


def set_context(ctx: ActorContext | None) -> None:
    _current.context = ctx
