"""An in-memory network of RaftNodes for tests, after etcd's raft_test.go ``network``.

Each node's Ready is handled the way a real server must: persist, then send, then apply,
then advance. Messages wait in one queue; links can be cut, nodes isolated or crashed,
and deliveries dropped at random. The applied commands of every node are recorded, and
every applied entry is checked against the first one ever applied at its index.
"""
from __future__ import annotations

import json
import random
from collections import Counter, deque

from mlsys_ext.raft import MemoryStorage, RaftConfig, RaftNode

FAST = RaftConfig(election_timeout=(0.5, 1.0), heartbeat=0.1, tick=0.05)  # 10..20 ticks, heartbeat every 2


def encode_state(applied) -> bytes:
    """A service state (the list of applied entries) as snapshot bytes."""
    return json.dumps([[index, term, data.hex()] for index, term, data in applied]).encode()


def decode_state(data: bytes) -> list[tuple[int, int, bytes]]:
    return [(index, term, bytes.fromhex(hexdata)) for index, term, hexdata in json.loads(data)] if data else []


class Network:
    def __init__(self, n: int = 3, *, config: RaftConfig = FAST, seed: int = 0, voters=None, learners=(),
                 storage_factory=MemoryStorage):
        self.config = config
        self.seed = seed
        self.rng = random.Random(seed)
        ids = list(range(n))
        self.voters = list(voters) if voters is not None else ids
        self.learners = list(learners)
        self.storages = {i: storage_factory() for i in ids}
        self.nodes: dict[int, RaftNode] = {}
        self.applied: dict[int, list[tuple[int, int, bytes]]] = {}
        self.restarts = 0
        for i in ids:
            self._start(i)
        self.queue: deque = deque()
        self.cut: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        self.filter = None                    # optional predicate: deliver message m only if filter(m)
        self.down: set[int] = set()
        self.sent: Counter = Counter()        # messages sent, by kind
        self.log: list = []                   # every message sent, in order (when record=True)
        self.record = False
        self.read_states: dict[int, list] = {i: [] for i in ids}
        self.leaders: dict[int, set[int]] = {}   # term -> nodes that were leader in it
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data), as first applied anywhere

    # ----- nodes -----
    def _start(self, i: int) -> None:
        storage = self.storages[i]
        rng = random.Random(f"{self.seed}-{i}-{self.restarts}")
        self.nodes[i] = RaftNode(i, self.voters, self.config, storage, rng, learners=self.learners)
        self.applied[i] = decode_state(storage.snapshot.data)  # the service reloads its snapshot

    def add_node(self, i: int) -> RaftNode:
        """A fresh, empty node that learns the membership from the leader."""
        self.storages[i] = MemoryStorage()
        self.read_states[i] = []
        self.applied[i] = []
        self.nodes[i] = RaftNode(i, self.voters, self.config, self.storages[i], random.Random(f"{self.seed}-{i}-new"))
        return self.nodes[i]

    def crash(self, i: int) -> None:
        """Stop node i; what it persisted survives, its messages in flight are lost."""
        self.down.add(i)
        self.queue = deque(m for m in self.queue if m.dst != i and m.src != i)

    def restart(self, i: int) -> None:
        self.down.discard(i)
        self.restarts += 1
        self._start(i)

    def leader(self):
        """The id of the live leader with the highest term, or None."""
        live = [n for i, n in self.nodes.items() if i not in self.down and n.role == "leader"]
        return max(live, key=lambda n: n.term).id if live else None

    # ----- links -----
    def isolate(self, i: int) -> None:
        for j in self.nodes:
            if j != i:
                self.cut |= {(i, j), (j, i)}

    def partition(self, *groups) -> None:
        for a in groups:
            for b in groups:
                if a is not b:
                    self.cut |= {(i, j) for i in a for j in b}

    def recover(self) -> None:
        self.cut.clear()
        self.drop_rate = 0.0
        self.filter = None

    def _delivers(self, m) -> bool:
        if m.dst not in self.nodes or m.dst in self.down or m.src in self.down or (m.src, m.dst) in self.cut:
            return False
        if self.filter is not None and not self.filter(m):
            return False
        return not (self.drop_rate and self.rng.random() < self.drop_rate)

    # ----- driving -----
    def process(self, i: int) -> None:
        """Handle node i's Ready: persist, send, apply, advance."""
        node = self.nodes[i]
        if i in self.down or not node.has_ready():
            return
        ready = node.ready()
        self.storages[i].save(ready)
        for m in ready.messages:
            self.sent[m.kind] += 1
            if self.record:
                self.log.append(m)
        self.queue.extend(ready.messages)
        if ready.snapshot is not None:
            self.applied[i] = decode_state(ready.snapshot.data)
        for entry in ready.committed_entries:
            self._apply(i, entry)
        self.read_states[i].extend(ready.read_states)
        node.advance(ready)
        if node.role == "leader":
            self.leaders.setdefault(node.term, set()).add(i)

    def _apply(self, i: int, entry) -> None:
        applied = self.applied[i]
        expected = applied[-1][0] + 1 if applied else 1
        assert entry.index == expected, f"node {i} applied {entry.index} after {expected - 1}"
        first = self.committed.setdefault(entry.index, (entry.term, entry.data))
        assert first == (entry.term, entry.data), f"node {i} applied {entry} but {first} was applied before"
        applied.append((entry.index, entry.term, entry.data))

    def flush(self) -> None:
        for i in self.nodes:
            self.process(i)

    def deliver(self, m) -> None:
        if self._delivers(m):
            self.nodes[m.dst].step(m)
            self.process(m.dst)

    def stabilize(self, max_messages: int = 100_000) -> int:
        """Deliver messages until none are left; returns how many were taken off the queue."""
        self.flush()
        count = 0
        while self.queue:
            count += 1
            assert count <= max_messages, "the network never went quiet"
            self.deliver(self.queue.popleft())
        return count

    def send(self, m) -> None:
        """Inject a message and stabilize (like etcd's network.send)."""
        self.queue.append(m)
        self.stabilize()

    def tick(self, ticks: int = 1, *, stabilize: bool = True) -> None:
        for _ in range(ticks):
            for i, node in self.nodes.items():
                if i not in self.down:
                    node.tick()
            if stabilize:
                self.stabilize()
            else:
                self.flush()

    def elect(self, i: int) -> RaftNode:
        """Make node i campaign and let the election finish."""
        self.nodes[i].campaign()
        self.stabilize()
        assert self.nodes[i].role == "leader", self.nodes[i]
        return self.nodes[i]

    def propose(self, data: bytes, i=None):
        node = self.nodes[self.leader() if i is None else i]
        result = node.propose(data)
        self.process(node.id)
        return result

    def compact(self, i: int) -> None:
        """Node i's service snapshots its state and compacts the log."""
        applied = self.applied[i]
        if applied:
            self.nodes[i].compact(applied[-1][0], encode_state(applied))

    # ----- safety checks -----
    def check_one_leader_per_term(self) -> None:
        for term, leaders in self.leaders.items():
            assert len(leaders) <= 1, f"term {term} had leaders {sorted(leaders)}"

    def check_log_matching(self) -> None:
        """If two logs hold an entry with the same index and term, they agree on everything before."""
        logs = {}
        for i, node in self.nodes.items():
            log = node.log
            logs[i] = {e.index: e.term for e in log.slice(log.first_index(), log.last_index() + 1)}
        ids = sorted(logs)
        for a in ids:
            for b in ids[ids.index(a) + 1:]:
                common = sorted(set(logs[a]) & set(logs[b]), reverse=True)
                match = next((k for k in common if logs[a][k] == logs[b][k]), None)
                if match is not None:
                    for k in common:
                        if k <= match:
                            assert logs[a][k] == logs[b][k], f"nodes {a} and {b} differ at {k} below {match}"

    def check_state_machines(self) -> None:
        """Every node applied a prefix of the same sequence."""
        longest = max(self.applied.values(), key=len)
        for i, applied in self.applied.items():
            assert applied == longest[:len(applied)], f"node {i} applied a different sequence"

    def check_committed_entries_never_change(self) -> None:
        """Every node's committed log agrees with what was applied anywhere at those indexes."""
        for i, node in self.nodes.items():
            log = node.log
            for entry in log.slice(log.first_index(), log.committed + 1):
                first = self.committed.get(entry.index)
                assert first is None or first == (entry.term, entry.data), f"node {i} changed committed {entry}"

    def check_safety(self) -> None:
        self.check_one_leader_per_term()
        self.check_log_matching()
        self.check_state_machines()
        self.check_committed_entries_never_change()
