"""The leader's bookkeeping for each follower (Progress), and majority arithmetic.

A follower's progress is in one of three states:

- probe: we do not know where its log matches ours. Send one append at a time and
  wait for the answer (or a heartbeat response) before sending the next.
- replicate: the logs match up to ``match``. Stream appends, moving ``next`` ahead
  optimistically, with at most ``max_inflight`` of them unacknowledged.
- snapshot: the entries it needs are compacted away; a snapshot is on its way.
"""
from __future__ import annotations

from collections import deque

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT_STATE = "snapshot"


class Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "inflight", "pending_snapshot",
                 "snapshot_heartbeats", "recent_active", "learner")

    def __init__(self, next_index: int, learner: bool = False):
        self.match = 0                   # highest index known to be in the follower's log
        self.next = next_index           # next index to send
        self.state = PROBE
        self.probe_sent = False          # probe state: an append is out, wait for its answer
        self.inflight: deque[int] = deque()  # replicate state: last index of each unacknowledged append
        self.pending_snapshot = 0        # snapshot state: index of the snapshot sent
        self.snapshot_heartbeats = 0     # snapshot state: heartbeats since the snapshot was sent
        self.recent_active = False       # heard from it since the last CheckQuorum round
        self.learner = learner

    def become_probe(self) -> None:
        # After a snapshot, resume right after it; otherwise right after what matches.
        self.next = max(self.match, self.pending_snapshot) + 1 if self.state == SNAPSHOT_STATE else self.match + 1
        self._reset(PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(REPLICATE)

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(SNAPSHOT_STATE)
        self.pending_snapshot = snapshot_index

    def _reset(self, state: str) -> None:
        self.state = state
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0
        self.snapshot_heartbeats = 0

    def is_paused(self, max_inflight: int) -> bool:
        """May the leader send this follower another append now?"""
        if self.state == PROBE:
            return self.probe_sent
        if self.state == REPLICATE:
            return len(self.inflight) >= max_inflight
        return True  # snapshot: wait until it is acknowledged

    def sent(self, last_index: int, entry_count: int) -> None:
        """An append carrying entries up to ``last_index`` went out."""
        if self.state == REPLICATE:
            if entry_count:
                self.next = last_index + 1
                self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged its log matches up to ``index``; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decrease(self, rejected: int, hinted_next: int) -> bool:
        """The follower rejected an append whose previous entry was ``rejected``. Move ``next``
        back to ``hinted_next`` (clamped to a sane range); False if the rejection is stale."""
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False  # an answer to an append sent before we found the match
            self.next = self.match + 1
            return True
        if rejected != self.next - 1:
            return False  # not the answer to our latest probe
        self.next = max(min(rejected, hinted_next), self.match + 1, 1)
        self.probe_sent = False
        return True


def quorum(voter_count: int) -> int:
    return voter_count // 2 + 1


def committed_index(matches: list[int]) -> int:
    """The highest index that a majority of voters hold, given each voter's match index."""
    ordered = sorted(matches, reverse=True)
    return ordered[quorum(len(ordered)) - 1]
