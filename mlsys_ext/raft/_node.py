"""RaftNode: one Raft server as a pure state machine.

It changes state only in ``tick()``, ``step(message)`` and the client calls (``propose``,
``read_index``, ``transfer_leadership``, ``propose_conf_change``, ``compact``), and never
does I/O itself: what must be persisted, sent or applied comes out of ``ready()``, and the
caller acknowledges it with ``advance(ready)``. Time is counted in ticks and randomness
comes from the ``rng`` passed in, so a run is reproducible from its seed.

Each role is a pair of functions, installed by ``become_*``: ``_tick`` (the election timer
for followers and candidates, heartbeats for the leader) and ``_step_role`` (how the role
treats messages of the current term). ``step`` first does what every role does alike:
compare terms, and answer vote requests.

Membership changes take effect when their entry is *applied* (after commit, in
``advance``), one at a time, as in etcd - not on append as in the Raft dissertation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ._config import RaftConfig
from ._log import RaftLog
from ._progress import PROBE, REPLICATE, SNAPSHOT_STATE, Progress, committed_index, quorum
from ._types import (ADD_LEARNER, ADD_VOTER, APPEND, APPEND_RESP, CANDIDATE, CONF_CHANGES, ENTRY_CONF_CHANGE,
                     ENTRY_NORMAL, FOLLOWER, HEARTBEAT, HEARTBEAT_RESP, LEADER, PRE_CANDIDATE, PREVOTE, PREVOTE_RESP,
                     READ_INDEX, READ_INDEX_RESP, REMOVE_VOTER, SNAPSHOT, TIMEOUT_NOW, TRANSFER_CONTEXT, VOTE,
                     VOTE_RESP, Entry, FollowerProgress, HardState, Message, NotLeader, ProposalDropped, Ready,
                     ReadState, SoftState, Snapshot, Status)


@dataclass(slots=True)
class _PendingRead:
    index: int                      # the commit index when the read arrived
    requester: int                  # who gets the answer: this node, or a follower that forwarded it
    acks: set[int] = field(default_factory=set)


class RaftNode:
    """One Raft server. ``peers`` lists the voters (this node included) when the log is new;
    a restarted node takes its membership from its storage instead.

    After a restart the service itself loads ``storage.snapshot``; the node then hands out
    the committed entries after it again.
    """

    def __init__(self, id: int, peers, config: RaftConfig, storage, rng, learners=()):
        self.id = id
        self.config = config
        self.storage = storage
        self._rng = rng
        self._election_min, self._election_max = config.election_ticks
        self._heartbeat_ticks = config.heartbeat_ticks
        # The leader may serve lease reads while a quorum acknowledged a heartbeat it sent less
        # than this many ticks ago; two ticks are kept back because ticks on different nodes
        # are not in phase.
        self._lease_ticks = self._election_min - 2

        self.role = FOLLOWER
        self.leader: int | None = None
        self.progress: dict[int, Progress] = {}
        self._clock = 0                     # ticks since this node object started
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._election_min
        self._votes: dict[int, bool] = {}
        self._transferee: int | None = None
        self._pending_conf_index = 0
        self._acked_at: dict[int, int] = {}            # leader lease: latest heartbeat each peer acknowledged
        self._pending_reads: dict[bytes, _PendingRead] = {}   # ReadIndex rounds waiting for a quorum
        self._reads_before_commit: list[tuple[bytes, int]] = []  # reads waiting for this term's first commit
        self._read_states: list[ReadState] = []
        self._msgs: list[Message] = []
        self._prev_soft_state = SoftState(None, FOLLOWER)

        self.log = RaftLog(storage)
        hard_state = self._prev_hard_state = storage.hard_state
        self.term = hard_state.term
        self.vote = hard_state.vote
        snapshot = storage.snapshot
        if snapshot.index:
            self.voters, self.learners = frozenset(snapshot.voters), frozenset(snapshot.learners)
        else:
            self.voters, self.learners = frozenset(peers), frozenset(learners) - frozenset(peers)
        if not self.voters:
            raise ValueError("a Raft group needs at least one voter")
        # (index, voters, learners) after each applied membership change, for compaction.
        self._membership_history = [(snapshot.index, self.voters, self.learners)]
        for entry in self.log.slice(self.log.first_index(), self.log.committed + 1):
            if entry.kind == ENTRY_CONF_CHANGE:  # committed before a crash: in force already
                self._apply_conf_change(entry)

        self.become_follower(self.term, None)

    # ================= role transitions =================
    def become_follower(self, term: int, leader: int | None) -> None:
        self._reset(term)
        self.role, self.leader = FOLLOWER, leader
        self._tick, self._step_role = self._tick_election, self._step_follower

    def become_pre_candidate(self) -> None:
        """Ask for votes for term+1 without moving to it, so a node that cannot win
        (partitioned, or with a stale log) never forces the others into a new term."""
        self._reset(self.term)
        self.role = PRE_CANDIDATE
        self._tick, self._step_role = self._tick_election, self._step_candidate

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = CANDIDATE
        self._tick, self._step_role = self._tick_election, self._step_candidate

    def become_leader(self) -> None:
        self._reset(self.term)
        self.role, self.leader = LEADER, self.id
        self._tick, self._step_role = self._tick_heartbeat, self._step_leader
        last = self.log.last_index()
        self.progress = {peer: Progress(last + 1, learner=peer in self.learners)
                         for peer in self.voters | self.learners}
        own = self.progress[self.id]
        own.match, own.state, own.recent_active = self.log.offset - 1, REPLICATE, True  # what is on our disk
        # An uncommitted membership change may hide in our log: allow none until it is applied.
        self._pending_conf_index = last
        # Entries of earlier terms commit only with one of ours (Figure 8): append a no-op now.
        self._append([(b"", ENTRY_NORMAL)])
        self._broadcast_append()

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term, self.vote = term, None
        self.leader = None
        self._election_elapsed = self._heartbeat_elapsed = 0
        self._randomized_timeout = self._rng.randint(self._election_min, self._election_max)
        self._votes = {}
        self.progress = {}
        self._transferee = None
        self._acked_at = {}
        self._pending_reads = {}   # in-flight reads are dropped: the client retries
        self._reads_before_commit = []

    # ================= ticks =================
    def tick(self) -> None:
        """Advance time by one tick (``config.tick`` seconds)."""
        self._clock += 1
        self._tick()

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout:
            self.campaign()

    def _tick_heartbeat(self) -> None:
        self._election_elapsed += 1
        self._heartbeat_elapsed += 1
        if self._election_elapsed >= self._election_min:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_recently_active():
                self.become_follower(self.term, None)  # cut off from a majority: stop acting as leader
                return
            self._transferee = None  # a transfer that takes an election timeout has failed
        if self._heartbeat_elapsed >= self._heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_recently_active(self) -> bool:
        active = 0
        for peer, pr in self.progress.items():
            if peer in self.voters and (pr.recent_active or peer == self.id):
                active += 1
            pr.recent_active = peer == self.id
        return active >= quorum(len(self.voters))

    # ================= elections =================
    def campaign(self) -> None:
        """Start an election now, as if the election timer fired (a pre-vote first, if configured)."""
        if self.role != LEADER and self.id in self.voters:
            self._campaign(PREVOTE if self.config.prevote else VOTE)

    def _campaign(self, kind: str, context: bytes = b"") -> None:
        if kind == PREVOTE:
            self.become_pre_candidate()
            term = self.term + 1
        else:
            self.become_candidate()
            term = self.term
        if self._poll(self.id, True):
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in sorted(self.voters):
            if voter != self.id:
                self._msgs.append(Message(kind, self.id, voter, term, log_term=last_term, index=last_index,
                                          context=context))

    def _poll(self, voter: int, granted: bool) -> bool:
        """Count one answer; on a decision move on (leader, candidate or follower) and return True."""
        if voter not in self.voters:
            return False
        self._votes.setdefault(voter, granted)
        yes = sum(self._votes.values())
        needed = quorum(len(self.voters))
        if yes >= needed:
            if self.role == PRE_CANDIDATE:
                self._campaign(VOTE)  # the pre-vote is won: now the real election
            else:
                self.become_leader()
            return True
        if len(self._votes) - yes > len(self.voters) - needed:
            self.become_follower(self.term, None)
            return True
        return False

    def _in_leader_lease(self) -> bool:
        """CheckQuorum's promise: a node that heard from a leader within the minimum election
        timeout ignores vote requests, so that leader cannot be deposed behind its back."""
        if not self.config.check_quorum:
            return False
        if self.leader is not None and self._election_elapsed < self._election_min:
            return True
        # A restarted node may have promised a lease it no longer remembers: keep it for a timeout.
        return self.config.read_only == "lease" and self._clock < self._election_min

    def _handle_vote_request(self, m: Message) -> None:
        response = VOTE_RESP if m.kind == VOTE else PREVOTE_RESP
        can_vote = (self.vote == m.src
                    or (self.vote is None and self.leader is None)
                    or (m.kind == PREVOTE and m.term > self.term))
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            if m.kind == VOTE:
                self.vote = m.src
                self._election_elapsed = 0
            self._msgs.append(Message(response, self.id, m.src, m.term))
        else:
            self._msgs.append(Message(response, self.id, m.src, self.term, reject=True))

    # ================= messages =================
    def step(self, m: Message) -> None:
        """Take in one message addressed to this node."""
        if m.term > self.term:
            if m.kind in (VOTE, PREVOTE) and m.context != TRANSFER_CONTEXT and self._in_leader_lease():
                return
            if m.kind == PREVOTE or (m.kind == PREVOTE_RESP and not m.reject):
                pass  # about a term nobody has entered yet
            elif m.kind in (APPEND, HEARTBEAT, SNAPSHOT):
                self.become_follower(m.term, m.src)
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            if m.kind in (APPEND, HEARTBEAT) and (self.config.check_quorum or self.config.prevote):
                # A deposed leader is talking: tell it our term so it steps down. (With these
                # options, a node whose term ran ahead cannot win votes, so nobody else would.)
                self._msgs.append(Message(APPEND_RESP, self.id, m.src, self.term))
            elif m.kind == PREVOTE:
                self._msgs.append(Message(PREVOTE_RESP, self.id, m.src, self.term, reject=True))
            return
        if m.kind in (VOTE, PREVOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _step_follower(self, m: Message) -> None:
        kind = m.kind
        if kind in (APPEND, HEARTBEAT, SNAPSHOT):
            self.leader = m.src
            self._election_elapsed = 0
            if kind == APPEND:
                self._handle_append(m)
            elif kind == HEARTBEAT:
                self.log.commit_to(min(m.commit, self.log.last_index()))  # the leader sends at most our match
                self._msgs.append(Message(HEARTBEAT_RESP, self.id, m.src, self.term, context=m.context,
                                          sent_at=m.sent_at))
            else:
                self._handle_snapshot(m)
        elif kind == TIMEOUT_NOW and self.id in self.voters:
            self._campaign(VOTE, TRANSFER_CONTEXT)  # the leader asked: no pre-vote, and voters skip their lease
        elif kind == READ_INDEX_RESP:
            self._read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        kind = m.kind
        if kind in (APPEND, HEARTBEAT, SNAPSHOT):
            self.become_follower(self.term, m.src)  # someone won this term
            self._step_follower(m)
        elif kind == (PREVOTE_RESP if self.role == PRE_CANDIDATE else VOTE_RESP):
            self._poll(m.src, not m.reject)

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if m.kind == APPEND_RESP:
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif m.kind == HEARTBEAT_RESP:
            pr.recent_active = True
            self._handle_heartbeat_response(m, pr)
        elif m.kind == READ_INDEX:
            self._read(m.context, m.src)

    # ----- follower side of replication -----
    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._msgs.append(Message(APPEND_RESP, self.id, m.src, self.term, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._msgs.append(Message(APPEND_RESP, self.id, m.src, self.term, index=last_new))
            return
        last = log.last_index()
        if m.index > last:   # our log is too short: "send from my end"
            conflict_term, conflict_index = 0, last + 1
        else:                # a different term there: "skip all of that term"
            conflict_term = log.term(m.index)
            conflict_index = log.first_index_of_term(m.index)
        self._msgs.append(Message(APPEND_RESP, self.id, m.src, self.term, index=m.index, reject=True,
                                  conflict_term=conflict_term, conflict_index=conflict_index, last_index=last))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        log = self.log
        if snap.index > log.committed:
            if log.match_term(snap.index, snap.term):
                log.commit_to(snap.index)  # we have it all already: just catch up the commit index
            else:
                log.restore(snap)
                self.voters, self.learners = frozenset(snap.voters), frozenset(snap.learners)
                self._membership_history = [(snap.index, self.voters, self.learners)]
        self._msgs.append(Message(APPEND_RESP, self.id, m.src, self.term, index=log.committed))

    # ----- leader side of replication -----
    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            if pr.maybe_decrease(m.index, self._next_after_rejection(m)):
                if pr.state == REPLICATE:
                    pr.become_probe()
                self._send_appends(m.src)
            return
        was_paused = pr.is_paused(self.config.max_inflight)
        if pr.maybe_update(m.index):
            if pr.state == PROBE or (pr.state == SNAPSHOT_STATE and pr.match >= pr.pending_snapshot):
                pr.become_replicate()
            if m.src == self._transferee and pr.match == self.log.last_index():
                self._msgs.append(Message(TIMEOUT_NOW, self.id, m.src, self.term))
        if self._maybe_commit():
            self._broadcast_commit()
            return
        if was_paused:  # it may have missed commit updates while paused
            self._send_append(m.src, allow_empty=True)
        self._send_appends(m.src)

    def _next_after_rejection(self, m: Message) -> int:
        """Where to resume after a rejection, from the follower's hints."""
        if m.conflict_term == 0:
            return m.last_index + 1
        index = min(m.index, self.log.last_index())
        term = self.log.term(index)
        while term is not None and term > m.conflict_term:
            index -= 1
            term = self.log.term(index)
        if term == m.conflict_term:
            return index + 1        # we have that term too: resume after our last entry of it
        return m.conflict_index     # we do not: all of the follower's entries of that term go

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.probe_sent = False  # the follower is reachable: probe again
        if m.sent_at > self._acked_at.get(m.src, -1):
            self._acked_at[m.src] = m.sent_at
        if pr.state == REPLICATE and len(pr.inflight) >= self.config.max_inflight:
            pr.inflight.popleft()  # appends may have been lost: let one more through
        if pr.match < self.log.last_index():
            # It lags: if appends were lost, even an empty one exposes the gap (it gets rejected).
            self._send_append(m.src, allow_empty=True)
            self._send_appends(m.src)
        if m.context:
            self._ack_read(m.context, m.src)

    def _send_append(self, to: int, allow_empty: bool = False) -> bool:
        """Send ``to`` one append (or the snapshot it needs); False if it is paused or up to date."""
        pr = self.progress[to]
        config = self.config
        if pr.is_paused(config.max_inflight):
            return False
        log = self.log
        last = log.last_index()
        if pr.next > last and not allow_empty:
            return False
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:  # compacted away: only a snapshot can bring it up to date
            snap = self.storage.snapshot
            pr.become_snapshot(snap.index)
            self._msgs.append(Message(SNAPSHOT, self.id, to, self.term, snapshot=snap))
            return True
        entries = log.slice(pr.next, min(last, prev + config.max_batch) + 1, config.max_bytes)
        self._msgs.append(Message(APPEND, self.id, to, self.term, log_term=prev_term, index=prev,
                                  entries=tuple(entries), commit=log.committed))
        pr.sent(prev + len(entries), len(entries))
        return True

    def _send_appends(self, to: int) -> None:
        """Send as much as the follower's flow control allows."""
        while self._send_append(to):
            pass

    def _peers(self):
        return [peer for peer in self.progress if peer != self.id]

    def _broadcast_append(self) -> None:
        for peer in self._peers():
            self._send_appends(peer)

    def _broadcast_commit(self) -> None:
        for peer in self._peers():
            self._send_append(peer, allow_empty=True)
            self._send_appends(peer)

    def _broadcast_heartbeat(self, context: bytes = b"") -> None:
        committed = self.log.committed
        stalled_after = max(1, self._election_min // self._heartbeat_ticks)
        for peer in self._peers():
            pr = self.progress[peer]
            self._msgs.append(Message(HEARTBEAT, self.id, peer, self.term, commit=min(pr.match, committed),
                                      context=context, sent_at=self._clock))
            if pr.state == SNAPSHOT_STATE and not context:
                pr.snapshot_heartbeats += 1
                if pr.snapshot_heartbeats >= stalled_after:  # no answer for an election timeout: presume it lost
                    pr.become_probe()

    def _maybe_commit(self) -> bool:
        """Commit what a majority of voters hold - but only by counting entries of our own term."""
        progress = self.progress
        index = committed_index([progress[voter].match for voter in self.voters if voter in progress])
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        waiting, self._reads_before_commit = self._reads_before_commit, []
        for context, requester in waiting:
            self._read(context, requester)
        return True

    def _append(self, items) -> int:
        """Append (data, kind) pairs to the leader's log; returns the last new index."""
        index = self.log.last_index()
        term = self.term
        entries = [Entry(index + i, term, data, kind) for i, (data, kind) in enumerate(items, start=1)]
        return self.log.append(entries)

    # ================= client requests =================
    def _require_leader(self) -> None:
        if self.role != LEADER:
            raise NotLeader(self.id, self.leader)
        if self._transferee is not None:
            raise ProposalDropped(f"node {self.id} is handing leadership to node {self._transferee}")

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command to the replicated log; returns its (index, term). The command is
        committed once (index, term) shows up in Ready.committed_entries."""
        self._require_leader()
        index = self._append([(bytes(data), ENTRY_NORMAL)])
        self._broadcast_append()
        return index, self.term

    def propose_conf_change(self, change: str, node: int) -> tuple[int, int]:
        """Propose a single-server membership change: "add_voter", "remove_voter" (removes a
        voter or learner) or "add_learner". Only one may be in progress at a time."""
        if change not in CONF_CHANGES:
            raise ValueError(f"change must be one of {CONF_CHANGES}, got {change!r}")
        self._require_leader()
        if self._pending_conf_index > self.log.applied:
            raise ProposalDropped("a membership change is still being applied: one at a time")
        members = self.voters | self.learners
        if (change == REMOVE_VOTER and node not in members) or (change == ADD_VOTER and node in self.voters) \
                or (change == ADD_LEARNER and node in members):
            raise ValueError(f"{change} {node}: nothing to change (voters {sorted(self.voters)}, "
                             f"learners {sorted(self.learners)})")
        index = self._append([(f"{change} {node}".encode(), ENTRY_CONF_CHANGE)])
        self._pending_conf_index = index
        self._broadcast_append()
        return index, self.term

    def _apply_conf_change(self, entry: Entry) -> None:
        if entry.index <= self._membership_history[-1][0]:
            return  # already in force (re-applied after a restart)
        change, node = entry.data.decode().split()
        node = int(node)
        voters, learners = set(self.voters), set(self.learners)
        voters.discard(node)
        learners.discard(node)
        if change == ADD_VOTER:
            voters.add(node)
        elif change == ADD_LEARNER:
            learners.add(node)
        self.voters, self.learners = frozenset(voters), frozenset(learners)
        self._membership_history.append((entry.index, self.voters, self.learners))
        if self.role != LEADER:
            return
        if node == self.id and node not in voters:
            self.become_follower(self.term, None)  # removed (or demoted): let the others elect
            return
        if node in voters or node in learners:
            pr = self.progress.setdefault(node, Progress(self.log.last_index() + 1))
            pr.learner = node in learners
        else:
            self.progress.pop(node, None)
            if self._transferee == node:
                self._transferee = None
        if self._maybe_commit():  # the quorum changed
            self._broadcast_commit()
        else:
            self._broadcast_append()

    def transfer_leadership(self, to: int) -> None:
        """Hand leadership to voter ``to``: bring its log up to date, then tell it to campaign
        (TimeoutNow). Proposals are refused meanwhile; the transfer is abandoned after an
        election timeout."""
        if self.role != LEADER:
            raise NotLeader(self.id, self.leader)
        if to == self.id or to not in self.voters:
            raise ValueError(f"cannot transfer leadership to {to}: voters are {sorted(self.voters)}, leader is {self.id}")
        self._transferee = to
        self._election_elapsed = 0  # the transfer gets one election timeout
        if self.progress[to].match == self.log.last_index():
            self._msgs.append(Message(TIMEOUT_NOW, self.id, to, self.term))
        else:
            self._send_appends(to)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read. When it is safe, ``ReadState(index, context)`` comes out
        in a Ready whose committed entries reach ``index``: apply them, then serve the read.
        A follower forwards the request to its leader. ``context`` must be unique per read."""
        if self.role == LEADER:
            self._read(bytes(context), self.id)
        elif self.leader is None:
            raise NotLeader(self.id, None)
        else:
            self._msgs.append(Message(READ_INDEX, self.id, self.leader, self.term, context=bytes(context)))

    def _read(self, context: bytes, requester: int) -> None:
        log = self.log
        if log.term(log.committed) != self.term:
            # Until an entry of this term commits we may not know the true commit index.
            self._reads_before_commit.append((context, requester))
        elif self.config.read_only == "lease" and self._lease_holds():
            self._release_read(log.committed, context, requester)
        elif len(self.voters) == 1:
            self._release_read(log.committed, context, requester)
        else:  # ReadIndex: confirm we still lead with a heartbeat round that carries the context
            self._pending_reads[context] = _PendingRead(log.committed, requester, {self.id})
            self._broadcast_heartbeat(context)

    def _lease_holds(self) -> bool:
        if self._transferee is not None:
            return False  # the transferee may be elected at any moment
        acked = sorted((self._clock if voter == self.id else self._acked_at.get(voter, -self._lease_ticks))
                       for voter in self.voters)
        oldest_in_quorum = acked[len(acked) - quorum(len(acked))]
        return self._clock - oldest_in_quorum < self._lease_ticks

    def _ack_read(self, context: bytes, voter: int) -> None:
        read = self._pending_reads.get(context)
        if read is None or voter not in self.voters:
            return
        read.acks.add(voter)
        if len(read.acks) < quorum(len(self.voters)):
            return
        # Leadership confirmed now also confirms it for every read that arrived before.
        for earlier in list(self._pending_reads):
            done = self._pending_reads.pop(earlier)
            self._release_read(done.index, earlier, done.requester)
            if earlier == context:
                break

    def _release_read(self, index: int, context: bytes, requester: int) -> None:
        if requester == self.id:
            self._read_states.append(ReadState(index, context))
        else:
            self._msgs.append(Message(READ_INDEX_RESP, self.id, requester, self.term, index=index, context=context))

    def compact(self, index: int, data: bytes) -> None:
        """The service's state after applying entries up to ``index``: keep it as the snapshot
        and drop those entries from storage. Lagging followers will get this snapshot."""
        if index > self.log.applied:
            raise ValueError(f"cannot compact to {index}: only entries up to {self.log.applied} are applied")
        if index <= self.storage.snapshot.index:
            return
        history = self._membership_history
        at = max(i for i, (since, _, _) in enumerate(history) if since <= index)
        _, voters, learners = history[at]
        self.storage.compact(Snapshot(index, self.log.term(index), bytes(data),
                                      tuple(sorted(voters)), tuple(sorted(learners))))
        del history[:at]

    def report_unreachable(self, to: int) -> None:
        """The transport could not reach ``to``: stop streaming to it and probe instead."""
        pr = self.progress.get(to)
        if pr is not None and pr.state == REPLICATE:
            pr.become_probe()

    # ================= Ready / advance =================
    def has_ready(self) -> bool:
        log = self.log
        hard, soft = self._prev_hard_state, self._prev_soft_state
        # fields compared one by one: building the two records costs more than the rest (called per message)
        return bool(self._msgs or log.unstable or log.pending_snapshot is not None
                    or log.committed > log.applied
                    or (self._read_states and self._read_states[0].index <= log.committed)
                    or hard.term != self.term or hard.vote != self.vote or hard.commit != log.committed
                    or soft.leader != self.leader or soft.role != self.role)

    def ready(self) -> Ready:
        """What the caller must do now (see Ready). Nothing changes until ``advance``."""
        log = self.log
        hard_state = HardState(self.term, self.vote, log.committed)
        soft_state = SoftState(self.leader, self.role)
        snapshot = log.pending_snapshot
        applied = snapshot.index if snapshot is not None else log.applied
        committed = tuple(log.slice(applied + 1, log.committed + 1))
        if committed:
            applied = committed[-1].index
        releasable = 0
        for read in self._read_states:
            if read.index > applied:
                break
            releasable += 1
        return Ready(hard_state=None if hard_state == self._prev_hard_state else hard_state,
                     soft_state=None if soft_state == self._prev_soft_state else soft_state,
                     entries=tuple(log.unstable), snapshot=snapshot, committed_entries=committed,
                     messages=tuple(self._msgs), read_states=tuple(self._read_states[:releasable]))

    def advance(self, ready: Ready) -> None:
        """The caller persisted, sent and applied ``ready``."""
        log = self.log
        if ready.hard_state is not None:
            self._prev_hard_state = ready.hard_state
        if ready.soft_state is not None:
            self._prev_soft_state = ready.soft_state
        if ready.snapshot is not None:
            log.stable_snapshot_to(ready.snapshot.index)
            log.applied = max(log.applied, ready.snapshot.index)
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
            if self.role == LEADER and self.progress[self.id].maybe_update(last.index) and self._maybe_commit():
                self._broadcast_commit()  # our own disk write was the last vote the entry needed
        for entry in ready.committed_entries:
            log.applied = entry.index
            if entry.kind == ENTRY_CONF_CHANGE:
                self._apply_conf_change(entry)
        del self._msgs[:len(ready.messages)]
        del self._read_states[:len(ready.read_states)]

    # ================= inspection =================
    def election_progress(self) -> float:
        """The share of its election timeout a follower or candidate has waited (0 for a leader)."""
        if self.role == LEADER:
            return 0.0
        return min(1.0, self._election_elapsed / self._randomized_timeout)

    def status(self) -> Status:
        progress = {}
        if self.role == LEADER:
            progress = {peer: FollowerProgress(pr.match, pr.next, pr.state, len(pr.inflight), pr.learner,
                                               pr.recent_active)
                        for peer, pr in sorted(self.progress.items())}
        return Status(self.id, self.role, self.term, self.vote, self.leader, self.log.committed, self.log.applied,
                      self.log.first_index(), self.log.last_index(), tuple(sorted(self.voters)),
                      tuple(sorted(self.learners)), progress, self._transferee)

    def __repr__(self) -> str:
        return (f"RaftNode(id={self.id}, role={self.role}, term={self.term}, leader={self.leader}, "
                f"commit={self.log.committed}, last={self.log.last_index()})")
