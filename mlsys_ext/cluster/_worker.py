"""A worker process: hosts actors, one thread each, each reading its own socket.

Started by the driver as ``python -c "...main()" <ctrl fd> <parent pid> <name>``;
the control socket carries spawn requests (with the new actor's socket attached
as a file descriptor), stats, code to run, and stop.
"""
from __future__ import annotations

import ast
import ctypes
import heapq
import io
import itertools
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque

from ._context import ActorContext, set_context
from ._errors import ClusterError
from ._future import Future
from ._handle import set_process_runtime
from ._wire import SPIN_SECONDS, Channel, decode_error, dumps, encode_error, loads, pack, unpack

_local = threading.local()


def run_source(source: str, namespace: dict):
    """Execute ``source``; return the value of its last line if that is an expression."""
    tree = ast.parse(source, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cluster run>", "exec"), namespace)
    return None if last is None else eval(compile(last, "<cluster run>", "eval"), namespace)


class _Timers(threading.Thread):
    def __init__(self, runtime):
        super().__init__(name="timers", daemon=True)
        self._runtime = runtime
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
            host = self._runtime.actors.get(actor)
            if host is not None:
                host.post(("timer", method, args, kwargs))


class _Stream(io.TextIOBase):
    """sys.stdout/stderr of a worker: text printed by an actor goes to the driver."""

    def __init__(self, real, stream: str):
        self._real = real
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        capture = getattr(_local, "capture", None)
        if capture is not None:
            capture.write(text)
            return len(text)
        host = getattr(_local, "actor", None)
        if host is None:
            return self._real.write(text)
        host.log(self._stream, text)
        return len(text)

    def flush(self) -> None:
        host = getattr(_local, "actor", None)
        if host is not None:
            host.flush_logs()
        self._real.flush()


class _ActorHost:
    """One actor: its instance, its socket to the driver, its mailbox and its thread."""

    def __init__(self, runtime: "WorkerRuntime", name: str, sock: socket.socket):
        self.runtime = runtime
        self.name = name
        self.channel = Channel(sock)
        self.mailbox: deque = deque()
        self.pending: dict[int, Future] = {}
        self.ids = itertools.count(1)
        self.processed = 0
        self.instance = None
        self._logs: dict[str, list[str]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self.channel.fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self.context = ActorContext(name, runtime.name, runtime, runtime.timers)

    def post(self, item) -> None:
        """Queue a local item (a timer) and wake the actor's thread."""
        self.mailbox.append(item)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread is awake already

    # -- output --------------------------------------------------------
    def log(self, stream: str, text: str) -> None:
        parts = self._logs.setdefault(stream, [])
        parts.append(text)
        if "\n" in text:
            self.flush_logs()

    def flush_logs(self) -> None:
        for stream, parts in self._logs.items():
            if parts:
                text = "".join(parts)
                parts.clear()
                self.channel.send(pack(("log", 0, self.name, "driver", stream), text.encode()))

    # -- the loop ------------------------------------------------------
    def next_item(self):
        while True:
            if self.mailbox:
                return self.mailbox.popleft()
            # Spinning pays only when no neighbour on this worker needs the GIL.
            spin = SPIN_SECONDS if len(self.runtime.actors) == 1 else 0.0
            frame = self.channel.recv(timeout=0, spin=spin)
            if frame is not None:
                return frame
            for fd, _ in self._poller.poll():
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass

    def run(self, cls_payload: bytes, ack) -> None:
        _local.actor = self
        set_context(self.context)
        try:
            cls, args, kwargs = loads(cls_payload)
            self.instance = cls(*args, **kwargs)
        except BaseException as exc:  # the constructor's error goes back to spawn()
            self.flush_logs()
            ack(False, encode_error(exc))
            return
        self.flush_logs()
        ack(True, dumps(None))
        try:
            while True:
                item = self.next_item()
                if type(item) is tuple:  # a timer
                    _, method, args, kwargs = item
                    self._invoke(method, None, None, args, kwargs)
                    continue
                self.processed += 1
                header, payload = unpack(item)
                kind = header[0]
                if kind == "reply":
                    self.resolve(header, payload)
                    continue
                self._invoke(header[4], header if kind == "call" else None, payload)
        except (EOFError, OSError):
            os._exit(0)  # the driver is gone

    def _invoke(self, method: str, call_header, payload, args=(), kwargs=None) -> None:
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
            ok = False
            error = exc
            if call_header is None:
                traceback.print_exc()
        self.flush_logs()
        if call_header is None:
            return
        _, msg_id, src, _, _ = call_header
        if ok:
            try:
                body = dumps(value)
            except Exception as exc:
                ok, body = False, encode_error(exc)
        else:
            body = encode_error(error)
        self.channel.send(pack(("reply", msg_id, self.name, src, method, ok), body))

    def resolve(self, header, payload) -> None:
        fut = self.pending.pop(header[1], None)
        if fut is not None:
            ok = header[5]
            fut._resolve(*((loads(payload), None) if ok else (None, decode_error(payload))))

    def wait(self, fut: Future, timeout: float) -> None:
        """Block this actor until ``fut`` resolves; other messages wait their turn."""
        deadline = time.monotonic() + timeout
        while not fut._done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise fut._timeout_error(timeout)
            frame = self.channel.recv(timeout=left)
            if frame is None:
                continue
            header, payload = unpack(frame)
            if header[0] == "reply":
                self.processed += 1
                self.resolve(header, payload)
            else:
                self.mailbox.append(frame)


class WorkerRuntime:
    """The runtime of a worker process: handles made inside actors call through it."""

    def __init__(self, name: str, ctrl: Channel, timeout: float):
        self.name = name
        self.ctrl = ctrl
        self.timeout = timeout
        self.actors: dict[str, _ActorHost] = {}
        self.namespace: dict = {"__name__": "__cluster__", "worker": name}
        self.timers = _Timers(self)
        self.timers.start()

    def _host(self) -> _ActorHost:
        host = getattr(_local, "actor", None)
        if host is None:
            raise ClusterError("actor calls inside a worker must be made from an actor's method")
        return host

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        host = self._host()
        payload = dumps((args, kwargs))
        if oneway:
            host.channel.send(pack(("send", 0, host.name, dst, method), payload))
            return None
        msg_id = next(host.ids)
        fut = Future(self, dst, method)
        host.pending[msg_id] = fut
        host.channel.send(pack(("call", msg_id, host.name, dst, method), payload))
        return fut

    def _wait(self, fut: Future, timeout: float | None) -> None:
        self._host().wait(fut, self.timeout if timeout is None else timeout)

    def _ack(self, req: int, ok: bool, body: bytes) -> None:
        self.ctrl.send(pack(("ack", req, ok), body))

    def _run_job(self, req: int, kind: str, payload) -> None:
        out = io.StringIO()
        _local.capture = out
        try:
            if kind == "exec":
                value = run_source(loads(payload), self.namespace)
            else:
                fn, args, kwargs = loads(payload)
                value = fn(*args, **kwargs)
            body, ok = dumps((value, out.getvalue())), True
        except BaseException as exc:
            body, ok = encode_error(exc), False
        self._ack(req, ok, body)

    def serve(self) -> None:
        while True:
            try:
                frame = self.ctrl.recv(spin=0)
            except EOFError:
                os._exit(0)
            header, payload = unpack(frame)
            kind, req = header[0], header[1]
            if kind == "spawn":
                name = header[2]
                host = _ActorHost(self, name, socket.socket(fileno=self.ctrl.fds.pop(0)))
                self.actors[name] = host
                threading.Thread(
                    target=host.run, args=(bytes(payload), lambda ok, body, r=req: self._ack(r, ok, body)),
                    name=f"actor-{name}", daemon=True,
                ).start()
            elif kind == "stats":
                self._ack(req, True, dumps({n: h.processed for n, h in self.actors.items()}))
            elif kind in ("exec", "run"):
                threading.Thread(target=self._run_job, args=(req, kind, bytes(payload)), daemon=True).start()
            elif kind == "stop":
                os._exit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when the driver dies, even while we are SIGSTOPped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: end-of-file on the control socket still ends us
    if os.getppid() != parent_pid:
        os._exit(0)


def main() -> None:
    ctrl_fd, parent_pid, name, timeout = sys.argv[1:5]
    _die_with_parent(int(parent_pid))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the driver
    sys.stdout = _Stream(sys.stdout, "stdout")
    sys.stderr = _Stream(sys.stderr, "stderr")
    ctrl = Channel(socket.socket(fileno=int(ctrl_fd)), carries_fds=True)
    runtime = WorkerRuntime(name, ctrl, float(timeout))
    set_process_runtime(runtime)
    runtime.serve()
