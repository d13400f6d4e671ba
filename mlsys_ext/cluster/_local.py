"""The local backend: workers are child processes; actors talk to each other directly.

Transport: one Unix socket pair per worker for control, one per actor for the
driver's calls to it (and their replies, and what it prints), and one per pair
of actors that talk to each other, which the driver makes when the first of the
two asks for it (``connect``) and hands out with SCM_RIGHTS; no network port is
opened. Messages between actors never pass through the driver (see
``_worker``): each worker decides the fates of what its actors send with its
copy of the driver's ``Network``, which the driver updates on every change
(``_push_network``, acknowledged by every live worker before ``partition()``,
``set_network()``, ``heal()``, ``pause()`` or ``resume()`` returns), and
records those messages itself; ``trace()`` and ``status()`` gather the
workers' rows and counters (``_gather``), and so do ``kill``, ``restart`` and
``stop`` before they end a worker.

The driver decides the fates of its own calls and of the replies to them.
One thread at a time reads every socket of the driver: the holder of the
*pump*. A caller waiting for a reply takes the pump and reads (spinning
briefly before it sleeps), so replies need no hand-off between threads. When
no caller waits, the router thread holds the pump; a caller that wants it
kicks the router out of its select() through a pipe.

Faults: ``pause`` SIGSTOPs a worker; the driver holds its own messages to the
worker's actors (and their ends of new direct sockets) and every peer holds
what it sends them, until ``resume``. A worker that dies is seen by the driver
at the end-of-file of its control socket (its actors' pending driver calls fail,
those with restarts left are rebuilt) and by every peer at the end-of-file of
its direct sockets (their pending calls to it fail with ActorDiedError at once;
their next message connects again, to the new incarnation or to a refusal).

No send of the driver blocks: a frame a worker's socket will not take now
waits in that channel's outbox, and the pump writes it out as the socket
drains, while it goes on reading every other socket. (A driver blocked writing
to an actor that is itself blocked writing to the driver would wedge them all.)
"""
from __future__ import annotations

import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import mlsys_ext

from ._cluster import (ActorRecord, Cluster, SharedMemoryUse, WorkerResult, job_timeout_error, live_clusters,
                       spawn_timeout_error)
from ._errors import ActorDiedError, ActorTimeoutError, ClusterError, died_before_answering
from ._future import Future, failed_future
from ._handle import decoding_for
from ._network import DRIVER, Delayer
from ._process import wait_for_stop_state
from ._shm import SharedMemory, held_memory, pool
from ._wire import (SPIN_SECONDS, Channel, ObjectRef, SharedPayload, decode_error, dumps, encode, loads, pack,
                    payload_size, put, shared_count, unpack)

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mlsys_ext.__file__)))
_WORKER_MAIN = "from mlsys_ext.cluster._worker import main; main()"
_ROUTER_TICK = 0.01  # the longest the router sleeps in select() before looking around
_ROUTER_GRACE = 0.002  # the router stays out this long after a caller: back-to-back calls keep the pump


class _Worker:
    """One incarnation of a worker process."""

    def __init__(self, name: str, proc: subprocess.Popen, ctrl: Channel):
        self.name = name
        self.proc = proc
        self.ctrl = ctrl
        self.alive = True
        self.paused = False
        self.acks: dict[int, Future] = {}
        self.counts: tuple[dict, dict, dict] = ({}, {}, {})  # sent, received per endpoint; links: as it last reported
        self.shared: dict = {}  # the memfds it held when it last reported (see held_memory)
        self.pooled: dict = {}  # and those of them free in its pool


class LocalCluster(Cluster):
    def __init__(self, n=None, backend: str = "local", **kwargs):
        super().__init__(n, backend, **kwargs)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._channels: dict[Channel, object] = {}  # channel -> _Worker or ActorRecord
        self._readable: list[Channel] = []  # the open channels, rebuilt when they change
        self._backlogged: set[Channel] = set()  # channels whose outbox holds frames
        self._refs: weakref.WeakSet[ObjectRef] = weakref.WeakSet()  # released at stop()
        self._pump = threading.RLock()  # held by the one thread reading the sockets
        self._callers = 0  # callers waiting to pump; the router stands aside for them
        self._router_resume = 0.0
        self._router_selecting = False
        self._procs: dict[str, _Worker] = {}
        self._delayer = Delayer()
        self._delayer.start()
        # Linux's parent-death signal fires when the *thread* that started a
        # child exits, so every worker is started from this one long-lived thread.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="cluster-spawner")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        try:
            started = self._spawner.submit(lambda: [self._launch(w) for w in self.workers]).result()
        except BaseException:
            self._spawner.shutdown(wait=False)
            raise
        for w in started:
            self._adopt(w)
        self._router = threading.Thread(target=self._route, name="cluster-router", daemon=True)
        self._router.start()

    # -- processes -------------------------------------------------------
    def _launch(self, name: str) -> _Worker:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, str(child.fileno()), str(os.getpid()), name, repr(self.timeout),
             repr(self.shared_memory_threshold), repr(self._net.seed), str(self._net.trace.maxlen),
             repr(self._net.t0)],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # Ctrl-C in a terminal is meant for the driver alone
        )
        child.close()
        return _Worker(name, proc, Channel(parent, queued=True))

    def _adopt(self, w: _Worker) -> None:
        with self._lock:
            self._procs[w.name] = w
            self._channels[w.ctrl] = w
            self._channels_changed()
        self._wake()

    def _channels_changed(self) -> None:
        """Rebuild the list the pump selects on (called with ``self._lock`` held)."""
        self._readable = [c for c in self._channels if not c.closed]

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def _worker_alive(self, worker: str) -> bool:
        w = self._procs.get(worker)
        return w is not None and w.alive

    def _pid(self, rec: ActorRecord):
        w = self._procs.get(rec.worker)
        return w.proc.pid if w is not None and w.alive else None

    def _control(self, w: _Worker, header_tail: tuple, payload: bytes = b"", fds=None) -> Future:
        req = next(self._ids)
        fut = Future(self, w.name, header_tail[0], req)
        w.acks[req] = fut
        frame = pack((header_tail[0], req) + header_tail[1:], payload)
        try:
            self._send(w.ctrl, frame, fds)
        except OSError:
            w.acks.pop(req, None)
            fut._resolve(error=ActorDiedError(f"worker {w.name} is dead"))
        return fut

    # -- actors ----------------------------------------------------------
    def _start_actor(self, rec: ActorRecord) -> None:
        w = self._procs.get(rec.worker)
        if w is None or not w.alive:
            raise ActorDiedError(f"worker {rec.worker} is dead: restart it with cluster.restart({rec.worker!r})")
        parent, child = socket.socketpair()
        channel = Channel(parent, carries_fds=True, queued=True)
        fut = self._control(w, ("spawn", rec.name), rec.payload, [child.fileno()])
        child.close()
        try:
            fut.result(self.timeout)
        except ActorTimeoutError:
            channel.close()  # the worker drops the actor once its constructor returns
            raise spawn_timeout_error(rec.name, rec.worker, self.timeout) from None
        except BaseException:
            channel.close()
            raise
        with self._lock:
            rec.channel = channel
            rec.processed = 0
            rec.received_base = self._message_counts()[1].get(rec.name, 0)
            self._channels[channel] = rec
            self._channels_changed()
            rec.state = "paused" if w.paused else "alive"
            held, rec.held = rec.held, ([] if rec.state == "alive" else rec.held)
        if rec.state == "alive":
            for frame, shared in held:
                self._send_to(rec, frame, shared)
        self._wake()

    def _remove_actor(self, rec: ActorRecord) -> None:
        with self._lock:  # the worker drops an actor whose driver socket closes
            rec.held.clear()
            if rec.channel is not None:
                self._channels.pop(rec.channel, None)
                rec.channel.close()
                rec.channel = None
                self._channels_changed()
        self._wake()

    def _send_to(self, rec: ActorRecord, frame: bytes, shared: tuple[SharedMemory, ...] = ()) -> None:
        """Hand a frame (and its memfds) to an actor, or hold it while the actor is paused or restarting."""
        with self._lock:
            if rec.state != "alive":
                if rec.state != "dead":
                    rec.held.append((frame, shared))
                return
            channel = rec.channel
        try:
            self._send(channel, frame, [memory.fd for memory in shared])
        except OSError:
            pass  # the process just died; its death is handled by the router

    def _send(self, channel: Channel, frame: bytes, fds=()) -> None:
        """Send without blocking; what must wait is written out by the pump."""
        if channel.send(frame, fds):
            self._backlogged.add(channel)
            self._wake()  # a pump asleep in select() must add this socket to its write set

    def _deliver(self, rec: ActorRecord, frame: bytes, delays, shared: tuple[SharedMemory, ...] = ()) -> None:
        for d in delays:  # every copy sends the same memfds; the last reference closes each
            if d > 0:
                self._delayer.post(d, self._send_to, rec, frame, shared)
            else:
                self._send_to(rec, frame, shared)

    def put(self, obj) -> ObjectRef:
        self._check_open()
        ref = put(obj)
        self._refs.add(ref)
        return ref

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        rec = self._callable(dst, oneway)
        if rec.state == "dead":
            return failed_future(self, dst, method, self._dead_error(dst))
        payload, shared = encode((args, kwargs), self.shared_memory_threshold)
        if oneway:
            fut, header = None, ("send", 0, DRIVER, dst, method)
        else:
            msg_id = next(self._ids)
            fut = Future(self, dst, method, msg_id)
            self._pending[msg_id] = fut
            header = ("call", msg_id, DRIVER, dst, method)
        delays = self._net.decide(header[0], DRIVER, dst, method, payload_size(payload))
        if delays:  # the send time orders it among what the actor receives from its peers
            self._deliver(rec, pack(header + (time.monotonic(),), payload), delays, shared)
        return fut

    def _resolve(self, msg_id: int, ok: bool, payload) -> None:
        fut = self._pending.pop(msg_id, None)
        if fut is None:
            return
        try:
            with decoding_for(self):
                value, error = (loads(payload), None) if ok else (None, decode_error(payload))
        except Exception as exc:  # a reply this process cannot unpickle
            value, error = None, ClusterError(f"could not decode the reply of {fut.actor}.{fut.method}: {exc!r}")
        fut._resolve(value, error)

    # -- routing -----------------------------------------------------------
    def _dispatch(self, source, frame: bytes, fds: list[int]) -> None:
        """Route one frame read from ``source``'s channel, whose received descriptors are ``fds``."""
        if isinstance(source, _Worker):
            header, payload = unpack(frame)
            fut = source.acks.pop(header[1], None)
            if fut is not None:
                fut._resolve(*((loads(payload), None) if header[2] else (None, decode_error(payload))))
            return
        header, payload = unpack(frame)
        kind = header[0]
        if kind == "reply":  # to the driver: actors' replies to each other go on their direct sockets
            shared = tuple(SharedMemory(fds.pop(0)) for _ in range(shared_count(payload)))
            _, msg_id, src, dst, method, ok = header
            delays = self._net.decide("reply", src, dst, method, payload_size(payload))
            payload = SharedPayload(payload, list(shared)) if shared else bytes(payload)
            for d in delays:
                if d > 0:
                    self._delayer.post(d, self._resolve, msg_id, ok, payload)
                else:
                    self._resolve(msg_id, ok, payload)
        elif kind == "log":
            self._echo(source, header[4], bytes(payload).decode(errors="replace"))
        elif kind == "connect":
            self._connect(source, header[1], header[3])

    def _connect(self, source: ActorRecord, req: int, dst: str) -> None:
        """Make the direct socket from ``source`` to ``dst``: one end to each, or a refusal to ``source``.

        An end for an actor that is paused or restarting waits with its other
        messages; ``source`` gets its end at once, and what it writes waits in
        the socket.
        """
        target = self._actors.get(dst)
        if target is None or target.state == "dead":
            refusal = "is dead" if target is not None else "does not exist"
            self._send_to(source, pack(("peer", req, dst, None, refusal)))
            return
        ends = socket.socketpair()
        # held like a memfd: the descriptor closes with its last reference (a held frame's included)
        mine, theirs = (SharedMemory(end.detach()) for end in ends)
        self._send_to(target, pack(("peer", 0, source.name, source.worker, None)), (theirs,))
        self._send_to(source, pack(("peer", req, dst, target.worker, None)), (mine,))

    def _drain(self, channel: Channel) -> None:
        """Dispatch every frame that can be read now (the caller holds the pump)."""
        source = self._channels.get(channel)
        try:
            while True:
                frame = channel.recv(timeout=0, spin=0)
                if frame is None:
                    return
                self._dispatch(source, frame, channel.fds)
        except EOFError:
            self._on_eof(channel)

    def _flush_backlog(self) -> list[Channel]:
        """Write out what outboxes hold; the channels still backlogged (the caller holds the pump)."""
        for channel in list(self._backlogged):
            # Discarded before the flush: a frame queued meanwhile adds the channel back.
            self._backlogged.discard(channel)
            try:
                if not channel.flush():
                    self._backlogged.add(channel)
            except OSError:
                pass  # the peer is gone: its end-of-file reaches the reader
        return [c for c in self._backlogged if not c.closed]

    def _pump_round(self, timeout: float, spin: float) -> bool:
        """Read and dispatch what arrives within ``timeout`` (after ``spin`` s of polling); holds the pump."""
        channels = self._readable
        writing = self._flush_backlog() if self._backlogged else []
        ready = [c for c in channels if c.has_frame()]
        if not ready:
            end = time.perf_counter() + spin
            try:
                while True:
                    ready, writable, _ = select.select(channels, writing, [], 0)
                    if ready or writable or time.perf_counter() >= end:
                        break
                if not ready and not writable:
                    ready, writable, _ = select.select(channels + [self._wake_r], writing, [], timeout)
            except (OSError, ValueError):
                return False  # a socket closed under us; the next round has a fresh list
            if writable:
                self._flush_backlog()
        for channel in ready:
            if channel is self._wake_r:
                os.read(self._wake_r, 4096)
            else:
                try:
                    self._drain(channel)
                except Exception as exc:  # keep routing whatever one message did
                    print(f"mlsys_ext router: {exc!r}", file=sys.stderr)
        return bool(ready) or bool(writing)

    def _route(self) -> None:
        while not self.stopped:
            if self._callers or time.monotonic() < self._router_resume:
                time.sleep(_ROUTER_GRACE / 2)
                continue
            with self._pump:
                self._router_selecting = True
                if not self._callers:  # re-checked after raising the flag: no caller is missed
                    self._pump_round(_ROUTER_TICK, 0.0)
                self._router_selecting = False

    def _on_eof(self, channel: Channel) -> None:
        with self._lock:
            source = self._channels.pop(channel, None)
            self._channels_changed()
        channel.close()
        if isinstance(source, _Worker):
            self._worker_died(source, restart=True)

    def _wait(self, fut: Future, timeout) -> None:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._callers += 1
        if self._router_selecting:
            self._wake()
        try:
            # Spin only until the first frame that is not our reply: when other
            # traffic flows, a third spinner on two cores slows everyone down.
            spin = SPIN_SECONDS
            while not fut._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._forget(fut)
                    raise fut._timeout_error(timeout)
                if not self._pump.acquire(timeout=min(left, _ROUTER_TICK)):
                    continue  # another caller pumps, and may resolve our future meanwhile
                try:
                    while not fut._done and time.monotonic() < deadline:
                        if self._pump_round(min(deadline - time.monotonic(), _ROUTER_TICK), spin):
                            spin = 0.0
                finally:
                    self._pump.release()
        finally:
            self._callers -= 1
            self._router_resume = time.monotonic() + _ROUTER_GRACE

    def _forget(self, fut: Future) -> None:
        """Drop a timed-out future, so that a late reply or ack resolves nothing."""
        self._pending.pop(fut._id, None)
        w = self._procs.get(fut.actor)  # control futures are the worker's
        if w is not None:
            w.acks.pop(fut._id, None)

    # -- the network on every worker ------------------------------------------
    def _push_network(self, workers=None) -> None:
        """Hand the driver's network settings to every live worker (or ``workers``); returns once
        each acknowledged, so they decide every message sent afterwards. A paused worker
        cannot answer: it takes them in when it resumes (``resume`` waits for that)."""
        state = dumps(self._net.export())
        asks = [(w, self._control(w, ("net",), state)) for w in (workers or list(self._procs.values())) if w.alive]
        for w, fut in asks:
            if w.paused:
                continue
            try:
                fut.result(self.timeout)
            except ActorDiedError:
                pass  # its actors' messages are gone with it

    def _gather(self, workers=None, timeout: float = 1.0) -> None:
        """Collect counters and trace rows from the live workers (or ``workers``) that can answer."""
        asks = [(w, self._control(w, ("report",))) for w in (workers or list(self._procs.values()))
                if w.alive and not w.paused]
        deadline = time.monotonic() + timeout
        rows = []
        for w, fut in asks:
            try:
                report = fut.result(max(deadline - time.monotonic(), 0.0))
            except Exception:
                continue
            w.counts = (report["sent"], report["received"], report["links"])
            w.shared, w.pooled = report["shared"], report["pooled"]
            rows += report["trace"]
            for name, count in report["processed"].items():
                rec = self._actors.get(name)
                if rec is not None and rec.worker == w.name:
                    rec.processed = count
        self._add_rows(rows)

    def _worker_counts(self) -> list[tuple[dict, dict, dict]]:
        return [w.counts for w in list(self._procs.values()) if w.alive]

    def shared_memory(self) -> SharedMemoryUse:
        self._gather()
        held, pooled = held_memory(), pool.free_memory()
        for w in list(self._procs.values()):
            if w.alive:
                held.update(w.shared)
                pooled.update(w.pooled)
        used = [size for key, size in held.items() if key not in pooled]
        return SharedMemoryUse(len(used), sum(used), sum(pooled.values()))

    # -- faults ------------------------------------------------------------
    def _worker_died(self, w: _Worker, restart: bool) -> None:
        with self._lock:
            if not w.alive:
                return
            w.alive = False
            self._net.set_paused(w.name, False)  # its next incarnation runs (``_revive`` tells the peers)
            self._retire(w.counts)
            try:
                w.proc.kill()
            except OSError:
                pass
            w.ctrl.close()
            self._channels.pop(w.ctrl, None)
            dead = [rec for rec in self._actors.values() if rec.worker == w.name]
            revive = []
            for rec in dead:
                if rec.channel is not None:
                    self._channels.pop(rec.channel, None)
                    rec.channel.close()
                rec.channel = None
                if restart and not self.stopped and rec.can_restart and rec.state != "dead":
                    rec.state = "restarting"
                    revive.append(rec)
                else:
                    rec.state = "dead"
                    rec.held.clear()
            self._channels_changed()
        w.proc.wait()
        error = ActorDiedError(f"worker {w.name} died")
        for fut in list(w.acks.values()):
            fut._resolve(error=error)
        names = {rec.name for rec in dead}
        for msg_id, fut in list(self._pending.items()):
            if fut.actor in names:
                self._pending.pop(msg_id, None)
                fut._resolve(error=died_before_answering(fut.actor, w.name, fut.method))
        self._changed("died")
        if revive:
            self._spawner.submit(self._revive, w.name, revive)

    def _revive(self, worker: str, recs: list[ActorRecord]) -> None:
        """Start ``worker`` again and rebuild ``recs`` on it from their original arguments."""
        if self.stopped:
            return
        w = self._launch(worker)
        self._adopt(w)
        try:  # the new worker's copy, and the peers', which may have held for the old one
            self._push_network()
        except ClusterError as exc:  # a peer that did not answer in time: the actors come back anyway
            print(f"mlsys_ext: restarting {worker}: {exc}", file=sys.stderr)
        for rec in recs:
            rec.restarts += 1
            rec.state = "restarting"
            try:
                self._start_actor(rec)
            except BaseException as exc:
                with self._lock:
                    rec.state = "dead"
                    rec.held.clear()
                print(f"mlsys_ext: could not restart actor {rec.name!r}: {exc}", file=sys.stderr)
        self._changed("restart")

    def kill(self, name: str) -> None:
        """SIGKILL the process of worker ``name``, or of the worker hosting actor ``name``.

        Every actor on it dies; those with restarts left come back by themselves.
        """
        self._check_open()
        w = self._procs[self._worker_of(name)]
        if w.alive:
            self._gather([w])  # what its actors sent is in its trace
            os.kill(w.proc.pid, signal.SIGKILL)
            self._worker_died(w, restart=True)

    def restart(self, name: str) -> None:
        """Kill (if alive) and start again the worker ``name`` or the worker of actor ``name``,
        rebuilding every actor placed on it. Returns once they are running."""
        self._check_open()
        worker = self._worker_of(name)
        w = self._procs[worker]
        if w.alive:
            self._gather([w])
            os.kill(w.proc.pid, signal.SIGKILL)
            self._worker_died(w, restart=False)
        recs = [rec for rec in self._actors.values() if rec.worker == worker]
        with self._lock:
            for rec in recs:
                rec.state = "restarting"
        self._spawner.submit(self._revive, worker, recs).result()

    def _signal(self, name: str, sig: int, paused: bool) -> None:
        self._check_open()
        w = self._procs[self._worker_of(name)]
        if not w.alive:
            raise ActorDiedError(f"worker {w.name} is dead: restart it with cluster.restart({w.name!r})")
        os.kill(w.proc.pid, sig)
        wait_for_stop_state(w.proc.pid, paused)
        flush = []
        with self._lock:
            w.paused = paused
            self._net.set_paused(w.name, paused)
            for rec in self._actors.values():
                if rec.worker != w.name or rec.state not in ("alive", "paused"):
                    continue
                rec.state = "paused" if paused else "alive"
                if not paused:
                    flush.append(rec)
        # What the driver held goes first: it may hold an actor's end of a peer's direct socket.
        for rec in flush:
            held, rec.held = rec.held, []
            for frame, shared in held:
                self._send_to(rec, frame, shared)
        # From now on peers hold what they send to its actors (pause), or send what they held (resume).
        self._push_network()
        self._changed("pause" if paused else "resume")

    def pause(self, name: str) -> None:
        """SIGSTOP the worker (or the worker of actor ``name``): a frozen machine."""
        self._signal(name, signal.SIGSTOP, True)

    def resume(self, name: str) -> None:
        """SIGCONT a paused worker; messages held for its actors are delivered."""
        self._signal(name, signal.SIGCONT, False)

    def _refresh_stats(self) -> None:
        self._gather()

    # -- code on workers ---------------------------------------------------
    def _targets(self, targets) -> list[_Worker]:
        if targets is None:
            return [w for w in self._procs.values() if w.alive]
        names = [targets] if isinstance(targets, str) else list(targets)
        out = []
        for name in names:
            w = self._procs.get(self._worker_of(name))
            if w is None or not w.alive:
                raise ActorDiedError(f"worker {name} is dead")
            out.append(w)
        return out

    def _jobs(self, targets, kind: str, payload: bytes, timeout) -> dict[str, WorkerResult]:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        asks = [(w.name, self._control(w, (kind,), payload)) for w in self._targets(targets)]
        results = {}
        for name, fut in asks:
            try:
                value, printed = fut.result(max(deadline - time.monotonic(), 0.0))
                results[name] = WorkerResult(value, None, printed)
            except ActorTimeoutError:
                results[name] = WorkerResult(None, job_timeout_error(name, kind, timeout), "")
            except Exception as exc:
                results[name] = WorkerResult(None, exc, "")
        return results

    # -- lifetime ----------------------------------------------------------
    def stop(self) -> None:
        """Kill every worker process and wait for it; fail calls still pending."""
        if self.stopped:
            return
        self._gather()  # the workers' trace rows outlive them
        self.stopped = True
        self._spawner.shutdown(wait=True, cancel_futures=True)  # no restart may start after this
        error = ClusterError("the cluster was stopped")  # before the workers die, not "died before answering"
        for fut in list(self._pending.values()):
            fut._resolve(error=error)
        self._pending.clear()
        for w in list(self._procs.values()):
            if w.alive:
                try:
                    os.kill(w.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        for w in list(self._procs.values()):
            self._worker_died(w, restart=False)
        self._delayer.stop()
        self._wake()
        if threading.current_thread() is not self._router:
            self._router.join(timeout=5)
        for channel in list(self._channels):
            channel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        for ref in list(self._refs):
            ref.release()
        if not any(isinstance(c, LocalCluster) for c in live_clusters()):
            pool.clear()  # the driver's memfds for messages: none outlives the last local cluster
        self._changed("stop")
