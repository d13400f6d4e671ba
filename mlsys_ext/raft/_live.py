"""World 2: the same Raft core in actors of ``mlsys_ext.cluster``, with real timers, logs
on disk and the cluster's fault layer (kill, restart, partition, drop, delay).

Each server is an actor (``raft0``, ``raft1``, ...) on its own worker process. Its
ticks are actor timers; its messages are one-way actor sends, so they cross the
cluster's network layer like any other message. A client proposes a command to the
server it believes leads and then polls that server until the command's index is
applied (an actor method must not block: the server has ticks to run), following
redirects and retrying elsewhere when a server is dead or unreachable.
"""
from __future__ import annotations

import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from ..cluster import Cluster, ClusterError, context
from ._config import RaftConfig
from ._kv import KVOperations, KVStore, encode_command
from ._node import RaftNode
from ._storage import FileStorage, MemoryStorage
from ._types import ENTRY_NORMAL, NotLeader, ProposalDropped

KEPT_OUTPUTS = 10_000  # applied commands whose outputs a server remembers for polling clients
POLL_INTERVAL = 0.002  # seconds between a pipelining writer's polls for outcomes, and a client's retries


def server_name(i: int) -> str:
    return f"raft{i}"


class RaftServer:
    """One Raft server as an actor: ``tick`` on a timer, ``receive`` for peers' messages,
    ``submit`` and ``outcome`` for clients."""

    def __init__(self, id: int, n: int, config: RaftConfig, path: str | None, fsync: bool, seed: int):
        self.config = config
        self.storage = FileStorage(path, fsync=fsync) if path else MemoryStorage()
        snapshot = self.storage.snapshot
        self.kv = KVStore.restore(snapshot.data) if snapshot.index else KVStore()
        # a new stream of election timeouts in each incarnation, as a real restart would have
        self.node = RaftNode(id, range(n), config, self.storage, random.Random(f"{seed}/{id}/{time.time_ns()}"))
        self.outputs: dict[int, tuple[bytes, object]] = {}
        self.waiting: dict[int, list] = {}  # index -> (command, deferred reply) of clients waiting for it
        ctx = context()
        self.peers = {j: ctx.handle(server_name(j)) for j in range(n) if j != id}
        self._process()
        ctx.set_timer(config.tick, "tick")

    def tick(self) -> None:
        self.node.tick()
        self._process()
        context().set_timer(self.config.tick, "tick")

    def receive(self, message) -> None:
        self.node.step(message)
        self._process()

    def submit(self, commands: list[bytes]) -> tuple[str, object]:
        """("accepted", [index of each command]) on the leader, else ("redirect", the leader
        it knows or None). Several commands in one call reach the log in one batch."""
        indices = []
        try:
            for command in commands:
                indices.append(self.node.propose(command)[0])
        except NotLeader as refused:
            if not indices:
                return "redirect", refused.leader
        except ProposalDropped:
            if not indices:
                return "redirect", None
        self._process()
        return "accepted", indices

    def execute(self, command: bytes):
        """``command`` proposed, answered once applied: ("ok", its output), ("lost", None) if
        another entry took its index (or a snapshot passed it), or at once ("redirect", the
        leader it knows or None). One round trip for a blocking client, no polling."""
        verdict, detail = self.submit([command])
        if verdict != "accepted":
            return verdict, detail
        [(status, output)] = self.outcomes([(detail[0], command)])
        if status != "pending":
            return status, output
        self.waiting.setdefault(detail[0], []).append((command, context().defer()))
        return None  # the deferred reply answers

    def outcomes(self, pending: list[tuple[int, bytes]]) -> list[tuple[str, object]]:
        """For each (index, command): ("ok", output) once the command is applied at that
        index; ("pending", None) before; ("lost", None) if another entry took the index."""
        answers = []
        for index, command in pending:
            applied = self.outputs.get(index)
            if applied is None:
                answers.append(("pending", None) if index > self.node.log.applied else ("lost", None))
            else:
                data, output = applied
                answers.append(("ok", output) if data == command else ("lost", None))
        return answers

    def state(self) -> dict:
        status = self.node.status()
        return {"id": status.id, "role": status.role, "term": status.term, "leader": status.leader,
                "commit": status.commit, "last_index": status.last_index, "applied": status.applied}

    def _process(self) -> None:
        node = self.node
        while node.has_ready():
            ready = node.ready()
            self.storage.save(ready)  # persist before anything leaves
            for message in ready.messages:
                self.peers[message.dst].receive.send(message)
            if ready.snapshot is not None:
                self.kv = KVStore.restore(ready.snapshot.data)
                for index in [i for i in self.waiting if i <= ready.snapshot.index]:
                    for _, reply in self.waiting.pop(index):
                        reply.send(("lost", None))  # its output is not kept: the client asks again
            for entry in ready.committed_entries:
                output = None
                if entry.kind == ENTRY_NORMAL and entry.data:
                    output = self.kv.apply(entry.data)
                    self.outputs[entry.index] = (entry.data, output)
                for command, reply in self.waiting.pop(entry.index, ()):
                    reply.send(("ok", output) if command == entry.data else ("lost", None))
            while len(self.outputs) > KEPT_OUTPUTS:
                del self.outputs[next(iter(self.outputs))]
            node.advance(ready)


class RaftCluster:
    """``n`` Raft servers on ``cluster`` (a new local Cluster of ``n`` workers if None),
    logs in ``data_dir`` (a new temporary folder if None, removed by ``stop``)."""

    def __init__(self, n: int = 3, cluster: Cluster | None = None, config: RaftConfig | None = None,
                 data_dir=None, fsync: bool = False, seed: int = 0, timeout: float = 10.0):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.n = n
        self.config = config or RaftConfig(election_timeout=(0.3, 0.6), heartbeat=0.05, tick=0.01)
        self.timeout = timeout
        self._own_cluster = cluster is None
        self.cluster = Cluster(n) if cluster is None else cluster
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="mlsys-raft-") if data_dir is None else data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.servers = [self.cluster.spawn(RaftServer, i, n, self.config, str(self.data_dir / f"{server_name(i)}.wal"),
                                           fsync, seed, name=server_name(i)) for i in range(n)]
        self._leader_guess = 0

    # ---- inspection ------------------------------------------------------------------------------

    def states(self) -> pd.DataFrame:
        """One row per server: role, term, leader, commit, last index; "unreachable" if it does not answer."""
        rows = []
        for i, server in enumerate(self.servers):
            try:
                rows.append(server.state.remote().result(timeout=1.0))
            except (ClusterError, TimeoutError, OSError) as exc:
                rows.append({"id": i, "role": "unreachable", "term": None, "leader": None, "commit": None,
                             "last_index": None, "applied": None, "error": type(exc).__name__})
        return pd.DataFrame(rows)

    def leader(self) -> int | None:
        """The leader of the highest term among the servers that answer."""
        states = self.states()
        leaders = states[states.role == "leader"]
        return None if leaders.empty else int(leaders.sort_values("term").id.iloc[-1])

    def wait_for_leader(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {self.timeout if timeout is None else timeout} s")

    # ---- the key-value service -------------------------------------------------------------------

    def client(self) -> "LiveKVClient":
        # random ids: the servers' duplicate table outlives this process in the logs on disk,
        # and a client numbered 1 again would find its first request "already applied"
        return LiveKVClient(self, secrets.randbits(62))

    def get(self, key: str) -> str:
        return self.client().get(key)

    def put(self, key: str, value: str) -> None:
        return self.client().put(key, value)

    def put_many(self, items, window: int = 256) -> int:
        """Write every (key, value) of ``items`` with up to ``window`` writes in flight, as a
        pipelining client does (submitted in batches, outcomes polled together); returns
        how many were applied. Lost writes (leadership changed) are submitted again."""
        client = self.client()
        waiting = [encode_command(client.id, seq, "put", key, value) for seq, (key, value) in enumerate(items, 1)]
        waiting.reverse()
        in_flight: dict[bytes, int] = {}
        applied = 0
        deadline = time.monotonic() + self.timeout
        while (waiting or in_flight) and time.monotonic() < deadline:
            handle = self.servers[self._leader_guess]
            try:
                batch = [waiting.pop() for _ in range(min(window - len(in_flight), len(waiting)))]
                if batch:
                    verdict, detail = handle.submit.remote(batch).result(timeout=1.0)
                    if verdict != "accepted":
                        waiting.extend(reversed(batch))
                        self._leader_guess = detail if detail is not None else (self._leader_guess + 1) % self.n
                        continue
                    waiting.extend(reversed(batch[len(detail):]))
                    in_flight.update(zip(batch, detail))
                pending = list(in_flight.items())
                answers = handle.outcomes.remote([(index, command) for command, index in pending]).result(timeout=1.0)
            except (ClusterError, TimeoutError, OSError):
                self._leader_guess = (self._leader_guess + 1) % self.n
                waiting.extend(in_flight)  # unknown fate: the duplicate table makes resending safe
                in_flight.clear()
                continue
            for (command, _), (status, _) in zip(pending, answers):
                if status != "pending":
                    del in_flight[command]
                    if status == "ok":
                        applied += 1
                    else:
                        waiting.append(command)
            time.sleep(POLL_INTERVAL)
        return applied

    # ---- faults ------------------------------------------------------------------------------------

    def _server(self, which) -> int:
        if which == "leader":
            leader = self.leader()
            if leader is None:
                raise ClusterError("no server is leader right now")
            return leader
        if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which < self.n:
            raise ValueError(f"server must be 'leader' or an id from 0 to {self.n - 1}, got {which!r}")
        return which

    def kill(self, which) -> int:
        """Kill the process of a server (or of the leader); its log stays on disk. Returns its id."""
        i = self._server(which)
        self.cluster.kill(server_name(i))
        return i

    def restart(self, which) -> int:
        """Start a server again; it recovers its term, vote and log from disk."""
        i = self._server(which)
        self.cluster.restart(server_name(i))
        return i

    def partition(self, *groups) -> None:
        """Cut the network between groups of server ids (the driver stays with the first group)."""
        named = [[server_name(i) for i in group] for group in groups]
        named[0].append("driver")
        self.cluster.partition(*named)

    def heal(self) -> None:
        self.cluster.heal()

    def stop(self) -> None:
        """Stop the servers (and the cluster, if this RaftCluster made it); remove a temporary data_dir."""
        if self._own_cluster:
            self.cluster.stop()
        else:
            for i in range(self.n):
                self.cluster.kill(server_name(i))
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class LiveKVClient(KVOperations):
    """A client of the live KV service: get, put, append and cas block until a leader
    applied the operation (one at a time), retrying across servers; they return its output."""

    def __init__(self, raft: RaftCluster, client_id: int):
        self._raft = raft
        self.id = client_id
        self._seq = 0

    def _call(self, kind, key, value):
        self._seq += 1
        command = encode_command(self.id, self._seq, kind, key, value)
        raft = self._raft
        deadline = time.monotonic() + raft.timeout
        server = raft._leader_guess
        while time.monotonic() < deadline:
            handle = raft.servers[server]
            try:
                verdict, detail = handle.execute.remote(command).result(timeout=0.5)
                if verdict == "ok":
                    raft._leader_guess = server
                    return detail
                if verdict == "lost":
                    server = (server + 1) % raft.n
                    continue
                server = detail if detail is not None else (server + 1) % raft.n
            except (ClusterError, TimeoutError, OSError):  # dead, paused or cut off: try the next one
                server = (server + 1) % raft.n
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"{kind} {key!r}: no leader applied it within {raft.timeout} s")
