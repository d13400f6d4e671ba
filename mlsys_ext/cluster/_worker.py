"""A worker process: hosts actors, one thread each; actors talk to each other directly.

Started by the driver as ``python -c "...main()" <ctrl fd> <parent pid> <name>
<timeout> <threshold> <seed> <trace size> <t0>``. The control socket carries
spawn requests (with the new actor's socket to the driver attached as a file
descriptor), network settings, reports (counters and trace rows), code to run,
and stop; a thread of its own serves it.

Each actor's thread reads every socket the actor has, and nothing else does:

* one socket to the driver: calls from the driver and their replies (whose
  fate the driver decides, as before), printed output, and the driver's
  answers when the actor asks for a peer;
* one *direct* socket per peer actor it talks with (on this worker or another;
  an actor sending to itself has one too). The first message to a peer asks
  the driver for one (``connect``): the driver makes a socket pair and sends
  one end to each actor over its socket to the driver (SCM_RIGHTS), so no
  port is ever opened. Calls, one-way sends and their replies between the two
  actors then go both ways on it, memfds beside their frames as on the
  driver's sockets; the driver never sees them.

Faults on direct paths are decided at the sender, by this worker's copy of the
driver's ``Network`` (the driver pushes every change of partition, link faults
and paused workers, and waits for the acknowledgement). Delayed copies wait in
the worker's ``Delayer``; messages to an actor on a paused worker wait in the
sender's link (``held``) until the driver says the worker resumed. The
worker's Network records what its actors send; the driver gathers the rows.

No send blocks the other direction: an actor whose direct socket is full goes
on reading all of its sockets while it waits to write (two actors writing big
messages to each other would otherwise wedge), and a sender writes each frame
whole into the kernel before it goes on, so a message that happened before
another reaches its receiver before it. A receiver that has frames from several
sockets takes them in the order they were sent (each carries its send time on
CLOCK_MONOTONIC, which all processes share).

A peer's worker that dies closes its end of every direct socket: the actor
sees end-of-file and fails the calls it still waits for on that socket with
ActorDiedError at once. The next message to that peer asks the driver again
(a restarted actor is reachable again; a dead one is refused).

Timers are queued as messages, so they never run concurrently with a method.
Output printed by an actor is sent to the driver. An actor whose socket the
driver closes (a spawn that timed out) ends alone; only the control socket's
end-of-file ends the worker.
"""
from __future__ import annotations

import ast
import ctypes
import functools
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
from ._errors import ActorDiedError, ActorTimeoutError, ClusterError, died_before_answering
from ._future import Future, failed_future
from ._handle import set_process_runtime
from ._network import Delayer, Network
from ._shm import SharedMemory, held_memory, pool
from ._wire import (SPIN_SECONDS, Channel, SharedPayload, decode_error, dumps, encode, loads, pack, payload_size,
                    shared_count, unpack)

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
_RELEASE_SECONDS = 5.0  # the longest a resume waits for held messages to be written into sockets


class _Link:
    """An actor's end of a direct socket to ``peer`` (on ``worker``)."""

    __slots__ = ("peer", "worker", "channel", "held", "lock", "calls")

    def __init__(self, peer: str, worker: str, fd: int):
        self.peer, self.worker = peer, worker
        self.channel = Channel(socket.socket(fileno=fd), carries_fds=True, queued=True)
        self.held: deque = deque()  # (frame, memories) waiting while the peer's worker is paused
        self.lock = threading.Lock()  # the owner's sends against the delayer's and a resume's
        self.calls: set[int] = set()  # ids of calls sent here and not answered yet


class _ActorHost(ActorShell):
    """One actor on a local worker: its sockets, its inbox and its thread."""

    def __init__(self, runtime: "WorkerRuntime", name: str, sock: socket.socket):
        super().__init__(name, ActorContext(name, runtime.name, runtime, runtime.timers))
        self.runtime = runtime
        self.channel = Channel(sock, carries_fds=True)  # to the driver, which always reads: sends block
        self.links: dict[int, _Link] = {}  # descriptor -> link, every direct socket this actor reads
        self.out: dict[str, _Link] = {}  # peer -> the link messages to it go on
        # What waits to be served, one FIFO per source (a link, None: the driver, "posted": timers)
        # of (send time, item): the next item is the oldest head, so a message sent before
        # another, from wherever, is served first.
        self.queues: dict[object, deque] = {}
        self.queued = 0
        self.posted: deque = deque()  # (time, item) from other threads: timers, outboxes to write out
        self.backlog: set[_Link] = set()  # links whose outbox holds frames
        self.pending: dict[int, tuple[Future, _Link]] = {}
        self.connecting: dict[int, object] = {}  # connect request -> None, then a link or a refusal
        self.ids = itertools.count(1)
        self.processed = 0
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self.dropped = False
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self.channel.fd, _IN)
        self._poller.register(self._wake_r, _IN)

    # -- items from other threads ----------------------------------------------
    def post(self, item) -> None:
        """Queue a local item (a timer, an outbox to write out) and wake the actor's thread."""
        self.posted.append((time.monotonic(), item))
        with self._wake_lock:  # not after drop() closed the pipe: its number may be reused
            if self.dropped:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the thread is awake already

    def _take_posted(self) -> None:
        while self.posted:
            stamp, item = self.posted.popleft()
            if item[0] == "flush":
                self._flush(item[1])
            else:
                self._enqueue("posted", stamp, item)

    # -- reading -----------------------------------------------------------------
    def _collect(self, timeout: float | None, spin: float = 0.0) -> None:
        """Read every frame the sockets hold, waiting up to ``timeout`` s (None: until one
        comes) after ``spin`` s of polling: messages join the inbox, replies resolve their
        futures, peers' sockets are taken in, outboxes are written out as sockets drain."""
        poll = self._poller.poll
        events = poll(0)
        if not events and timeout != 0:
            if spin:
                end = time.perf_counter() + spin
                while not events and time.perf_counter() < end:
                    events = poll(0)
            if not events:
                events = poll(None if timeout is None else max(timeout, 0.0) * 1000)
        for fd, mask in events:
            if fd == self.channel.fd:
                self._read(self.channel, None)
            elif fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            else:
                link = self.links.get(fd)
                if link is None:
                    continue
                if mask & _OUT:
                    self._flush(link)
                if mask & ~_OUT:
                    self._read(link.channel, link)
        if self.posted:
            self._take_posted()

    def _read(self, channel: Channel, link: _Link | None) -> None:
        try:
            while True:
                frame = channel.recv(timeout=0, spin=0)
                if frame is None:
                    return
                self._take(frame, channel, link)
                if channel.drained and not channel.has_frame():
                    return  # the last read took all there was: no need for one that finds nothing
        except EOFError:
            if link is None:
                raise  # the driver closed this actor's socket
            self._drop_link(link)

    def _take(self, frame: bytes, channel: Channel, link: _Link | None) -> None:
        header, payload = unpack(frame)
        count = shared_count(payload)
        if count:  # the memfds that came with this frame, in arrival order
            payload = SharedPayload(payload, [SharedMemory(channel.fds.pop(0)) for _ in range(count)])
        kind = header[0]
        if kind == "reply":
            self.processed += 1
            self.resolve(header, payload)
        elif kind == "peer":
            self._take_peer(header, channel)
        else:  # a call or a send: (kind, id, src, dst, method, send time)
            self._enqueue(link, header[5], (header, payload, link))

    def _take_peer(self, header, channel: Channel) -> None:
        """The driver's answer to a connect (``req``), or a peer's end arriving (``req`` 0)."""
        _, req, peer, worker, refusal = header
        if worker is None:
            self.connecting[req] = refusal
            return
        link = _Link(peer, worker, channel.fds.pop(0))
        self.runtime.where[peer] = worker
        self.links[link.channel.fd] = link
        self._poller.register(link.channel.fd, _IN)
        if req:
            self.out[peer] = link
            self.connecting[req] = link
        else:
            self.out.setdefault(peer, link)

    def _enqueue(self, source, stamp: float, item) -> None:
        queue = self.queues.get(source)
        if queue is None:
            queue = self.queues[source] = deque()
        queue.append((stamp, item))
        self.queued += 1

    def _dequeue(self):
        best = None
        for queue in self.queues.values():
            if queue and (best is None or queue[0][0] < best[0][0]):
                best = queue
        self.queued -= 1
        return best.popleft()[1]

    def next_item(self):
        runtime = self.runtime
        while not self.queued:
            # Spinning beats the wake-up latency, but pays only when no neighbour on this
            # worker needs the GIL: none runs a method and none spins already.
            if not runtime.busy and runtime.spinner in (None, self):
                runtime.spinner = self
                end = time.perf_counter() + SPIN_SECONDS
                while not self.queued and time.perf_counter() < end:
                    if self.links:
                        self._collect(0)
                    else:  # only the driver's socket: one read that may find nothing, not a poll and a read
                        self._read(self.channel, None)
                        if self.posted:
                            self._take_posted()
                if runtime.spinner is self:
                    runtime.spinner = None
                if self.queued:
                    break
            self._collect(None)
        return self._dequeue()

    # -- writing -----------------------------------------------------------------
    def _flush(self, link: _Link) -> bool:
        """Write what ``link``'s outbox can send now; True once it is empty (or the link is gone)."""
        if self.links.get(link.channel.fd) is not link:
            return True
        try:
            done = link.channel.flush()
        except OSError:
            done = True  # the peer is gone: its end-of-file reaches the reader
        if done:
            if link in self.backlog:
                self.backlog.discard(link)
                self._poller.modify(link.channel.fd, _IN)
        elif link not in self.backlog:
            self.backlog.add(link)
            self._poller.modify(link.channel.fd, _IN | _OUT)
        return done

    def transmit(self, link: _Link, frame: bytes, shared=(), owner: bool = True) -> None:
        """Send a frame to a peer, or hold it while the peer's worker is paused.

        On this actor's thread (``owner``) the frame is written whole into the
        kernel before this returns, every socket read meanwhile. From another
        thread (the delayer) what the socket will not take waits in the outbox,
        which this actor's thread writes out.
        """
        with link.lock:
            if link.held or self.runtime.net.holds(link.peer):
                link.held.append((frame, shared))
                return
            try:
                backlogged = link.channel.send(frame, [memory.fd for memory in shared])
            except OSError:
                return  # the peer is gone: its end-of-file fails what waits for it
        if backlogged:
            if not owner:
                self.post(("flush", link))
                return
            while not self._flush(link):
                self._collect(None)

    def release_held(self) -> list[_Link]:
        """Send what links hold for workers that are no longer paused (the control thread, after a
        push); the links whose outbox still holds some of it."""
        net = self.runtime.net
        backlogged = []
        for link in list(self.links.values()):
            if not link.held or net.holds(link.peer):
                continue
            waiting = False
            with link.lock:
                while link.held:
                    frame, shared = link.held.popleft()
                    try:
                        waiting = link.channel.send(frame, [memory.fd for memory in shared]) or waiting
                    except OSError:
                        link.held.clear()
            if waiting:
                self.post(("flush", link))
                backlogged.append(link)
        return backlogged

    def deliver(self, link: _Link, frame: bytes, delays, shared=()) -> None:
        for d in delays:  # every copy sends the same memfds; the last reference closes each
            if d > 0:
                self.runtime.delayer.post(d, self.transmit, link, frame, shared, False)
            else:
                self.transmit(link, frame, shared)

    def emit_log(self, stream: str, text: str) -> None:
        self._collect(0)  # a printing actor still takes in what peers write to it
        self.channel.send(pack(("log", 0, self.name, "driver", stream), text.encode()))

    def encode(self, value):
        return encode(value, self.runtime.shared_memory_threshold)

    # -- calls made by this actor --------------------------------------------------
    def call(self, dst: str, method: str, args, kwargs, oneway: bool):
        payload, shared = encode((args, kwargs), self.runtime.shared_memory_threshold)
        kind = "send" if oneway else "call"
        link = self.out.get(dst) or self._connect(dst)
        net = self.runtime.net
        if not isinstance(link, _Link):  # refused: ``dst`` is dead or does not exist
            net.refuse(kind, self.name, dst, method, payload_size(payload))
            return None if oneway else failed_future(self.runtime, dst, method, ActorDiedError(f"actor {dst!r} {link}"))
        fut, msg_id = None, 0
        if not oneway:
            msg_id = next(self.ids)
            fut = Future(self.runtime, dst, method, msg_id)
            self.pending[msg_id] = (fut, link)
            link.calls.add(msg_id)
        delays = net.decide(kind, self.name, dst, method, payload_size(payload))
        if delays:
            self.deliver(link, pack((kind, msg_id, self.name, dst, method, time.monotonic()), payload), delays, shared)
        return fut

    def _connect(self, dst: str):
        """Ask the driver for a direct socket to ``dst``: the link, or why there is none."""
        req = next(self.ids)
        self.connecting[req] = None
        self.channel.send(pack(("connect", req, self.name, dst)))
        deadline = time.monotonic() + self.runtime.timeout
        while self.connecting[req] is None:
            left = deadline - time.monotonic()
            if left <= 0:
                del self.connecting[req]
                raise ActorTimeoutError(f"the driver did not connect {self.name!r} to {dst!r} within "
                                        f"{self.runtime.timeout:g} s")
            self._collect(left, SPIN_SECONDS)
        return self.connecting.pop(req)

    def resolve(self, header, payload) -> None:
        entry = self.pending.pop(header[1], None)
        if entry is not None:
            fut, link = entry
            link.calls.discard(header[1])
            ok = header[5]
            fut._resolve(*((loads(payload), None) if ok else (None, decode_error(payload))))

    def wait(self, fut: Future, timeout: float) -> None:
        """Block this actor until ``fut`` resolves; other messages wait their turn."""
        deadline = time.monotonic() + timeout
        while not fut._done:
            left = deadline - time.monotonic()
            if left <= 0:
                entry = self.pending.pop(fut._id, None)  # a late reply finds nothing to resolve
                if entry is not None:
                    entry[1].calls.discard(fut._id)
                raise fut._timeout_error(timeout)
            self._collect(left, SPIN_SECONDS)

    # -- serving -------------------------------------------------------------------
    def reply(self, header, link: _Link | None, outcome) -> None:
        _, msg_id, src, _, method, _ = header
        ok, body, shared = outcome
        frame = pack(("reply", msg_id, self.name, src, method, ok), body)
        if link is None:  # the driver's call: the driver decides the reply's fate, as it did the call's
            self.channel.send(frame, [memory.fd for memory in shared])
        else:
            self.deliver(link, frame, self.runtime.net.decide("reply", self.name, src, method, payload_size(body)),
                         shared)

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
                if item[0] == "timer":  # posted by Timers; messages are (header, payload, link)
                    _, method, args, kwargs = item
                    self.run_method(method, args=args, kwargs=kwargs, reply=False)
                    continue
                self.processed += 1
                header, payload, link = item
                self.runtime.busy.add(self)
                try:
                    outcome = self.run_message(header[4], payload,
                                               functools.partial(self.reply, header, link)
                                               if header[0] == "call" else None)
                finally:
                    self.runtime.busy.discard(self)
                if outcome is not None:
                    self.reply(header, link, outcome)
        except (EOFError, OSError):
            # The driver closed this actor's socket (a spawn it gave up on): this actor
            # ends, its neighbours go on. The driver's end is the control socket.
            self.drop()

    def _drop_link(self, link: _Link) -> None:
        """A direct socket closed (the peer's process died): fail the calls waiting on it."""
        fd = link.channel.fd
        if self.links.get(fd) is link:
            del self.links[fd]
            self._poller.unregister(fd)
        if self.out.get(link.peer) is link:
            del self.out[link.peer]
        self.backlog.discard(link)
        if not self.queues.get(link, True):
            del self.queues[link]  # what it delivered before it closed is still served
        with link.lock:
            link.held.clear()
            link.channel.close()
        for msg_id in list(link.calls):
            entry = self.pending.pop(msg_id, None)
            if entry is not None:
                entry[0]._resolve(error=died_before_answering(link.peer, link.worker, entry[0].method))
        link.calls.clear()

    def drop(self) -> None:
        if self.runtime.actors.get(self.name) is self:  # a later spawn may reuse the name
            del self.runtime.actors[self.name]
        for link in list(self.links.values()):
            self._drop_link(link)
        self.channel.close()
        with self._wake_lock:
            self.dropped = True
            os.close(self._wake_r)
            os.close(self._wake_w)


class WorkerRuntime:
    """The runtime of a worker process: handles made inside actors call through it."""

    def __init__(self, name: str, ctrl: Channel, timeout: float, shared_memory_threshold: int | None,
                 seed=None, trace_size: int = 10_000, t0: float | None = None):
        self.name = name
        self.ctrl = ctrl
        self.timeout = timeout
        self.shared_memory_threshold = shared_memory_threshold
        self.actors: dict[str, _ActorHost] = {}
        self.busy: set[_ActorHost] = set()  # actors running a method now
        self.spinner: _ActorHost | None = None  # the idle actor polling its sockets without sleeping
        self.where: dict[str, str] = {}  # actor -> worker: this worker's actors and every peer met
        self.net = Network(self.where.get, seed=seed, trace_size=trace_size, t0=t0)
        self.delayer = Delayer()
        self.delayer.start()
        self.namespace: dict = {"__name__": "__cluster__", "worker": name}
        self.timers = Timers(self.actors)
        self.timers.start()

    def _host(self) -> _ActorHost:
        host = getattr(current, "actor", None)
        if host is None:
            raise ClusterError("actor calls inside a worker must be made from an actor's method")
        return host

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        return self._host().call(dst, method, args, kwargs, oneway)

    def _wait(self, fut: Future, timeout: float | None) -> None:
        self._host().wait(fut, self.timeout if timeout is None else timeout)

    def _ack(self, req: int, ok: bool, body: bytes) -> None:
        self.ctrl.send(pack(("ack", req, ok), body))

    def _run_job(self, req: int, kind: str, payload) -> None:
        self._ack(req, *run_job(kind, payload, self.namespace))

    def _report(self) -> bytes:
        sent, received, links = self.net.counts()
        return dumps({"processed": {n: h.processed for n, h in list(self.actors.items())},
                      "sent": sent, "received": received, "links": links, "trace": self.net.take_trace(),
                      "shared": held_memory(), "pooled": pool.free_memory()})

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
                self.where[name] = self.name
                threading.Thread(
                    target=host.run, args=(bytes(payload), lambda ok, body, r=req: self._ack(r, ok, body)),
                    name=f"actor-{name}", daemon=True,
                ).start()
            elif kind == "net":  # the driver's settings: in force for every message sent from now on
                self.net.load(loads(payload))
                released = [link for host in list(self.actors.values()) for link in host.release_held()]
                _write_out(released, time.monotonic() + _RELEASE_SECONDS)
                self._ack(req, True, dumps(None))
            elif kind == "report":
                self._ack(req, True, self._report())
            elif kind in ("exec", "run"):
                threading.Thread(target=self._run_job, args=(req, kind, bytes(payload)), daemon=True).start()
            elif kind == "stop":
                os._exit(0)


def _write_out(links: list[_Link], deadline: float) -> None:
    """Write out what ``links``' outboxes hold, as their receivers read, until ``deadline``.

    What peers held for a paused worker is then in its sockets when ``resume()``
    returns, so a later message of the driver does not overtake it; a receiver
    that does not read meanwhile gets the rest from its peers' own threads.
    """
    for link in links:
        writable = select.poll()  # not select(): descriptors of a worker holding arrays pass 1024
        writable.register(link.channel.fd, _OUT)
        while True:
            try:
                if link.channel.flush():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                writable.poll(min(left, 0.05) * 1000)
            except (OSError, ValueError):
                break  # the link closed meanwhile


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
    ctrl_fd, parent_pid, name, timeout, threshold, seed, trace_size, t0 = sys.argv[1:9]
    _die_with_parent(int(parent_pid))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the driver
    # every array an actor keeps from a shared-memory message holds a descriptor open
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.stdout = CapturedOutput(sys.stdout, "stdout")
    sys.stderr = CapturedOutput(sys.stderr, "stderr")
    ctrl = Channel(socket.socket(fileno=int(ctrl_fd)), carries_fds=True)
    runtime = WorkerRuntime(name, ctrl, float(timeout), None if threshold == "None" else int(threshold),
                            ast.literal_eval(seed), int(trace_size), float(t0))
    set_process_runtime(runtime)
    runtime.serve()
