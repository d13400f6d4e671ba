"""RaftLog: the node's view of its log, stable storage plus an unstable tail not yet on disk.

Index 0 is a sentinel (term 0) so that "the entry before the first one" always exists.
Entries at ``offset`` and above live in ``unstable`` until the caller persists them and
calls ``stable_to``. A snapshot received from the leader also waits here (``pending_snapshot``)
until it is persisted; meanwhile it replaces storage as the log's base.
"""
from __future__ import annotations

from ._types import Entry, Snapshot


class RaftLog:
    def __init__(self, storage):
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1      # index of unstable[0]
        self.pending_snapshot: Snapshot | None = None
        self.committed = max(storage.hard_state.commit, storage.snapshot.index)
        self.applied = storage.snapshot.index        # last index handed to the service and advanced

    # ----- reading -----
    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.offset + len(self.unstable) - 1
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if it was compacted away or is past the end."""
        if index >= self.offset:
            position = index - self.offset
            return self.unstable[position].term if position < len(self.unstable) else None
        if self.pending_snapshot is not None:
            return self.pending_snapshot.term if index == self.pending_snapshot.index else None
        return self.storage.term(index)

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction: is a log ending at (last_index, last_term) at least as new as ours?"""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo <= index < hi, cut to ``max_bytes`` of data (but never fewer than one)."""
        if lo >= hi:
            return []
        entries = self.storage.entries(lo, min(hi, self.offset)) if lo < self.offset else []
        if hi > self.offset:
            entries += self.unstable[max(lo, self.offset) - self.offset:hi - self.offset]
        if max_bytes is not None:
            total = 0
            for count, entry in enumerate(entries):
                total += len(entry.data)
                if total > max_bytes and count > 0:
                    return entries[:count]
        return entries

    def first_index_of_term(self, index: int) -> int:
        """Walk back from ``index`` to the first entry with the same term (within the log we still have)."""
        term = self.term(index)
        first = self.first_index()
        while index > first and self.term(index - 1) == term:
            index -= 1
        return index

    # ----- writing -----
    def append(self, entries) -> int:
        """Add entries after a possible conflicting suffix is dropped; returns the new last index."""
        first = entries[0].index
        if first <= self.committed:
            raise AssertionError(f"entry {first} would overwrite committed entries (commit {self.committed})")
        if first == self.offset + len(self.unstable):
            self.unstable.extend(entries)
        elif first <= self.offset:
            # The new entries replace part of what storage holds; storage drops that suffix on save.
            self.offset = first
            self.unstable = list(entries)
        else:
            del self.unstable[first - self.offset:]
            self.unstable.extend(entries)
        return self.last_index()

    def maybe_append(self, prev_index: int, prev_term: int, commit: int, entries) -> int | None:
        """The follower's side of AppendEntries. Returns the last index the leader's message
        vouches for, or None when the log does not contain (prev_index, prev_term)."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        for entry in entries:  # skip entries we already have; the first mismatch starts the new part
            if not self.match_term(entry.index, entry.term):
                self.append(entries[entry.index - prev_index - 1:])
                break
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            self.committed = index
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot from the leader."""
        self.pending_snapshot = snapshot
        self.unstable = []
        self.offset = snapshot.index + 1
        self.committed = snapshot.index

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are on disk now: drop them from the unstable tail."""
        if index >= self.offset and self.term(index) == term:
            del self.unstable[:index + 1 - self.offset]
            self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.pending_snapshot is not None and self.pending_snapshot.index == index:
            self.pending_snapshot = None
