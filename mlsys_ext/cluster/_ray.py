"""The Ray backend: the same actors, faulty network and trace, on Ray.

Design
------
* Each worker (w0 .. w{n-1}) is one Ray actor, a ``_Host`` asking for no CPU
  (``num_cpus=0``), so any number of workers fits on a small machine. A host
  runs each actor placed on it on a thread of its own that serves the actor's
  mailbox, as a local worker does: an actor's methods never run concurrently,
  and an actor blocked on a call leaves its neighbours running. Killing a
  worker is ``ray.kill`` of its host, so every actor on it dies.
* One more Ray actor, the ``_Router``, owns the one ``Network``: the fate of
  every message (driver to actor, actor to actor, and every reply) is decided
  and recorded there. The sender does not wait for it: it submits
  ``_Router.decide`` and passes the resulting ObjectRef as an argument of the
  message it submits straight to the destination host, so Ray hands the host
  the message together with its fate (the delays of its copies; [] for
  dropped). The host drops, delays or duplicates it. The answering host asks
  the router about the reply in the same way, and the reply comes back as the
  Ray result of the call. The router is a plain Ray actor, whose calls run one
  at a time in the order each caller sent them: the driver's ``set_network``
  applies to every message it sends afterwards.
* Ray runs the tasks of an async actor in no guaranteed order, so every
  message carries (sender, sequence number), and a host takes in each sender's
  messages in the order they were sent: the per-sender order of the local
  backend.
* The driver keeps the actor records. It learns that a host died from a call
  that only ends with the host (``watch``), and builds the actors with
  restarts left again on a new host. It pulls the hosts' counters and what
  their actors printed every ``_POLL_SECONDS``.
* ``pause``/``resume`` send SIGSTOP/SIGCONT to the host's process, which only
  works when it runs on this machine; Ray cannot freeze an actor, so otherwise
  they are refused.

Differences from the local backend: a call from an actor to an actor that is
being restarted fails with ActorDiedError (calls from the driver are held until
it is back, as in the local backend). Started here, Ray binds to 127.0.0.1 and
is shut down when the last cluster using it stops; a Ray the process had
already initialised is used as it is and left running.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import ray
from ray._private import ray_constants
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from ._actor import ActorShell, CapturedOutput, Timers, current, run_job
from ._cluster import ActorRecord, Cluster, WorkerResult, job_timeout_error, spawn_timeout_error
from ._context import ActorContext
from ._errors import ActorDiedError, ClusterError
from ._future import Future, failed_future
from ._handle import decoding_for, set_process_runtime
from ._network import DRIVER, Network
from ._process import wait_for_exit, wait_for_stop_state
from ._wire import decode_error, dumps, encode_error, loads

_POLL_SECONDS = 0.2  # how often the driver pulls counters and printed output
_START_TIMEOUT = 120.0  # seconds for new host processes to come up on a busy machine
_IN_FLIGHT = 10_000  # messages one host may hold at once: each is a parked coroutine
_HOST_OPTIONS = dict(
    num_cpus=0,
    max_restarts=0,  # the driver restarts actors itself, with their own restart budgets
    max_concurrency=_IN_FLIGHT,
    # Control calls (spawn, status, code to run, the death watch) never queue behind messages.
    concurrency_groups={"control": 16},
)

_ray_lock = threading.Lock()
_ray_users = 0  # live clusters on the Ray connection this module opened
_ray_address = None


# -- the Ray connection -----------------------------------------------------------

def _acquire_ray(address: str | None) -> bool:
    """Start or connect to Ray unless this process has it already; True if we opened it."""
    global _ray_users, _ray_address
    with _ray_lock:
        if _ray_users:
            if address != _ray_address:
                raise ClusterError(
                    f"this process is connected to Ray at {_ray_address or 'a local instance'} already; "
                    f"stop its clusters before using address={address!r}"
                )
            _ray_users += 1
            return True
        if ray.is_initialized():
            if address is not None:
                raise ClusterError("Ray is initialized in this process already: leave out address= to use it")
            return False  # the user's own Ray: used as it is, never shut down
        if address is None:
            # ray.init enables usage statistics by default; a local lab sends nothing out.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            options = dict(_node_ip_address="127.0.0.1", include_dashboard=False)
        else:
            options = dict(address=address)
        on_loopback = address is None or address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")
        with _loopback_kept() if on_loopback else contextlib.nullcontext():
            ray.init(log_to_driver=False, **options)
        _ray_users, _ray_address = 1, address
        return True


@contextlib.contextmanager
def _loopback_kept():
    """Ray replaces a loopback address (of this node, or of the cluster to join) by this
    machine's own address unless multi-node clusters are disabled; with 127.0.0.1 kept,
    every Ray server started listens on the loopback interface only."""
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def _release_ray(owned: bool) -> None:
    global _ray_users
    if not owned:
        return
    with _ray_lock:
        _ray_users -= 1
        if _ray_users == 0 and ray.is_initialized():
            ray.shutdown()


# -- sending ------------------------------------------------------------------------

class _Route(NamedTuple):
    """Where a worker's actors are reached."""

    worker: str
    key: str  # one incarnation of the host: a restarted worker starts its sequences afresh
    actor: object  # the host's Ray actor handle


class _Messenger:
    """Sending through the router and waiting for replies: the driver and each host do both."""

    def _init_messenger(self, router, timeout: float) -> None:
        self._router = router
        self.timeout = timeout
        self._sender = uuid.uuid4().hex
        self._seqs: dict[str, itertools.count] = {}
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}

    def _new_future(self, dst: str, method: str) -> Future:
        return Future(self, dst, method, next(self._ids))

    def _post(self, route: _Route, kind: str, src: str, dst: str, method: str, payload: bytes, fut) -> None:
        with self._send_lock:  # sequence numbers must reach Ray in the order they are drawn
            fate = self._router.decide.remote(kind, src, dst, method, len(payload))
            seq = next(self._seqs.setdefault(route.key, itertools.count()))
            ref = route.actor.deliver.remote(self._sender, seq, fate, kind, src, dst, method, payload)
        if fut is not None:
            self._pending[fut._id] = fut
            ref.future().add_done_callback(lambda done: self._on_reply(fut, src, route.worker, done))

    def _on_reply(self, fut: Future, src: str, worker: str, done) -> None:
        """Runs on a Ray thread when a call's Ray task ends: decode, never call Ray."""
        try:
            answer = done.result()
        except RayActorError:
            answer = ActorDiedError(f"actor {fut.actor!r} is dead: worker {worker} died before it answered "
                                    f"{fut.method}")
        except Exception as exc:  # a failure of the transport itself, reported to the caller
            answer = ClusterError(f"{fut.actor}.{fut.method} failed in Ray: {exc}")
        if answer is None:
            return  # the request or the reply was dropped: the caller times out
        if self._pending.pop(fut._id, None) is None:
            return  # the caller gave up waiting, or the cluster stopped
        if isinstance(answer, Exception):
            fut._resolve(error=answer)
            return
        self._got_reply(src)
        ok, body = answer
        try:
            with decoding_for(self):
                value, error = (loads(body), None) if ok else (None, decode_error(body))
        except Exception as exc:  # a reply this process cannot unpickle
            value, error = None, ClusterError(f"could not decode the reply of {fut.actor}.{fut.method}: {exc!r}")
        fut._resolve(value, error)

    def _got_reply(self, src: str) -> None:
        """A reply reached actor ``src`` (hosts count it for the queue column)."""

    def _wait(self, fut: Future, timeout) -> None:
        timeout = self.timeout if timeout is None else timeout
        fut._wait_gate(timeout)
        if not fut._done:
            self._pending.pop(fut._id, None)
            raise fut._timeout_error(timeout)


# -- inside a host process ------------------------------------------------------------

def _settle(done: asyncio.Future, value) -> None:
    """Resolve an asyncio future from an actor's thread."""
    done.get_loop().call_soon_threadsafe(lambda: done.done() or done.set_result(value))


class _Hosted(ActorShell):
    """One actor in a host: its instance, its mailbox and the thread serving it."""

    def __init__(self, runtime: "_HostRuntime", name: str):
        super().__init__(name, ActorContext(name, runtime.name, runtime, runtime.timers))
        self.runtime = runtime
        self.mailbox: queue.SimpleQueue = queue.SimpleQueue()
        self.processed = 0  # messages taken from the mailbox (timers are not messages)
        self.replies = 0  # replies to this actor's own calls

    def post(self, item) -> None:
        self.mailbox.put(item)

    def emit_log(self, stream: str, text: str) -> None:
        self.runtime.add_log(self.name, stream, text)

    def start(self, payload: bytes, done: asyncio.Future) -> None:
        threading.Thread(target=self._serve, args=(payload, done), name=f"actor-{self.name}", daemon=True).start()

    def _serve(self, payload: bytes, done: asyncio.Future) -> None:
        self.enter_thread()
        ok, body = self.construct(payload)
        _settle(done, (ok, body))
        if not ok:
            return
        while True:
            item = self.mailbox.get()
            if item[0] == "drop":  # the driver gave up on this actor's spawn
                return
            if item[0] == "timer":  # posted by Timers
                _, method, args, kwargs = item
                self.run_method(method, args=args, kwargs=kwargs, reply=False)
            else:
                _, method, payload, done = item
                self.processed += 1
                # Ray's own serialisation carries the arrays: the reply is (ok, body)
                answer = None if done is None else (lambda outcome, done=done: _settle(done, outcome[:2]))
                outcome = self.run_message(method, payload, answer)
                if outcome is not None:
                    answer(outcome)


class _HostRuntime(_Messenger):
    """The runtime of a host process: handles unpickled there call through it."""

    def __init__(self, worker: str, router, timeout: float):
        self._init_messenger(router, timeout)
        self.name = worker
        self.actors: dict[str, _Hosted] = {}
        self.names: dict[str, str] = {}  # actor -> worker, for the whole cluster
        self.routes: dict[str, _Route] = {}
        self.namespace: dict = {"__name__": "__cluster__", "worker": worker}
        self.timers = Timers(self.actors)
        self.timers.start()
        self._logs: list[tuple[str, str, str]] = []
        self._logs_lock = threading.Lock()

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        caller = getattr(current, "actor", None)
        if caller is None:
            raise ClusterError("actor calls inside a worker must be made from an actor's method")
        payload = dumps((args, kwargs))
        route = self.routes.get(self.names.get(dst))
        if route is None:
            if oneway:
                return None  # as on the local backend, a message to no one is lost
            return failed_future(self, dst, method, ActorDiedError(f"actor {dst!r} does not exist"))
        fut = None if oneway else self._new_future(dst, method)
        self._post(route, "send" if oneway else "call", caller.name, dst, method, payload, fut)
        return fut

    def _got_reply(self, src: str) -> None:
        actor = self.actors.get(src)
        if actor is not None:
            actor.replies += 1  # only Ray's callback thread writes this

    def add_log(self, name: str, stream: str, text: str) -> None:
        with self._logs_lock:
            self._logs.append((name, stream, text))

    def take_logs(self) -> list:
        with self._logs_lock:
            logs, self._logs = self._logs, []
        return logs

    def run_job(self, kind: str, payload: bytes):
        """Run code sent by ``run``/``execute``, capturing what it prints."""
        return run_job(kind, payload, self.namespace)


class _Host:
    """A worker: a Ray actor hosting any number of actors (see the module docstring)."""

    def __init__(self, worker: str, router, timeout: float):
        self.runtime = _HostRuntime(worker, router, timeout)
        set_process_runtime(self.runtime)
        sys.stdout = CapturedOutput(sys.stdout, "stdout")
        sys.stderr = CapturedOutput(sys.stderr, "stderr")
        self._next: dict[str, int] = {}  # sender -> sequence number of the next message to take in
        self._turns: dict[tuple[str, int], asyncio.Future] = {}  # messages waiting for an earlier one

    @ray.method(concurrency_group="control")
    async def start(self):
        return os.getpid(), ray.get_runtime_context().get_node_id()

    @ray.method(concurrency_group="control")
    async def update(self, names: dict, routes: dict) -> None:
        self.runtime.names, self.runtime.routes = names, routes

    @ray.method(concurrency_group="control")
    async def watch(self) -> None:
        """Never returns: the driver learns of the host's death when this call fails."""
        await asyncio.get_running_loop().create_future()

    @ray.method(concurrency_group="control")
    async def spawn(self, name: str, payload: bytes):
        actor = _Hosted(self.runtime, name)
        self.runtime.actors[name] = actor
        done = asyncio.get_running_loop().create_future()
        actor.start(payload, done)
        try:
            ok, body = await asyncio.shield(done)
        except asyncio.CancelledError:  # the spawn timed out: drop the actor once its constructor returns
            done.add_done_callback(lambda _: self._drop(name, actor))
            raise
        if not ok:
            del self.runtime.actors[name]
        return ok, body

    def _drop(self, name: str, actor: _Hosted) -> None:
        if self.runtime.actors.get(name) is actor:  # a later spawn may reuse the name
            del self.runtime.actors[name]
        actor.post(("drop",))

    @ray.method(concurrency_group="control")
    async def poll(self):
        counts = {name: a.processed + a.replies for name, a in self.runtime.actors.items()}
        return counts, self.runtime.take_logs()

    @ray.method(concurrency_group="control")
    async def job(self, kind: str, payload: bytes):
        return await asyncio.get_running_loop().run_in_executor(None, self.runtime.run_job, kind, payload)

    async def deliver(self, sender: str, seq: int, delays, kind: str, src: str, dst: str, method: str,
                      payload: bytes):
        """Take in one message whose fate the router decided.

        ``delays``: of the copies to deliver ([] dropped; None refused, its
        destination being dead). Returns a call's reply, or None when no reply
        gets through.
        """
        loop = asyncio.get_running_loop()
        if self._next.get(sender, 0) != seq:  # an earlier message of this sender is still on its way
            turn = self._turns[(sender, seq)] = loop.create_future()
            await turn
        actor = self.runtime.actors.get(dst)
        dones = []
        if actor is not None:
            for delay in delays or ():
                done = loop.create_future() if kind == "call" else None
                item = ("message", method, payload, done)
                if delay > 0:
                    loop.call_later(delay, actor.post, item)
                else:
                    actor.post(item)
                if done is not None:
                    dones.append(done)
        self._next[sender] = seq + 1
        successor = self._turns.pop((sender, seq + 1), None)
        if successor is not None:
            successor.set_result(None)
        if kind != "call" or delays == []:
            return None
        if delays is None or actor is None:
            return False, encode_error(ActorDiedError(f"actor {dst!r} is dead"))
        for answer in asyncio.as_completed([self._answer(dst, src, method, done) for done in dones]):
            answer = await answer
            if answer is not None:
                return answer
        return None

    async def _answer(self, dst: str, src: str, method: str, done: asyncio.Future):
        """One copy's reply once the router lets it through; None if it drops it."""
        ok, body = await done
        delays = await self.runtime._router.decide.remote("reply", dst, src, method, len(body))
        if not delays:
            return None
        if min(delays) > 0:
            await asyncio.sleep(min(delays))
        return ok, body


class _Router:
    """The one Network every message crosses (see the module docstring)."""

    def __init__(self, seed, trace_size: int):
        self._where: dict[str, str] = {}
        self._dead: set[str] = set()
        self._net = Network(self._where.get, seed=seed, trace_size=trace_size)

    def place(self, where: dict, dead: set) -> None:
        self._where.clear()
        self._where.update(where)
        self._dead = dead

    def decide(self, kind: str, src: str, dst: str, method: str, nbytes: int):
        if dst in self._dead:
            self._net.refuse(kind, src, dst, method, nbytes)
            return None
        return self._net.decide(kind, src, dst, method, nbytes)

    def configure(self, settings: dict) -> None:
        net = self._net
        net.reset()
        if settings["partition"]:
            net.partition(settings["partition"])
        net.set_faults(settings["default"])
        for link, faults in settings["links"].items():
            net.set_faults(faults, link)

    def clock(self) -> float:
        return time.monotonic() - self._net.t0

    def trace(self) -> list:
        return list(self._net.trace)

    def counts(self):
        return self._net.counts()


class _RouterNetwork:
    """The driver's stand-in for the router's Network, for the base class's methods.

    Settings are validated and kept by a local Network, then copied to the
    router; the trace and the counters are read from the router, and kept when
    the cluster stops.
    """

    def __init__(self, router, settings: Network):
        self._router = router
        self._settings = settings
        self._final = None  # (trace, sent, received, links) once stopped
        self.t0 = time.monotonic() - ray.get(router.clock.remote())  # the clock of the trace's time column

    def partition(self, groups) -> None:
        self._settings.partition(groups)
        self._push()

    def heal(self) -> None:
        self._settings.heal()
        self._push()

    def set_faults(self, faults, link=None) -> None:
        self._settings.set_faults(faults, link)
        self._push()

    def settings(self) -> dict:
        return self._settings.settings()

    def _push(self) -> None:
        if self._final is None:
            ray.get(self._router.configure.remote(self.settings()))

    def freeze(self) -> None:
        try:
            self._final = (self.trace, *ray.get(self._router.counts.remote(), timeout=10))
        except RayError:
            self._final = ([], {}, {}, {})

    @property
    def trace(self) -> list:
        return self._final[0] if self._final else ray.get(self._router.trace.remote())

    @property
    def sent(self) -> dict:
        return self._final[1] if self._final else ray.get(self._router.counts.remote())[0]

    @property
    def received(self) -> dict:
        return self._final[2] if self._final else ray.get(self._router.counts.remote())[1]

    @property
    def links(self) -> dict:
        return self._final[3] if self._final else ray.get(self._router.counts.remote())[2]


# -- the driver ------------------------------------------------------------------------

@dataclass(eq=False)
class _HostState:
    """The driver's view of one incarnation of a worker's host."""

    route: _Route
    pid: int = 0
    node: str = ""
    alive: bool = True
    paused: bool = False
    watch: object = None  # the pending watch call (kept so that its callback stays registered)


_HostActor = ray.remote(**_HOST_OPTIONS)(_Host)
_RouterActor = ray.remote(num_cpus=0, max_restarts=0)(_Router)


class RayCluster(_Messenger, Cluster):
    """``Cluster(n, backend="ray", address=None)``: the cluster API on Ray.

    ``address=None`` starts a local Ray bound to 127.0.0.1 (unless this process
    initialised Ray already, which is then used); otherwise it is the address of
    a running Ray cluster to connect to (``"auto"``, ``"host:port"``,
    ``"ray://host:port"``), whose nodes must be able to import mlsys_ext.
    """

    def __init__(self, n=None, backend: str = "ray", *, address: str | None = None, **kwargs):
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be a Ray address such as 'auto' or 'host:6379', got {address!r}")
        super().__init__(n, backend, **kwargs)
        self._hosts: dict[str, _HostState] = {}
        self._incarnations = itertools.count()
        self._poll_lock = threading.Lock()
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="cluster-poller", daemon=True)
        # Host deaths and restarts are handled here, one at a time, off Ray's callback threads.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="cluster-spawner")
        self._owns_ray = False
        self._node = None  # the Ray node of this driver: pause/resume need hosts on it
        self._init_messenger(None, self.timeout)
        try:
            self._owns_ray = _acquire_ray(address)
            self._node = ray.get_runtime_context().get_node_id()
            self._router = _RouterActor.remote(kwargs.get("seed"), self._net.trace.maxlen)
            self._start_hosts(self.workers)
            self._net = _RouterNetwork(self._router, self._net)
        except BaseException:
            self.stop()
            raise
        self._poller.start()

    # -- hosts -------------------------------------------------------------------
    def _start_hosts(self, workers) -> None:
        """Start a new host for each of ``workers`` and tell every host where everyone is."""
        new = []
        for worker in workers:
            actor = _HostActor.remote(worker, self._router, self.timeout)
            new.append(_HostState(_Route(worker, f"{worker}.{next(self._incarnations)}", actor)))
        try:
            started = ray.get([h.route.actor.start.remote() for h in new], timeout=_START_TIMEOUT)
        except RayError as exc:
            for h in new:
                ray.kill(h.route.actor, no_restart=True)
            reason = f" within {_START_TIMEOUT:g} s" if isinstance(exc, GetTimeoutError) else f": {exc}"
            raise ClusterError(f"Ray could not start the worker processes{reason}") from None
        for h, (pid, node) in zip(new, started):
            h.pid, h.node = pid, node
            h.watch = h.route.actor.watch.remote().future()
            h.watch.add_done_callback(lambda _, h=h: self._on_spawner(self._host_died, h, True))
        with self._lock:
            for h in new:
                self._hosts[h.route.worker] = h
        self._publish()

    def _on_spawner(self, fn, *args) -> None:
        try:
            self._spawner.submit(fn, *args)
        except RuntimeError:
            pass  # the cluster is stopping: nothing left to do

    def _locations(self):
        with self._lock:
            names = {name: rec.worker for name, rec in self._actors.items()}
            dead = {name for name, rec in self._actors.items() if rec.state == "dead"}
            routes = {w: h.route for w, h in self._hosts.items() if h.alive}
        return names, dead, routes

    def _publish(self) -> None:
        """Tell the router and every host where each actor lives (after a spawn or a restart)."""
        names, dead, routes = self._locations()
        waits = [self._router.place.remote(names, dead)]
        for h in list(self._hosts.values()):
            if h.alive:
                ref = h.route.actor.update.remote(names, routes)
                if not h.paused:  # a frozen host takes the update when it is resumed
                    waits.append(ref)
        for ref in waits:
            try:
                ray.get(ref, timeout=self.timeout)
            except RayActorError:
                pass  # a host that just died: its watch call reports it

    def _kill_host(self, h: _HostState) -> None:
        try:
            ray.kill(h.route.actor, no_restart=True)
        except RayError:
            pass  # gone already
        if h.paused and h.node == self._node:
            try:
                os.kill(h.pid, signal.SIGKILL)  # Ray's kill leaves a SIGSTOPped process frozen
            except OSError:
                pass

    def _host_died(self, h: _HostState, restart: bool) -> None:
        """Kill host ``h`` (if it is not dead yet) and fail or restart the actors on it."""
        worker = h.route.worker
        with self._lock:
            if not h.alive:
                return
            h.alive = False
            revive, lost = [], []
            for rec in self._actors.values():
                if rec.worker != worker:
                    continue
                if restart and not self.stopped and rec.can_restart and rec.state != "dead":
                    rec.state = "restarting"
                    revive.append(rec)
                else:
                    rec.state = "dead"
                    lost += rec.held
                    rec.held = []
        self._kill_host(h)
        if not self.stopped:
            names, dead, _ = self._locations()
            self._router.place.remote(names, dead)  # messages to the dead are refused from now on
        on_host = {rec.name for rec in self._actors.values() if rec.worker == worker}
        for fut in [f for f in list(self._pending.values()) if f.actor in on_host]:
            if self._pending.pop(fut._id, None) is not None:
                fut._resolve(error=ActorDiedError(
                    f"actor {fut.actor!r} is dead: worker {worker} died before it answered {fut.method}"))
        for _, _, _, fut in lost:
            if fut is not None:
                fut._resolve(error=ActorDiedError(f"actor {fut.actor!r} is dead (worker {worker} died)"))
        self._changed("died")
        if revive:
            self._on_spawner(self._revive, worker, revive)

    def _revive(self, worker: str, recs: list[ActorRecord]) -> None:
        """Start ``worker`` again and rebuild ``recs`` on it from their original arguments."""
        if self.stopped:
            return
        old = self._hosts.get(worker)
        if old is not None and old.alive:  # restart() raced with an automatic restart
            old.alive = False
            self._kill_host(old)
        try:
            self._start_hosts([worker])
        except Exception as exc:
            self._give_up(recs, exc)
            return
        for rec in recs:
            rec.restarts += 1
            rec.state = "restarting"
            try:
                self._start_actor(rec)
            except Exception as exc:
                self._give_up([rec], exc)
        self._changed("restart")

    def _give_up(self, recs: list[ActorRecord], exc: BaseException) -> None:
        for rec in recs:
            with self._lock:
                rec.state = "dead"
                lost, rec.held = rec.held, []
            for _, _, _, fut in lost:
                if fut is not None:
                    fut._resolve(error=ActorDiedError(f"actor {rec.name!r} could not be restarted: {exc}"))
            print(f"mlsys_ext: could not restart actor {rec.name!r}: {exc}", file=sys.stderr)

    def _worker_alive(self, worker: str) -> bool:
        h = self._hosts.get(worker)
        return h is not None and h.alive

    def _pid(self, rec: ActorRecord):
        h = self._hosts.get(rec.worker)
        return h.pid if h is not None and h.alive else None

    # -- actors ------------------------------------------------------------------
    def _start_actor(self, rec: ActorRecord) -> None:
        h = self._hosts.get(rec.worker)
        if h is None or not h.alive:
            raise ActorDiedError(f"worker {rec.worker} is dead: restart it with cluster.restart({rec.worker!r})")
        spawned = h.route.actor.spawn.remote(rec.name, rec.payload)
        try:
            ok, body = ray.get(spawned, timeout=self.timeout)
        except GetTimeoutError:
            ray.cancel(spawned)  # the host drops the actor when its constructor returns
            raise spawn_timeout_error(rec.name, rec.worker, self.timeout) from None
        except RayActorError:
            raise ActorDiedError(f"worker {rec.worker} died while starting actor {rec.name!r}") from None
        if not ok:
            with decoding_for(self):
                raise decode_error(body)
        received = self._net.received.get(rec.name, 0)
        with self._lock:
            rec.processed = 0
            rec.received_base = received
            rec.state = "paused" if h.paused else "alive"
            held, rec.held = rec.held, []
        self._publish()
        for kind, method, payload, fut in held:
            self._post(h.route, kind, DRIVER, rec.name, method, payload, fut)

    def put(self, obj):
        raise ClusterError("cluster.put is on the local backend only, for now: on Ray, pass the object "
                           "itself (Ray's own serialisation moves arrays)")

    def shared_memory(self):
        raise ClusterError("on the Ray backend arrays travel through Ray's object store (`ray memory` lists "
                           "what it holds), not through this cluster's shared memory")

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        rec = self._callable(dst, oneway)
        if rec.state == "dead":
            return failed_future(self, dst, method, self._dead_error(dst))
        payload = dumps((args, kwargs))
        kind = "send" if oneway else "call"
        fut = None if oneway else self._new_future(dst, method)
        with self._lock:
            if rec.state == "restarting":  # held until the actor is back, as in the local backend
                rec.held.append((kind, method, payload, fut))
                return fut
            route = self._hosts[rec.worker].route
        self._post(route, kind, DRIVER, dst, method, payload, fut)
        return fut

    # -- faults ------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """Kill the host of worker ``name``, or of the worker hosting actor ``name``.

        Every actor on it dies; those with restarts left come back by themselves.
        """
        self._check_open()
        self._host_died(self._hosts[self._worker_of(name)], restart=True)

    def restart(self, name: str) -> None:
        """Kill (if alive) and start again the worker ``name`` or the worker of actor ``name``,
        rebuilding every actor placed on it. Returns once they are running."""
        self._check_open()
        worker = self._worker_of(name)
        self._host_died(self._hosts[worker], restart=False)
        with self._lock:
            recs = [rec for rec in self._actors.values() if rec.worker == worker]
            for rec in recs:
                rec.state = "restarting"
        self._spawner.submit(self._revive, worker, recs).result()

    def _signal(self, name: str, sig: int, paused: bool) -> None:
        self._check_open()
        h = self._hosts[self._worker_of(name)]
        worker = h.route.worker
        if not h.alive:
            raise ActorDiedError(f"worker {worker} is dead: restart it with cluster.restart({worker!r})")
        if h.node != self._node:
            raise ClusterError(
                f"pause/resume freeze a worker's process with SIGSTOP/SIGCONT, but {worker} runs on "
                "another machine of the Ray cluster, and Ray cannot freeze an actor"
            )
        os.kill(h.pid, sig)
        wait_for_stop_state(h.pid, paused)
        with self._lock:
            h.paused = paused
            for rec in self._actors.values():
                if rec.worker == worker and rec.state in ("alive", "paused"):
                    rec.state = "paused" if paused else "alive"
        self._changed("pause" if paused else "resume")

    def pause(self, name: str) -> None:
        """SIGSTOP the worker (or the worker of actor ``name``): a frozen machine.

        Only for workers on this machine; refused with ClusterError otherwise."""
        self._signal(name, signal.SIGSTOP, True)

    def resume(self, name: str) -> None:
        """SIGCONT a paused worker; the messages sent to it meanwhile are delivered."""
        self._signal(name, signal.SIGCONT, False)

    # -- observation ---------------------------------------------------------------
    def _poll(self) -> None:
        """Pull each live host's counters and what its actors printed."""
        with self._poll_lock:
            hosts = [h for h in list(self._hosts.values()) if h.alive and not h.paused]
            asks = [(h, h.route.actor.poll.remote()) for h in hosts]
            for h, ref in asks:
                try:
                    counts, logs = ray.get(ref, timeout=2.0)
                except RayError:  # dead, or too busy to answer now
                    continue
                for name, count in counts.items():
                    rec = self._actors.get(name)
                    if rec is not None and rec.worker == h.route.worker:
                        rec.processed = count
                for name, stream, text in logs:
                    rec = self._actors.get(name)
                    if rec is not None:
                        self._echo(rec, stream, text)

    def _poll_loop(self) -> None:
        while not self._stop_polling.wait(_POLL_SECONDS):
            self._poll()

    def _refresh_stats(self) -> None:
        if not self.stopped:
            self._poll()

    def logs(self, name: str) -> str:
        """Everything actor ``name`` printed (the most recent lines)."""
        self._refresh_stats()
        return super().logs(name)

    # -- code on workers -------------------------------------------------------------
    def _targets(self, targets) -> list[_HostState]:
        if targets is None:
            return [h for h in self._hosts.values() if h.alive]
        names = [targets] if isinstance(targets, str) else list(targets)
        out = []
        for name in names:
            h = self._hosts[self._worker_of(name)]
            if not h.alive:
                raise ActorDiedError(f"worker {h.route.worker} is dead")
            out.append(h)
        return out

    def _jobs(self, targets, kind: str, payload: bytes, timeout) -> dict[str, WorkerResult]:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        asks = [(h.route.worker, h.route.actor.job.remote(kind, payload)) for h in self._targets(targets)]
        results = {}
        for worker, ref in asks:
            try:
                ok, body = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
                with decoding_for(self):
                    if not ok:
                        raise decode_error(body)
                    value, printed = loads(body)
                results[worker] = WorkerResult(value, None, printed)
            except GetTimeoutError:
                results[worker] = WorkerResult(None, job_timeout_error(worker, kind, timeout), "")
            except RayActorError:
                results[worker] = WorkerResult(None, ActorDiedError(f"worker {worker} died"), "")
            except Exception as exc:
                results[worker] = WorkerResult(None, exc, "")
        return results

    # -- lifetime ----------------------------------------------------------------
    def stop(self) -> None:
        """Kill every host (and the router), fail pending calls; shut Ray down if we started it."""
        if self.stopped:
            return
        self.stopped = True
        self._stop_polling.set()
        if self._poller.is_alive() and threading.current_thread() is not self._poller:
            self._poller.join()
        self._spawner.shutdown(wait=True, cancel_futures=True)  # no restart may start after this
        # At interpreter exit Ray's own atexit hook may have shut it down already.
        ray_up = ray.is_initialized()
        if ray_up and isinstance(self._net, _RouterNetwork):
            self._poll()  # the last printed lines
            self._net.freeze()
        with self._lock:
            lost = []
            for rec in self._actors.values():
                rec.state = "dead"
                lost += rec.held
                rec.held = []
            hosts = [h for h in self._hosts.values() if h.alive]
            for h in hosts:
                h.alive = False
        error = ClusterError("the cluster was stopped")
        for fut in list(self._pending.values()) + [held[3] for held in lost]:
            if fut is not None:
                fut._resolve(error=error)
        self._pending.clear()
        if ray_up:
            for h in hosts:
                self._kill_host(h)
            if self._router is not None:
                ray.kill(self._router, no_restart=True)
            wait_for_exit([h.pid for h in hosts if h.node == self._node])
        _release_ray(self._owns_ray)
        self._changed("stop")
