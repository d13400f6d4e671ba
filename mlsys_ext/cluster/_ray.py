"""The Ray backend: the same actors, faulty network and trace, on Ray.

Design
------
* Each worker (w0 .. w{n-1}) is one Ray actor, a ``_Host`` asking for no CPU
  (``num_cpus=0``), so any number of workers fits on a small machine. A host
  runs each actor placed on it on a thread of its own that serves the actor's
  mailbox, as a local worker does: an actor's methods never run concurrently,
  and an actor blocked on a call leaves its neighbours running. Killing a
  worker is ``ray.kill`` of its host, so every actor on it dies.
* Each message's fate is decided where it is sent, as on the local backend:
  the driver's ``Network`` decides its calls and the replies to them, and each
  host keeps a copy that decides what its actors send (calls, sends and their
  replies). The driver pushes every change of partition and link faults to
  every host and waits for each, so a change is in force before
  ``partition()`` / ``set_network()`` return. A message that gets through is
  one Ray actor call to the destination host, carrying its fate (the delays of
  its copies); the host delays or duplicates it, and a call's reply comes back
  as that call's Ray result. Fates are drawn per link from the cluster's seed,
  so they do not depend on which process decides them. The hosts' trace rows
  and counters are pulled by the driver and merged by time (CLOCK_MONOTONIC,
  one clock for the processes of one machine).
* ``cluster.put`` is ``ray.put``. A ref inside a message travels beside its
  pickle as Ray's own ObjectRef, so Ray counts the receiver's reference, and
  the host fetches it on arrival (on one machine, arrays are read-only views of
  the object store's pages).
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

Messages to an actor that is being restarted are held until it is back, by the
driver and by hosts alike, as on the local backend.

Differences from the local backend: ``shared_memory()`` is refused, since arrays
live in Ray's object store (``ray memory`` lists it). Started here, Ray binds to 127.0.0.1 and
is shut down when the last cluster using it stops; a Ray the process had
already initialised is used as it is and left running.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import pickle
import queue
import signal
import sys
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import cloudpickle
import ray
from ray._private import ray_constants
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from ._actor import ActorShell, CapturedOutput, Timers, current, run_job
from ._cluster import ActorRecord, Cluster, WorkerResult, job_timeout_error, spawn_timeout_error
from ._context import ActorContext
from ._errors import ActorDiedError, ClusterError, died_before_answering
from ._future import Future, failed_future
from ._handle import decoding_for, set_process_runtime
from ._network import DRIVER, Delayer, Network
from ._process import wait_for_exit, wait_for_stop_state
from ._wire import ObjectRef, decode_error, encode_error, is_plain, loads

_POLL_SECONDS = 0.2  # how often the driver pulls counters, trace rows and printed output
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


# -- object refs ----------------------------------------------------------------------

class RayObjectRef(ObjectRef):
    """``cluster.put(obj)`` on the Ray backend: ``obj`` once in Ray's object store. Passed to
    actors, it is resolved on arrival; on one machine their arrays are read-only views of
    the same pages. Ray counts the references: the object is freed with the last one."""

    __slots__ = ("_ref",)

    def __init__(self, ref: ray.ObjectRef):
        super().__init__(b"", None)
        self._ref = ref

    def get(self):
        if self._ref is None:
            raise ValueError("this ObjectRef was released when its cluster stopped")
        return ray.get(self._ref)

    def release(self) -> None:
        self._ref = None

    def __repr__(self) -> str:
        return f"<ObjectRef {'released' if self._ref is None else 'in Ray'}>"


class _RefPickler(cloudpickle.Pickler):
    """cloudpickle that lifts RayObjectRefs out of the stream, to travel as Ray's own refs."""

    def __init__(self, file, refs: list):
        super().__init__(file, protocol=5)
        self.refs = refs

    def persistent_id(self, obj):
        if type(obj) is not RayObjectRef:
            return None
        if obj._ref is None:
            raise ValueError("an ObjectRef released when its cluster stopped cannot be sent")
        self.refs.append(obj._ref)
        return len(self.refs) - 1


class _RefUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, objects: list):
        super().__init__(io.BytesIO(data))
        self.objects = objects

    def persistent_load(self, index):
        return self.objects[index]


class _WithRefs:
    """A payload with object refs inside: Ray's serialisation carries the refs beside the
    pickle, so that Ray knows the receiver holds them until it has resolved them."""

    __slots__ = ("data", "refs", "objects", "error")

    def __init__(self, data: bytes, refs: list):
        self.data, self.refs, self.objects, self.error = data, refs, None, None

    def __len__(self) -> int:
        return len(self.data)

    async def resolve(self) -> None:
        """Fetch the refs' objects (on arrival, in the host's event loop, never blocking it).
        An object Ray lost fails the method's call, as arguments that cannot be rebuilt do."""
        try:
            self.objects = await asyncio.gather(*self.refs)
        except RayError as exc:
            self.error = exc

    def load(self):
        if self.error is not None:
            raise ClusterError(f"an ObjectRef argument could not be fetched from Ray: {self.error}")
        return _RefUnpickler(self.data, self.objects).load()


def _encode(obj):
    """``obj`` pickled as ``dumps`` does; with the refs inside it beside, if any."""
    if is_plain(obj):
        return pickle.dumps(obj, 5)
    refs, out = [], io.BytesIO()
    _RefPickler(out, refs).dump(obj)
    return _WithRefs(out.getvalue(), refs) if refs else out.getvalue()


# -- sending ------------------------------------------------------------------------

class _Route(NamedTuple):
    """Where a worker's actors are reached."""

    worker: str
    key: str  # one incarnation of the host: a restarted worker starts its sequences afresh
    actor: object  # the host's Ray actor handle


class _Messenger:
    """Deciding fates, sending and waiting for replies: the driver and each host do all three."""

    def _init_messenger(self, timeout: float) -> None:
        self.timeout = timeout
        self._sender = uuid.uuid4().hex
        self._seqs: dict[str, itertools.count] = {}
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}

    def _new_future(self, dst: str, method: str) -> Future:
        return Future(self, dst, method, next(self._ids))

    def _post(self, route: _Route, kind: str, src: str, dst: str, method: str, payload, fut) -> None:
        """Decide the message's fate here and, unless it is dropped, send it: one Ray call."""
        if fut is not None:
            self._pending[fut._id] = fut
        delays = self._net.decide(kind, src, dst, method, len(payload))
        if not delays:
            return  # dropped at its sender: a call's caller times out
        with self._send_lock:  # sequence numbers must reach Ray in the order they are drawn
            seq = next(self._seqs.setdefault(route.key, itertools.count()))
            # one argument for the header: Ray serialises each argument apart (~5 us each)
            ref = route.actor.deliver.remote((self._sender, seq, delays, kind, src, dst, method), payload)
        if fut is not None:
            ref.future().add_done_callback(lambda done: self._on_reply(fut, src, route.worker, done))

    def _on_reply(self, fut: Future, src: str, worker: str, done) -> None:
        """Runs on a Ray thread when a call's Ray task ends: decode, never call Ray."""
        try:
            answer = done.result()
        except RayActorError:
            answer = died_before_answering(fut.actor, worker, fut.method)
        except Exception as exc:  # a failure of the transport itself, reported to the caller
            answer = ClusterError(f"{fut.actor}.{fut.method} failed in Ray: {exc}")
        if answer is None:
            return  # the reply was dropped: the caller times out
        if isinstance(answer, Exception):
            if self._pending.pop(fut._id, None) is not None:
                fut._resolve(error=answer)
            return
        if src == DRIVER:  # the driver decides the fates of the replies to its calls, as of the calls
            delays = self._net.decide("reply", fut.actor, DRIVER, fut.method, len(answer[1]))
            if not delays:
                return
            if min(delays) > 0:
                self._delayer.post(min(delays), self._take_reply, fut, src, answer)
                return
        self._take_reply(fut, src, answer)

    def _take_reply(self, fut: Future, src: str, answer) -> None:
        if self._pending.pop(fut._id, None) is None:
            return  # the caller gave up waiting, or the cluster stopped
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
        self.ended = False

    def post(self, item) -> None:
        self.mailbox.put(item)
        if self.ended:  # a copy delayed past the actor's end: answered, not left waiting
            self._refuse_queued()

    def end(self) -> None:
        """Serve no more messages after the one running (a spawn given up on, a removed actor)."""
        self.ended = True
        self.mailbox.put(("end",))  # wakes the serving thread

    def _refuse_queued(self) -> None:
        while True:
            try:
                self._refuse(self.mailbox.get_nowait())
            except queue.Empty:
                return

    def _refuse(self, item) -> None:
        if item[0] == "message" and item[3] is not None:
            _settle(item[3], (False, encode_error(ActorDiedError(f"actor {self.name!r} was removed"))))

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
            if self.ended:  # what is queued behind the end is refused too
                self._refuse(item)
                self._refuse_queued()
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

    def __init__(self, worker: str, network: tuple, seed, trace_size: int, t0: float, timeout: float):
        self._init_messenger(timeout)
        self.name = worker
        self.actors: dict[str, _Hosted] = {}
        self.names: dict[str, str] = {}  # actor -> worker, for the whole cluster
        self.dead: set[str] = set()  # actors that will not come back: messages to them are refused
        self.routes: dict[str, _Route] = {}
        self._held: list[tuple] = []  # messages to actors being restarted, sent when they are back
        self._locations_lock = threading.Lock()  # names, dead, routes and _held change together
        self._net = Network(lambda name: self.names.get(name), seed=seed, trace_size=trace_size, t0=t0)
        self._net.load(network)
        self.namespace: dict = {"__name__": "__cluster__", "worker": worker}
        self.timers = Timers(self.actors)
        self.timers.start()
        self._logs: list[tuple[str, str, str]] = []
        self._logs_lock = threading.Lock()

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        caller = getattr(current, "actor", None)
        if caller is None:
            raise ClusterError("actor calls inside a worker must be made from an actor's method")
        payload = _encode((args, kwargs))
        kind = "send" if oneway else "call"
        with self._locations_lock:
            if dst not in self.names or dst in self.dead:
                return self._refuse(kind, caller.name, dst, method, payload)
            fut = None if oneway else self._new_future(dst, method)
            route = self.routes.get(self.names[dst])
            if route is None:  # its worker is down and being restarted: held until it is back
                if fut is not None:
                    self._pending[fut._id] = fut  # so that the caller's timeout takes it back
                self._held.append((kind, caller.name, dst, method, payload, fut))
                return fut
        self._post(route, kind, caller.name, dst, method, payload, fut)
        return fut

    def _refuse(self, kind: str, src: str, dst: str, method: str, payload, fut=None):
        """A message to an actor that is dead or was never spawned; a call's future fails."""
        why = "does not exist" if dst not in self.names else "is dead"
        if dst in self.names:
            self._net.refuse(kind, src, dst, method, len(payload))
        if kind == "send":
            return None  # as on the local backend, a message to no one is lost
        error = ActorDiedError(f"actor {dst!r} {why}")
        if fut is None:
            return failed_future(self, dst, method, error)
        if self._pending.pop(fut._id, None) is not None:
            fut._resolve(error=error)
        return fut

    def set_locations(self, names: dict, dead: set, routes: dict) -> None:
        """Where every actor lives now; held messages go to the actors that are back, and
        those to actors that will not come back fail."""
        with self._locations_lock:
            self.names, self.dead, self.routes = names, dead, routes
            held, self._held = self._held, []
            for kind, src, dst, method, payload, fut in held:
                if fut is not None and fut._id not in self._pending:
                    continue  # its caller stopped waiting
                if dst not in names or dst in dead:
                    self._refuse(kind, src, dst, method, payload, fut)
                elif routes.get(names[dst]) is None:
                    self._held.append((kind, src, dst, method, payload, fut))
                else:
                    self._post(routes[names[dst]], kind, src, dst, method, payload, fut)

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

    def __init__(self, worker: str, network: tuple, seed, trace_size: int, t0: float, timeout: float):
        self.runtime = _HostRuntime(worker, network, seed, trace_size, t0, timeout)
        set_process_runtime(self.runtime)
        sys.stdout = CapturedOutput(sys.stdout, "stdout")
        sys.stderr = CapturedOutput(sys.stderr, "stderr")
        self._next: dict[str, int] = {}  # sender -> sequence number of the next message to take in
        self._turns: dict[tuple[str, int], asyncio.Future] = {}  # messages waiting for an earlier one

    @ray.method(concurrency_group="control")
    async def start(self):
        return os.getpid(), ray.get_runtime_context().get_node_id()

    @ray.method(concurrency_group="control")
    async def update(self, names: dict, dead: set, routes: dict) -> None:
        self.runtime.set_locations(names, dead, routes)

    @ray.method(concurrency_group="control")
    async def configure(self, network: tuple) -> None:
        """The driver's network settings (``Network.export``), for every message sent from now on."""
        self.runtime._net.load(network)

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
        actor.end()

    @ray.method(concurrency_group="control")
    async def remove(self, name: str) -> None:
        actor = self.runtime.actors.get(name)
        if actor is not None:
            self._drop(name, actor)

    @ray.method(concurrency_group="control")
    async def poll(self):
        """Each actor's messages taken in, what they printed, and what this host's Network
        counted and recorded since the last poll."""
        runtime = self.runtime
        processed = {name: a.processed + a.replies for name, a in runtime.actors.items()}
        return processed, runtime.take_logs(), runtime._net.counts(), runtime._net.take_trace()

    @ray.method(concurrency_group="control")
    async def job(self, kind: str, payload: bytes):
        return await asyncio.get_running_loop().run_in_executor(None, self.runtime.run_job, kind, payload)

    async def deliver(self, header: tuple, payload: bytes):
        """Take in one message whose fate its sender decided: ``delays`` of the copies to
        deliver. ``header``: (sender, its sequence number, delays, kind, src, dst, method).
        Returns a call's reply, or None when no reply gets through."""
        sender, seq, delays, kind, src, dst, method = header
        loop = asyncio.get_running_loop()
        if type(payload) is _WithRefs:
            await payload.resolve()
        if self._next.get(sender, 0) != seq:  # an earlier message of this sender is still on its way
            turn = self._turns[(sender, seq)] = loop.create_future()
            await turn
        actor = self.runtime.actors.get(dst)
        dones = []
        if actor is not None:
            for delay in delays:
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
        if kind != "call":
            return None
        if actor is None:
            return False, encode_error(ActorDiedError(f"actor {dst!r} is dead"))
        if len(dones) == 1:  # the usual case, without as_completed's tasks
            return await self._answer(dst, src, method, dones[0])
        for answer in asyncio.as_completed([self._answer(dst, src, method, done) for done in dones]):
            answer = await answer
            if answer is not None:
                return answer
        return None

    async def _answer(self, dst: str, src: str, method: str, done: asyncio.Future):
        """One copy's reply, once its fate lets it through (None if dropped). The driver
        decides the fates of the replies to its own calls."""
        ok, body = await done
        if src == DRIVER:
            return ok, body
        delays = self.runtime._net.decide("reply", dst, src, method, len(body))
        if not delays:
            return None
        if min(delays) > 0:
            await asyncio.sleep(min(delays))
        return ok, body


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
    counts: tuple = ({}, {}, {})  # (sent, received, links) as its Network last reported them


_HostActor = ray.remote(**_HOST_OPTIONS)(_Host)


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
        self._init_messenger(self.timeout)
        self._delayer = Delayer()  # delayed replies to the driver's calls
        self._refs: weakref.WeakSet[RayObjectRef] = weakref.WeakSet()  # released at stop()
        self._delayer.start()
        try:
            self._owns_ray = _acquire_ray(address)
            self._node = ray.get_runtime_context().get_node_id()
            self._start_hosts(self.workers)
        except BaseException:
            self.stop()
            raise
        self._poller.start()

    # -- hosts -------------------------------------------------------------------
    def _start_hosts(self, workers) -> None:
        """Start a new host for each of ``workers`` (with the network settings in force) and
        tell every host where everyone is."""
        new, net = [], self._net
        for worker in workers:
            actor = _HostActor.remote(worker, net.export(), net.seed, net.trace.maxlen, net.t0, self.timeout)
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
        """(actor -> worker, dead actors, worker -> route) for the hosts; an actor being
        restarted has no worker yet, so that hosts hold what is sent to it."""
        with self._lock:
            names = {name: None if rec.state == "restarting" else rec.worker for name, rec in self._actors.items()}
            dead = {name for name, rec in self._actors.items() if rec.state == "dead"}
            routes = {w: h.route for w, h in self._hosts.items() if h.alive}
        return names, dead, routes

    def _publish(self) -> None:
        """Tell every host where each actor lives and which are dead (after a spawn, a death
        or a restart); returns once each live host that can answer has it."""
        names, dead, routes = self._locations()
        self._ask_hosts(lambda host: host.update.remote(names, dead, routes))

    def _push_network(self, hosts=None) -> None:
        """Hand the driver's network settings to every live host (or ``hosts``); returns once
        each has them, so they decide every message sent afterwards. A paused host takes
        them when it is resumed (``resume`` waits for that)."""
        network = self._net.export()
        self._ask_hosts(lambda host: host.configure.remote(network), hosts)

    def _ask_hosts(self, ask, hosts=None) -> None:
        waits = []
        for h in list(self._hosts.values()) if hosts is None else hosts:
            if h.alive:
                ref = ask(h.route.actor)
                if not h.paused:  # a frozen host takes it in when it is resumed
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
        self._retire(h.counts)
        self._kill_host(h)
        if not self.stopped:
            self._publish()  # messages to the dead are refused at their senders from now on
        on_host = {rec.name for rec in self._actors.values() if rec.worker == worker}
        for fut in [f for f in list(self._pending.values()) if f.actor in on_host]:
            if self._pending.pop(fut._id, None) is not None:
                fut._resolve(error=died_before_answering(fut.actor, worker, fut.method))
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
        received = self._message_counts()[1].get(rec.name, 0)
        with self._lock:
            rec.processed = 0
            rec.received_base = received
            rec.state = "paused" if h.paused else "alive"
            held, rec.held = rec.held, []
        self._publish()
        for kind, method, payload, fut in held:
            self._post(h.route, kind, DRIVER, rec.name, method, payload, fut)

    def _remove_actor(self, rec: ActorRecord) -> None:
        with self._lock:
            held, rec.held = rec.held, []
        for _, _, _, fut in held:
            if fut is not None:
                fut._resolve(error=ActorDiedError(f"actor {rec.name!r} was removed"))
        self._publish()  # from now on hosts refuse messages to it at their senders
        h = self._hosts.get(rec.worker)
        if h is not None and h.alive:
            ref = h.route.actor.remove.remote(rec.name)
            if not h.paused:  # a frozen host drops it when it is resumed
                with contextlib.suppress(RayActorError):
                    ray.get(ref, timeout=self.timeout)

    def put(self, obj) -> RayObjectRef:
        self._check_open()
        ref = RayObjectRef(ray.put(obj))
        self._refs.add(ref)
        return ref

    def shared_memory(self):
        raise ClusterError("on the Ray backend arrays travel through Ray's object store (`ray memory` lists "
                           "what it holds), not through this cluster's shared memory")

    def _call(self, dst: str, method: str, args, kwargs, oneway: bool):
        rec = self._callable(dst, oneway)
        if rec.state == "dead":
            return failed_future(self, dst, method, self._dead_error(dst))
        payload = _encode((args, kwargs))
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
        h = self._hosts[self._worker_of(name)]
        self._poll([h])  # what its actors sent is in its trace
        self._host_died(h, restart=True)

    def restart(self, name: str) -> None:
        """Kill (if alive) and start again the worker ``name`` or the worker of actor ``name``,
        rebuilding every actor placed on it. Returns once they are running."""
        self._check_open()
        worker = self._worker_of(name)
        self._poll([self._hosts[worker]])
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
        if not paused:  # what the driver told it while it was frozen, taken in before its next message
            self._push_network([h])
            self._publish()
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
    def _poll(self, hosts=None) -> None:
        """Pull each live host's (or ``hosts``') counters, trace rows and what its actors printed."""
        with self._poll_lock:
            hosts = [h for h in (list(self._hosts.values()) if hosts is None else hosts) if h.alive and not h.paused]
            asks = [(h, h.route.actor.poll.remote()) for h in hosts]
            for h, ref in asks:
                try:
                    processed, logs, h.counts, rows = ray.get(ref, timeout=2.0)
                except RayError:  # dead, or too busy to answer now
                    continue
                self._add_rows(rows)
                for name, count in processed.items():
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

    def _worker_counts(self) -> list[tuple[dict, dict, dict]]:
        return [h.counts for h in list(self._hosts.values()) if h.alive]

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
        """Kill every host, fail pending calls; shut Ray down if we started it."""
        if self.stopped:
            return
        self.stopped = True
        self._stop_polling.set()
        if self._poller.is_alive() and threading.current_thread() is not self._poller:
            self._poller.join()
        self._spawner.shutdown(wait=True, cancel_futures=True)  # no restart may start after this
        # At interpreter exit Ray's own atexit hook may have shut it down already.
        ray_up = ray.is_initialized()
        if ray_up:
            self._poll()  # the last printed lines and trace rows
        with self._lock:
            lost = []
            for rec in self._actors.values():
                rec.state = "dead"
                lost += rec.held
                rec.held = []
            hosts = [h for h in self._hosts.values() if h.alive]
            for h in hosts:
                h.alive = False
                self._retire(h.counts)  # the counters and trace stay readable after stop()
        self._delayer.stop()
        for ref in list(self._refs):
            ref.release()
        error = ClusterError("the cluster was stopped")
        for fut in list(self._pending.values()) + [held[3] for held in lost]:
            if fut is not None:
                fut._resolve(error=error)
        self._pending.clear()
        if ray_up:
            for h in hosts:
                self._kill_host(h)
            wait_for_exit([h.pid for h in hosts if h.node == self._node])
        _release_ray(self._owns_ray)
        self._changed("stop")
