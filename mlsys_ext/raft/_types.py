"""The values Raft passes around: log entries, snapshots, messages, and the Ready batch.

Everything here is an immutable record (frozen dataclass with slots), cheap to build and
safe to share between the node, its storage and a simulated network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Roles, as shown in status() and SoftState.
FOLLOWER = "follower"
PRE_CANDIDATE = "pre_candidate"
CANDIDATE = "candidate"
LEADER = "leader"

# Message kinds. Requests and their responses come in pairs.
APPEND = "append"                    # AppendEntries: log_term/index locate the entry before `entries`
APPEND_RESP = "append_resp"          # index = last matching index, or the rejected index with hints
HEARTBEAT = "heartbeat"              # commit, context (a read index round), sent_at (the lease clock)
HEARTBEAT_RESP = "heartbeat_resp"    # echoes context and sent_at
VOTE = "vote"                        # RequestVote: log_term/index describe the candidate's last entry
VOTE_RESP = "vote_resp"
PREVOTE = "prevote"                  # "would you vote for me in term `term`?" - nobody's term changes
PREVOTE_RESP = "prevote_resp"
SNAPSHOT = "snapshot"                # InstallSnapshot: the whole snapshot in one message
TIMEOUT_NOW = "timeout_now"          # leadership transfer: "campaign now, skip the pre-vote"
READ_INDEX = "read_index"            # a follower forwards a linearizable read to the leader
READ_INDEX_RESP = "read_index_resp"  # index = the read index, context = the caller's context

# Entry kinds.
ENTRY_NORMAL = 0
ENTRY_CONF_CHANGE = 1

# Membership changes (the data of an ENTRY_CONF_CHANGE entry is b"<change> <node id>").
ADD_VOTER = "add_voter"
REMOVE_VOTER = "remove_voter"
ADD_LEARNER = "add_learner"
CONF_CHANGES = (ADD_VOTER, REMOVE_VOTER, ADD_LEARNER)

# Deterministic size estimates for byte counts: a fixed header plus the payload.
MESSAGE_HEADER_BYTES = 64
ENTRY_HEADER_BYTES = 24
SNAPSHOT_HEADER_BYTES = 32

# Sent as a vote's context when a leadership transfer forces the election, so voters
# skip their leader lease (the old leader asked for this election).
TRANSFER_CONTEXT = b"transfer"


class ProposalDropped(RuntimeError):
    """The node cannot take this proposal now (e.g. a leadership transfer is in progress)."""


class NotLeader(ProposalDropped):
    """Only the leader takes proposals; ``leader`` is the id this node believes leads, or None."""

    def __init__(self, node_id: int, leader: int | None):
        hint = f"try node {leader}" if leader is not None else "no leader is known"
        super().__init__(f"node {node_id} is not the leader ({hint})")
        self.leader = leader


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: the service's command bytes, stamped with the leader's term."""

    index: int
    term: int
    data: bytes = b""
    kind: int = ENTRY_NORMAL

    def size(self) -> int:
        return ENTRY_HEADER_BYTES + len(self.data)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The service's state after applying the log up to ``index``, with the membership then."""

    index: int = 0
    term: int = 0
    data: bytes = b""
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def size(self) -> int:
        return SNAPSHOT_HEADER_BYTES + 8 * (len(self.voters) + len(self.learners)) + len(self.data)


@dataclass(frozen=True, slots=True)
class HardState:
    """What a node must persist before it speaks: its term, its vote in that term, its commit index."""

    term: int = 0
    vote: int | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """What a node believes now and need not persist: who leads, and its own role."""

    leader: int | None
    role: str


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read is safe to serve once the service has applied ``index``."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. Fields that a kind does not use keep their defaults."""

    kind: str
    src: int
    dst: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    # Rejection hints for fast backtracking: the term of the follower's entry at `index`
    # (0 if its log is shorter), the first index of that term, and its last index.
    conflict_term: int = 0
    conflict_index: int = 0
    last_index: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""
    sent_at: int = 0

    def size(self) -> int:
        """Bytes on the wire, a deterministic estimate: header + entries + snapshot + context."""
        size = MESSAGE_HEADER_BYTES + len(self.context)
        for entry in self.entries:
            size += ENTRY_HEADER_BYTES + len(entry.data)
        if self.snapshot is not None:
            size += self.snapshot.size()
        return size


@dataclass(frozen=True, slots=True)
class Ready:
    """A batch of work for the caller, who must, in this order:

    1. persist ``snapshot``, ``entries`` and ``hard_state`` (``storage.save(ready)``),
    2. send ``messages``,
    3. apply ``snapshot`` then ``committed_entries`` to the service, then serve ``read_states``,
    4. call ``node.advance(ready)``.
    """

    hard_state: HardState | None = None
    soft_state: SoftState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hard_state or self.soft_state or self.entries or self.snapshot
                    or self.committed_entries or self.messages or self.read_states)


@dataclass(frozen=True, slots=True)
class FollowerProgress:
    """The leader's view of one follower, as reported by status()."""

    match: int
    next: int
    state: str
    inflight: int
    learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state for panels and tests."""

    id: int
    role: str
    term: int
    vote: int | None
    leader: int | None
    commit: int
    applied: int
    first_index: int
    last_index: int
    voters: tuple[int, ...]
    learners: tuple[int, ...]
    progress: dict[int, FollowerProgress] = field(default_factory=dict)
    transferee: int | None = None
