"""A worker process: hosts actors, one thread each, each reading its own socket.

Started by the driver as ``python -c "...main()" <ctrl fd> <parent pid> <name>``;
the control socket carries spawn requests (with the new actor's socket attached
as a file descriptor), stats, code to run, and stop.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections import deque

from ._actor import ActorShell, CapturedOutput, Timers, current, run_job
from ._context import ActorContext
from ._errors import ClusterError
from ._future import Future
from ._handle import set_process_runtime
from ._wire import (SPIN_SECONDS, Channel, SharedMemory, SharedPayload, decode_error, dumps, encode, loads, pack,
                    shared_count, unpack)


class _ActorHost(ActorShell):
    """One actor on a local worker: its socket to the driver, its mailbox and its thread."""

    def __init__(self, runtime: "WorkerRuntime", name: str, sock: socket.socket):
        super().__init__(name, ActorContext(name, runtime.name, runtime, runtime.timers))
        self.runtime = runtime
        self.channel = Channel(sock, carries_fds=True)
        self.mailbox: deque = deque()
        self.pending: dict[int, Future] = {}
        self.ids = itertools.count(1)
        self.processed = 0
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self.dropped = False
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self.channel.fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)

    def post(self, item) -> None:
        """Queue a local item (a timer) and wake the actor's thread."""
        self.mailbox.append(item)
        with self._wake_lock:  # not after drop() closed the pipe: its number may be reused
            if self.dropped:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the thread is awake already

    def emit_log(self, stream: str, text: str) -> None:
        self.channel.send(pack(("log", 0, self.name, "driver", stream), text.encode()))

    def encode(self, value):
        return encode(value, self.runtime.shared_memory_threshold)

    def message(self, frame: bytes) -> tuple:
        """(header, payload) of a frame; a payload that came with memfds takes them now, in arrival order."""
        header, payload = unpack(frame)
        count = shared_count(payload)
        if count:
            payload = SharedPayload(payload, [SharedMemory(self.channel.fds.pop(0)) for _ in range(count)])
        return header, payload

    def next_item(self):
        while True:
            if self.mailbox:
                return self.mailbox.popleft()
            # Spinning pays only when no neighbour on this worker needs the GIL.
            spin = SPIN_SECONDS if len(self.runtime.actors) == 1 else 0.0
            frame = self.channel.recv(timeout=0, spin=spin)
            if frame is not None:
                return self.message(frame)
            for fd, _ in self._poller.poll():
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass

    def run(self, cls_payload: bytes, ack) -> None:
        self.enter_thread()
        ok, body = self.construct(cls_payload)
        ack(ok, body)
        if not ok:
            self.drop()
            return
        try:
            while True:
                item = self.next_item()
                if item[0] == "timer":  # posted by Timers; messages are (header, payload)
                    _, method, args, kwargs = item
                    self.run_method(method, args=args, kwargs=kwargs, reply=False)
                    continue
                self.processed += 1
                header, payload = item
                kind = header[0]
                if kind == "reply":
                    self.resolve(header, payload)
                    continue
                method = header[4]
                outcome = self.run_method(method, payload, reply=kind == "call")
                if outcome is not None:
                    _, msg_id, src, _, _ = header
                    ok, body, shared = outcome
                    self.channel.send(pack(("reply", msg_id, self.name, src, method, ok), body),
                                      [memory.fd for memory in shared])
        except (EOFError, OSError):
            # The driver closed this actor's socket (a spawn it gave up on): this actor
            # ends, its neighbours go on. The driver's end is the control socket.
            self.drop()

    def drop(self) -> None:
        if self.runtime.actors.get(self.name) is self:  # a later spawn may reuse the name
            del self.runtime.actors[self.name]
        self.channel.close()
        with self._wake_lock:
            self.dropped = True
            os.close(self._wake_r)
            os.close(self._wake_w)

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
                self.pending.pop(fut._id, None)  # a late reply finds nothing to resolve
                raise fut._timeout_error(timeout)
            frame = self.channel.recv(timeout=left)
            if frame is None:
                continue
            header, payload = self.message(frame)
            if header[0] == "reply":
                self.processed += 1
                self.resolve(header, payload)
            else:
                self.mailbox.append((header, payload))


class WorkerRuntime:
    """The runtime of a worker process: handles made inside actors call through it."""

    def __init__(self, name: str, ctrl: Channel, timeout: float, shared_memory_threshold: int | None):
        self.name = name
        self.ctrl = ctrl
        self.timeout = timeout
        self.shared_memory_threshold = shared_memory_threshold
        self.actors: dict[str, _ActorHost] = {}
        self.namespace: dict = {"__name__": "__cluster__", "worker": name}
        self.timers = Timers(self.actors)
        self.timers.start()

    def _host(self) -> _ActorHost:
        host = getattr(current, "actor", None)
        if host is None:
            raise ClusterError("actor calls inside a worker must be made from an actor's method")
        return host

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        host = self._host()
        payload, shared = encode((args, kwargs), self.shared_memory_threshold)
        fds = [memory.fd for memory in shared]
        if oneway:
            host.channel.send(pack(("send", 0, host.name, dst, method), payload), fds)
            return None
        msg_id = next(host.ids)
        fut = Future(self, dst, method, msg_id)
        host.pending[msg_id] = fut
        host.channel.send(pack(("call", msg_id, host.name, dst, method), payload), fds)
        return fut

    def _wait(self, fut: Future, timeout: float | None) -> None:
        self._host().wait(fut, self.timeout if timeout is None else timeout)

    def _ack(self, req: int, ok: bool, body: bytes) -> None:
        self.ctrl.send(pack(("ack", req, ok), body))

    def _run_job(self, req: int, kind: str, payload) -> None:
        self._ack(req, *run_job(kind, payload, self.namespace))

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
                self._ack(req, True, dumps({n: h.processed for n, h in list(self.actors.items())}))
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
    ctrl_fd, parent_pid, name, timeout, threshold = sys.argv[1:6]
    _die_with_parent(int(parent_pid))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the driver
    # every array an actor keeps from a shared-memory message holds a descriptor open
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.stdout = CapturedOutput(sys.stdout, "stdout")
    sys.stderr = CapturedOutput(sys.stderr, "stderr")
    ctrl = Channel(socket.socket(fileno=int(ctrl_fd)), carries_fds=True)
    runtime = WorkerRuntime(name, ctrl, float(timeout), None if threshold == "None" else int(threshold))
    set_process_runtime(runtime)
    runtime.serve()
