"""Raft consensus as a pure state machine, in the style of etcd's raft, for the Raft lab.

    from mlsys_ext.raft import RaftConfig, RaftNode, MemoryStorage
    node = RaftNode(id=0, peers=[0, 1, 2], config=RaftConfig(), storage=MemoryStorage(),
                    rng=random.Random(seed))
    node.tick()                       # time passes: one tick of config.tick seconds
    node.step(message)                # a message arrives
    node.propose(b"set x 1")          # on the leader: (index, term)
    if node.has_ready():
        ready = node.ready()
        storage.save(ready)           # persist first...
        send(ready.messages)          # ...then talk,
        apply(ready.committed_entries)
        node.advance(ready)           # and acknowledge.

The node never touches a clock, a thread or a socket: ``Simulation`` drives it in
simulated time (faults, crashes, a key-value service with ``kv()``), and
``check_linearizable`` checks the client histories recorded against it.
"""
from ._config import RaftConfig
from ._kv import KVStore
from ._live import LiveKVClient, RaftCluster, RaftServer
from ._linearizability import KVModel, LinearizabilityResult, Model, Operation, check_linearizable
from ._node import RaftNode
from ._simulation import KVClient, PendingOperation, Simulation
from ._storage import CorruptLogError, FileStorage, MemoryStorage
from ._studies import throughput_by_batch, time_to_elect
from ._types import (ADD_LEARNER, ADD_VOTER, REMOVE_VOTER, Entry, FollowerProgress, HardState, Message, NotLeader,
                     ProposalDropped, Ready, ReadState, Snapshot, SoftState, Status)

__all__ = [
    "ADD_LEARNER",
    "ADD_VOTER",
    "CorruptLogError",
    "Entry",
    "FileStorage",
    "FollowerProgress",
    "HardState",
    "KVClient",
    "KVModel",
    "KVStore",
    "LinearizabilityResult",
    "LiveKVClient",
    "MemoryStorage",
    "Message",
    "Model",
    "NotLeader",
    "Operation",
    "PendingOperation",
    "ProposalDropped",
    "REMOVE_VOTER",
    "RaftCluster",
    "RaftConfig",
    "RaftNode",
    "RaftServer",
    "ReadState",
    "Ready",
    "Simulation",
    "Snapshot",
    "SoftState",
    "Status",
    "check_linearizable",
    "throughput_by_batch",
    "time_to_elect",
]
