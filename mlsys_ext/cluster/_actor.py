"""What every backend's worker does for its actors, whatever carries the messages.

Building an actor, running one of its methods and encoding the reply, keeping
what it prints, its timers, and code sent by ``run``/``execute``.
"""
from __future__ import annotations

import ast
import gc
import heapq
import io
import itertools
import threading
import time
import traceback

from ._context import set_context
from ._errors import ClusterError
from ._wire import dumps, encode_error, loads

# Per thread of a worker: ``actor``, the ActorShell this thread serves, and
# ``sink(stream, text)``, where what the thread prints goes.
current = threading.local()


class CapturedOutput(io.TextIOBase):
    """A worker's sys.stdout/stderr: text goes to the printing thread's sink, if it has one."""

    def __init__(self, real, stream: str):
        self._real = real
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        sink = getattr(current, "sink", None)
        if sink is None:
            return self._real.write(text)
        sink(self._stream, text)
        return len(text)

    def flush(self) -> None:
        actor = getattr(current, "actor", None)
        if actor is not None:
            actor.flush_logs()
        self._real.flush()


class ActorShell:
    """One actor's instance and output; subclasses say how its output leaves (``emit_log``)."""

    def __init__(self, name: str, context):
        self.name = name
        self.context = context
        self.instance = None
        self._parts: dict[str, list[str]] = {}
        self._answer = None  # how the call being served is answered; None for a send or a timer
        self._deferred: Reply | None = None  # that call's answer, when its method deferred it

    def emit_log(self, stream: str, text: str) -> None:
        raise NotImplementedError

    def encode(self, value) -> tuple[bytes, tuple]:
        """A return value as (payload, its shared memories); the local worker shares large arrays."""
        return dumps(value), ()

    def enter_thread(self) -> None:
        """Make the calling thread this actor's: its prints, context() and calls are the actor's."""
        current.actor = self
        current.sink = self.log
        set_context(self.context)

    def log(self, stream: str, text: str) -> None:
        parts = self._parts.setdefault(stream, [])
        parts.append(text)
        if "\n" in text:
            self.flush_logs()

    def flush_logs(self) -> None:
        for stream, parts in self._parts.items():
            if parts:
                text = "".join(parts)
                parts.clear()
                self.emit_log(stream, text)

    def construct(self, payload) -> tuple[bool, bytes]:
        """Build the instance from cloudpickled (cls, args, kwargs); (ok, encoded None or error)."""
        try:
            cls, args, kwargs = loads(payload)
            self.instance = cls(*args, **kwargs)
            # what exists now (modules the class imported, the actor's state) lives as long as
            # the process: out of the collector's full scans (~70 ms each in a worker, several a job)
            gc.freeze()
            result = True, dumps(None)
        except BaseException as exc:  # the constructor's error goes back to spawn()
            result = False, encode_error(exc)
        self.flush_logs()
        return result

    def run_message(self, method: str, payload, answer):
        """``run_method`` for a message; ``answer(outcome)`` sends a call's reply (None for a
        one-way send). Returns the outcome to answer now, or None: a send, or a call whose
        method deferred its answer (``context().defer()``) and did not raise."""
        self._answer, self._deferred = answer, None
        try:
            outcome = self.run_method(method, payload, reply=answer is not None)
        finally:
            self._answer, deferred = None, self._deferred
        if deferred is None or not outcome[0]:
            if deferred is not None:
                deferred.sent = True  # the method's error is the answer
            return outcome
        return None

    def defer(self) -> "Reply":
        """The answer to the call being served, for a later method or timer of this actor to send."""
        if self._answer is None:
            raise ClusterError("defer() is for a method called with .remote(...): a one-way send or a timer "
                               "has no caller to answer")
        if self._deferred is not None:
            raise ClusterError("this call's answer is deferred already")
        self._deferred = Reply(self, self._answer)
        return self._deferred

    def outcome(self, ok: bool, value) -> tuple:
        """(ok, encoded value or error, its shared memories) for a reply."""
        if ok:
            try:
                return (True, *self.encode(value))
            except Exception as exc:
                value = exc
        return False, encode_error(value), ()

    def run_method(self, method: str, payload=None, args=(), kwargs=None, reply: bool = True):
        """Run one method on pickled (args, kwargs) ``payload``, or on ``args``/``kwargs`` (timers).

        Returns (ok, encoded value or error, its shared memories) when
        ``reply``; otherwise None, and an error is printed, since nobody waits for it.
        """
        try:
            if payload is not None:
                args, kwargs = loads(payload)
            fn = getattr(self.instance, method, None)
            if fn is None or method.startswith("_"):
                raise AttributeError(
                    f"actor {self.name!r} ({type(self.instance).__name__}) has no method {method!r}"
                )
            value = fn(*args, **(kwargs or {}))
            ok = True
        except BaseException as exc:  # every failure is reported, never kills the actor
            ok, error = False, exc
            if not reply:
                traceback.print_exc()
        self.flush_logs()
        if not reply:
            return None
        return self.outcome(True, value) if ok else self.outcome(False, error)


class Reply:
    """A call's answer that its method deferred (``context().defer()``): the caller's future
    resolves when the actor sends it, from a later method or timer. An actor collecting
    messages from its peers answers this way, since a method that waited for them would
    block the very thread that receives them."""

    def __init__(self, shell: ActorShell, answer):
        self._shell = shell
        self._answer = answer
        self.sent = False

    def send(self, value=None) -> None:
        """Answer the call with ``value``."""
        self._settle(True, value)

    def fail(self, error: BaseException) -> None:
        """Answer the call with ``error``, raised in the caller."""
        if not isinstance(error, BaseException):
            raise TypeError(f"fail() needs an exception, got {type(error).__name__}")
        self._settle(False, error)

    def _settle(self, ok: bool, value) -> None:
        if self.sent:
            raise ClusterError("this call was answered already")
        if getattr(current, "actor", None) is not self._shell:
            raise ClusterError(f"a deferred answer is sent by its own actor ({self._shell.name!r}), "
                               "from one of its methods or timers")
        self.sent = True
        self._answer(self._shell.outcome(ok, value))


class Timers(threading.Thread):
    """A worker's timers: when one fires, its call is queued on the actor like a message."""

    def __init__(self, actors: dict):
        super().__init__(name="timers", daemon=True)
        self._actors = actors  # name -> an object with post(item)
        self._heap: list = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def add(self, actor: str, delay: float, method: str, args, kwargs) -> int:
        timer_id = next(self._ids)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, timer_id, actor, method, args, kwargs))
            self._cond.notify()
        return timer_id

    def cancel(self, timer_id: int) -> None:
        with self._cond:
            self._cancelled.add(timer_id)

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, timer_id, actor, method, args, kwargs = heapq.heappop(self._heap)
                if timer_id in self._cancelled:
                    self._cancelled.discard(timer_id)
                    continue
            host = self._actors.get(actor)
            if host is not None:
                host.post(("timer", method, args, kwargs))


def run_source(source: str, namespace: dict):
    """Execute ``source``; return the value of its last line if that is an expression."""
    tree = ast.parse(source, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cluster run>", "exec"), namespace)
    return None if last is None else eval(compile(last, "<cluster run>", "eval"), namespace)


def run_job(kind: str, payload, namespace: dict) -> tuple[bool, bytes]:
    """Code sent by ``run`` ("run": a function) or ``execute`` ("exec": source), what it printed captured."""
    out = io.StringIO()
    current.sink = lambda _stream, text: out.write(text)
    try:
        if kind == "exec":
            value = run_source(loads(payload), namespace)
        else:
            fn, args, kwargs = loads(payload)
            value = fn(*args, **kwargs)
        return True, dumps((value, out.getvalue()))
    except BaseException as exc:
        return False, encode_error(exc)
    finally:
        current.sink = None  # job threads may be reused
