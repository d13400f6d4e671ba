"""World 1: a deterministic simulator of a Raft cluster in simulated time.

One event queue orders everything: each node's ticks, each message's delivery, each
client call. Every random choice (delays, losses, election timeouts) comes from RNGs
seeded by ``seed``, in event order, so the same seed gives the same run bit for bit.
A node's disk is its ``MemoryStorage``: the simulator saves every Ready before it
sends the Ready's messages, so a crash keeps exactly what was persisted.

The network follows the classic Raft course labs: reliable means 0.5-2 ms delays;
unreliable adds 0-27 ms and loses 10% of requests and 10% of replies; long
reordering holds back two replies in three by 200-2200 ms. A disconnected node, or
one on the far side of a partition, gets nothing and is heard by no one; a client
calling it learns so only after a delay, as over a real network.
"""
from __future__ import annotations

import heapq
import itertools
import pickle
import random
from dataclasses import dataclass

import pandas as pd

from ._config import RaftConfig
from ._kv import KVOperations, KVStore, encode_command
from ._node import RaftNode
from ._storage import MemoryStorage
from ._types import ENTRY_NORMAL, NotLeader, ProposalDropped, Snapshot

RELIABLE_DELAY = (0.0005, 0.002)
UNRELIABLE_DELAY = (0.0, 0.027)
UNRELIABLE_DROP = 0.1
RESPONSES = frozenset({"append_resp", "heartbeat_resp", "vote_resp", "prevote_resp", "read_index_resp"})
HARD_STATE_BYTES = 24  # term, vote, commit: three 8-byte integers
CLIENT_TIMEOUT = 1.0  # simulated seconds a KV client waits for an answer before it tries another server
FAILED_CALL_DELAY = (0.0, 0.1)  # a call to an unreachable server fails after this long


class Simulation:
    """A Raft cluster of ``n`` nodes in simulated time (see the module docstring)."""

    def __init__(self, n: int = 5, seed: int = 0, config: RaftConfig | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.n = n
        self.seed = seed
        self.config = config or RaftConfig()
        self.now = 0.0
        self._rng = random.Random(f"network/{seed}")
        self._queue: list = []
        self._order = itertools.count()
        self._storages = [MemoryStorage() for _ in range(n)]
        self._nodes: list[RaftNode | None] = [None] * n
        self._incarnation = [0] * n
        self._applied: list[list] = [[] for _ in range(n)]
        self._stores: list[KVStore] = [KVStore() for _ in range(n)]
        self._waiters: list[dict] = [{} for _ in range(n)]  # index -> (command bytes, reply callback)
        self._connected = [True] * n
        self._group = [0] * n  # partition: nodes talk only within their group
        self._drop = 0.0
        self._delay_range = RELIABLE_DELAY
        self._long_reordering = False
        self._rpc_count = [0] * n
        self._bytes_sent = [0] * n
        self._events: list[tuple] = []
        self._last_term = [0] * n
        self._clients: list[KVClient] = []
        self._snapshot_every: int | None = None
        self._history: list[dict] = []
        for i in range(n):
            self._boot(i)

    # ---- time ---------------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        """Advance simulated time by ``seconds``, running every event due until then."""
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        end = self.now + seconds
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, action, args = heapq.heappop(queue)
            self.now = when
            action(*args)
        self.now = end

    def _at(self, delay: float, action, *args) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._order), action, args))

    # ---- nodes ----------------------------------------------------------------------------------

    def _boot(self, i: int) -> None:
        rng = random.Random(f"node/{self.seed}/{i}/{self._incarnation[i]}")
        self._nodes[i] = RaftNode(i, range(self.n), self.config, self._storages[i], rng)
        self._applied[i] = []
        snapshot = self._storages[i].snapshot
        self._stores[i] = KVStore.restore(snapshot.data) if snapshot.index and self._clients else KVStore()
        self._waiters[i] = {}
        # ticks out of phase between nodes, as real clocks are
        self._at(self._rng.uniform(0, self.config.tick), self._tick, i, self._incarnation[i])

    def _tick(self, i: int, incarnation: int) -> None:
        if incarnation != self._incarnation[i]:
            return
        self._nodes[i].tick()
        self._process(i)
        self._at(self.config.tick, self._tick, i, incarnation)

    def _process(self, i: int) -> None:
        """Handle node i's Ready batches: persist, send, apply, acknowledge."""
        node, storage = self._nodes[i], self._storages[i]
        while node.has_ready():
            ready = node.ready()
            storage.save(ready)
            if ready.hard_state is not None and ready.hard_state.term != self._last_term[i]:
                self._last_term[i] = ready.hard_state.term
                self._event(i, "term", ready.hard_state.term, "")
            if ready.soft_state is not None:
                self._event(i, "role", node.term, f"{ready.soft_state.role}, leader {ready.soft_state.leader}")
            for message in ready.messages:
                self._send(message)
            if ready.snapshot is not None:
                self._install(i, ready.snapshot)
            for entry in ready.committed_entries:
                self._apply(i, entry)
            node.advance(ready)

    def _install(self, i: int, snapshot: Snapshot) -> None:
        self._applied[i].append((snapshot.index, snapshot))
        if self._clients:
            self._stores[i] = KVStore.restore(snapshot.data)
            # Clients waiting on indexes the snapshot covers retry; the store's
            # duplicate table gives a command that did commit its first output.
            for index in [at for at in self._waiters[i] if at <= snapshot.index]:
                self._waiters[i].pop(index)[1](("wrong leader", None))
        self._event(i, "snapshot", self._nodes[i].term, f"installed up to {snapshot.index}")

    def _apply(self, i: int, entry) -> None:
        is_command = entry.kind == ENTRY_NORMAL and bool(entry.data)  # not a membership change or leader's empty entry
        if not self._clients:
            if is_command:
                self._applied[i].append((entry.index, pickle.loads(entry.data)))  # made by start(), this session
            return
        output = None
        if is_command:
            output = self._stores[i].apply(entry.data)
            self._applied[i].append((entry.index, entry.data))
            if self._snapshot_every and entry.index - self._storages[i].snapshot.index >= self._snapshot_every:
                # the service hands Raft its state; the node compacts once this Ready is done
                self._at(0.0, self._service_snapshot, i, self._incarnation[i], entry.index, self._stores[i].snapshot())
        # whatever entry takes the index answers the client waiting on it, a new leader's empty entry too
        waiter = self._waiters[i].pop(entry.index, None)
        if waiter is not None:
            expected, reply = waiter
            reply(("ok", output) if entry.data == expected else ("wrong leader", None))  # never an empty entry

    def _event(self, node: int | None, kind: str, term: int, detail: str) -> None:
        self._events.append((self.now, node, kind, term, detail))

    # ---- the network ----------------------------------------------------------------------------

    def _reachable(self, a: int, b: int) -> bool:
        return (self._connected[a] and self._connected[b] and self._group[a] == self._group[b]
                and self._nodes[a] is not None and self._nodes[b] is not None)

    def _delay(self, response: bool) -> float | None:
        """A message's delay, or None if the network loses it."""
        rng = self._rng
        if self._drop and rng.random() < self._drop:
            return None
        delay = rng.uniform(*self._delay_range)
        if response and self._long_reordering and rng.random() < 2 / 3:
            delay += rng.uniform(0.2, 2.2)
        return delay

    def _send(self, message) -> None:
        src = message.src
        self._rpc_count[src] += 1
        self._bytes_sent[src] += message.size()
        if not self._reachable(src, message.dst):
            return
        delay = self._delay(message.kind in RESPONSES)
        if delay is not None:
            self._at(delay, self._deliver, message, self._incarnation[message.dst], self.now)

    def _deliver(self, message, incarnation: int, sent_at: float) -> None:
        dst = message.dst
        if incarnation != self._incarnation[dst] or not self._reachable(message.src, dst):
            return
        self._nodes[dst].step(message)
        self._process(dst)

    # ---- what tests and the panel ask --------------------------------------------------------------

    def state(self, i: int) -> tuple[int, str]:
        """(term, role) of node i, role "follower", "candidate" or "leader" as in the paper
        (a pre-candidate, which has not left its term, counts as a follower; ``status(i)``
        tells them apart); a crashed node reports its persisted term and "down"."""
        node = self._nodes[self._check(i)]
        if node is None:
            return self._storages[i].hard_state.term, "down"
        return node.term, "follower" if node.role == "pre_candidate" else node.role

    def status(self, i: int):
        """The node's full Status (None while crashed)."""
        node = self._nodes[self._check(i)]
        return None if node is None else node.status()

    def leader(self) -> int | None:
        """The leader of the highest term among live nodes, if any."""
        leaders = [(node.term, node.id) for node in self._nodes if node is not None and node.role == "leader"]
        return max(leaders)[1] if leaders else None

    def start(self, i: int, command) -> tuple[int, int, bool]:
        """Propose ``command`` (any picklable value) at node i: (index, term, is_leader)."""
        node = self._nodes[self._check(i)]
        if node is None:
            return -1, self._storages[i].hard_state.term, False
        try:
            index, term = node.propose(pickle.dumps(command))
        except ProposalDropped:
            return -1, node.term, False
        self._process(i)
        return index, term, True

    def applied(self, i: int) -> list:
        """(index, command) in apply order since node i last started; a snapshot installed
        from the leader appears as (index, Snapshot)."""
        return list(self._applied[self._check(i)])

    def transfer_leadership(self, to: int) -> None:
        """Ask the current leader to hand leadership to node ``to`` (caught up first, then TimeoutNow)."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader to transfer leadership from")
        self._nodes[leader].transfer_leadership(self._check(to))
        self._process(leader)

    def force_timeout(self, i: int) -> None:
        """Node i's election timer fires now (it campaigns, with a pre-vote if configured)."""
        node = self._nodes[self._check(i)]
        if node is not None:
            node.campaign()
            self._process(i)

    def snapshot(self, i: int, index: int, data: bytes) -> None:
        """The service on node i hands down a snapshot of its state up to ``index``."""
        node = self._nodes[self._check(i)]
        if node is not None:
            node.compact(index, data)
            self._process(i)

    def _service_snapshot(self, i: int, incarnation: int, index: int, data: bytes) -> None:
        if incarnation == self._incarnation[i] and index > self._storages[i].snapshot.index:
            self.snapshot(i, index, data)

    def rpc_count(self, i: int) -> int:
        return self._rpc_count[self._check(i)]

    def bytes_sent(self, i: int) -> int:
        return self._bytes_sent[self._check(i)]

    def persisted_size(self, i: int) -> int:
        """Bytes of node i's persisted Raft state (hard state and log), the snapshot excluded."""
        storage = self._storages[self._check(i)]
        entries = storage.entries(storage.first_index(), storage.last_index() + 1)
        return HARD_STATE_BYTES + sum(entry.size() for entry in entries)

    def events(self) -> pd.DataFrame:
        return pd.DataFrame(self._events, columns=["time", "node", "kind", "term", "detail"])

    # ---- faults -----------------------------------------------------------------------------------

    def disconnect(self, i: int) -> None:
        self._connected[self._check(i)] = False
        self._event(i, "disconnect", self.state(i)[0], "")

    def connect(self, i: int) -> None:
        self._connected[self._check(i)] = True
        self._event(i, "connect", self.state(i)[0], "")

    def partition(self, *groups) -> None:
        """Split the nodes into ``groups`` (lists of ids covering every node); messages cross no border."""
        members = sorted(i for group in groups for i in group)
        if members != list(range(self.n)):
            raise ValueError(f"partition groups must cover each of the {self.n} nodes once, got {groups!r}")
        for number, group in enumerate(groups):
            for i in group:
                self._group[i] = number
        self._event(None, "partition", 0, " | ".join(",".join(map(str, g)) for g in groups))

    def heal(self) -> None:
        """Reconnect every node and remove the partition."""
        self._connected = [True] * self.n
        self._group = [0] * self.n
        self._event(None, "heal", 0, "")

    def crash(self, i: int) -> None:
        """Stop node i; what it persisted stays on its disk."""
        if self._nodes[self._check(i)] is None:
            return
        self._event(i, "crash", self._nodes[i].term, "")
        self._nodes[i] = None
        self._incarnation[i] += 1

    def restart(self, i: int) -> None:
        """Start node i again (crashing it first if it runs) from what it had persisted."""
        self.crash(i)
        self._boot(i)
        self._event(i, "restart", self._storages[i].hard_state.term, "")

    def set_reliable(self, reliable: bool) -> None:
        """Reliable: 0.5-2 ms delays, nothing lost; unreliable: 0-27 ms, 10% lost each way."""
        if reliable:
            self.set_network(drop=0.0, delay=RELIABLE_DELAY)
        else:
            self.set_network(drop=UNRELIABLE_DROP, delay=UNRELIABLE_DELAY)

    def set_network(self, drop: float | None = None, delay: tuple[float, float] | None = None) -> None:
        """Lose each message with probability ``drop``; delay each by uniform(*``delay``) seconds."""
        if drop is not None:
            if not 0.0 <= drop <= 1.0:
                raise ValueError(f"drop must be a probability in [0, 1], got {drop!r}")
            self._drop = float(drop)
        if delay is not None:
            low, high = delay
            if not 0.0 <= low <= high:
                raise ValueError(f"delay must be (low, high) seconds with 0 <= low <= high, got {delay!r}")
            self._delay_range = (float(low), float(high))

    def network(self) -> dict:
        """The current fault settings: drop probability and delay range (seconds)."""
        return {"drop": self._drop, "delay": self._delay_range}

    def in_flight(self) -> list:
        """Raft messages on the wire: (sent at, arrives at, message), oldest first."""
        return sorted(((args[2], when, args[0]) for when, _, action, args in self._queue if action == self._deliver),
                      key=lambda item: (item[0], item[1]))

    def frame(self, log_window: int = 24) -> "Frame":
        """What a picture of the cluster needs now: each node's role, term, election timer,
        the last ``log_window`` terms of its log, the leader's view of its followers, and
        the messages in flight with how far they have travelled."""
        views = []
        for i, node in enumerate(self._nodes):
            storage = self._storages[i]
            last = storage.last_index()
            first = max(storage.first_index(), last - log_window + 1)
            terms = tuple(entry.term for entry in storage.entries(first, last + 1))
            if node is None:
                views.append(NodeView(i, False, storage.hard_state.term, "down", None, storage.hard_state.commit,
                                      first, terms, 0.0, {}))
                continue
            status = node.status()
            progress = {peer: (p.match, p.next, p.state) for peer, p in status.progress.items() if peer != i}
            views.append(NodeView(i, True, status.term, status.role, status.leader, status.commit, first, terms,
                                  node.election_progress(), progress))
        messages = tuple((m.src, m.dst, m.kind, (self.now - sent) / max(arrives - sent, 1e-9))
                         for sent, arrives, m in self.in_flight())
        return Frame(self.now, tuple(views), messages, tuple(self._group), tuple(self._connected))

    def set_long_reordering(self, long_reordering: bool) -> None:
        self._long_reordering = bool(long_reordering)

    def _check(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n:
            raise ValueError(f"node must be an id from 0 to {self.n - 1}, got {i!r}")
        return i

    # ---- the key-value service ---------------------------------------------------------------------

    def kv(self, n_clients: int = 1, snapshot_every: int | None = None) -> list["KVClient"]:
        """``n_clients`` clients of the replicated KV service, which runs on every node from now
        on; with ``snapshot_every``, each node snapshots its store every that many entries."""
        if any(self._applied) and not self._clients:
            raise RuntimeError("start the KV service before proposing raw commands with start()")
        if snapshot_every is not None:
            if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
                raise ValueError(f"snapshot_every must be a positive integer, got {snapshot_every!r}")
            self._snapshot_every = snapshot_every
        first = len(self._clients)
        self._clients += [KVClient(self, first + c) for c in range(n_clients)]
        return self._clients[first:]

    def kv_state(self, i: int) -> dict:
        """The key-value store node i has applied so far (a copy)."""
        return dict(self._stores[self._check(i)].data)

    def history(self) -> pd.DataFrame:
        """Every KV client operation: client, kind, key, input, output, call, ret (None if
        it never returned), ready for ``check_linearizable``."""
        return pd.DataFrame(self._history, columns=["client", "kind", "key", "input", "output", "call", "ret"])

    def _serve(self, server: int, command: bytes, reply) -> None:
        """A client's request reaches ``server`` (if it can): propose it, answer once applied."""
        node = self._nodes[server]
        if node is None or not self._connected[server]:
            self._at(self._rng.uniform(*FAILED_CALL_DELAY), reply, ("unreachable", None))
            return
        try:
            index, _ = node.propose(command)
        except NotLeader as refused:
            self._at(self._rng.uniform(0.0005, 0.002), reply, ("wrong leader", refused.leader))
            return
        except ProposalDropped:
            self._at(self._rng.uniform(0.0005, 0.002), reply, ("wrong leader", None))
            return
        self._waiters[server][index] = (command, lambda answer: self._at(self._rng.uniform(0.0005, 0.002),
                                                                        reply, answer))
        self._process(server)


@dataclass(frozen=True)
class NodeView:
    """One node in a Frame."""

    id: int
    up: bool
    term: int
    role: str  # follower, pre_candidate, candidate, leader, or down
    leader: int | None
    commit: int
    first_index: int  # the index of log_terms[0]
    log_terms: tuple  # terms of the last entries of its log
    election: float  # share of its election timeout elapsed (0 for a leader)
    progress: dict  # leader only: follower -> (match, next, state)


@dataclass(frozen=True)
class Frame:
    """The cluster at one moment of simulated time, for drawing."""

    time: float
    nodes: tuple
    messages: tuple  # (src, dst, kind, share of the way travelled)
    groups: tuple  # partition group of each node
    connected: tuple


@dataclass
class PendingOperation:
    """A KV call in flight: ``done`` once a server answered, with ``output``."""

    kind: str
    key: str
    input: object
    done: bool = False
    output: object = None


class KVClient(KVOperations):
    """One client of the simulated KV service. get, put, append and cas return a
    PendingOperation at once; the simulation completes it as it runs, retrying across
    servers until one answers. A client runs one operation at a time, as Raft course
    clients do."""

    def __init__(self, sim: Simulation, client_id: int):
        self._sim = sim
        self.id = client_id
        self._seq = 0
        self._leader = 0
        self._busy = False

    def _call(self, kind, key, value) -> PendingOperation:
        if self._busy:
            raise RuntimeError(f"client {self.id} already has an operation in flight")
        self._busy = True
        self._seq += 1
        command = encode_command(self.id, self._seq, kind, key, value)
        operation = PendingOperation(kind, key, value)
        record = {"client": self.id, "kind": kind, "key": key, "input": value, "output": None,
                  "call": self._sim.now, "ret": None}
        self._sim._history.append(record)
        self._try(command, operation, record, attempt=0)
        return operation

    def _try(self, command, operation, record, attempt) -> None:
        sim = self._sim
        server = self._leader
        answered = [False]

        def reply(answer):
            if answered[0] or operation.done:
                return
            answered[0] = True
            status, value = answer
            if status == "ok":
                operation.done, operation.output = True, value
                record["output"], record["ret"] = value, sim.now
                self._busy = False
                return
            self._leader = value if status == "wrong leader" and value is not None else (server + 1) % sim.n
            sim._at(0.01 if status != "unreachable" else 0.0, self._try, command, operation, record, attempt + 1)

        sim._at(sim._rng.uniform(0.0005, 0.002), sim._serve, server, command, reply)
        sim._at(CLIENT_TIMEOUT, reply, ("timeout", None))
