"""Stable storage for a Raft node: MemoryStorage, and FileStorage, an append-only file of records.

The node reads its storage (what is already on disk) and never writes to it except in
``compact``; the caller writes each Ready with ``storage.save(ready)`` before sending its
messages. A storage holds the latest snapshot, the entries after it, and the hard state.

FileStorage format (all integers big-endian)::

    header   b"RAFTWAL\\0"  u16 version (2)
    record   u32 payload length | u8 type | u32 crc32(type byte + payload) | u32 crc32(those 9 bytes) | payload
    ENTRY      (1)  u64 index, u64 term, u8 kind, data bytes
    HARD_STATE (2)  u64 term, i64 vote (-1 = none), u64 commit
    SNAPSHOT   (3)  u64 index, u64 term, u32 #voters, u32 #learners, i64 ids..., data bytes

Replaying the records rebuilds the state: an ENTRY record at index i replaces the entry at
i and drops every entry after it (that is how a conflicting suffix is overwritten, with no
separate truncate record); the last HARD_STATE wins. A snapshot (installed or made by
compaction) rewrites the file: snapshot, hard state and the remaining entries go to a
temporary file that atomically replaces the old one, so a SNAPSHOT record only ever
comes first.

On open, a damaged record that no intact record follows (a torn write: a crash in the
middle of the last write) is cut off with whatever comes after it, and the bytes cut are
reported in ``truncated_bytes``; a damaged record followed by an intact one is not a torn
write, and raises CorruptLogError. Each record header has its own CRC, so a damaged
length is never trusted to say where the next record starts.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from ._types import Entry, HardState, Ready, Snapshot


class MemoryStorage:
    """Storage in memory: survives a simulated crash of the node object, not of the process."""

    def __init__(self):
        self.hard_state = HardState()
        self.snapshot = Snapshot()
        self._entries: list[Entry] = []  # the entries after snapshot.index

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``, or None when it is compacted away or not there yet."""
        offset = index - self.snapshot.index
        if offset == 0:
            return self.snapshot.term
        if 0 < offset <= len(self._entries):
            return self._entries[offset - 1].term
        return None

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi (all must be present)."""
        first = self.snapshot.index + 1
        if lo < first or hi > self.last_index() + 1:
            raise IndexError(f"entries [{lo}, {hi}) are outside the stored range [{first}, {self.last_index()}]")
        return self._entries[lo - first:hi - first]

    def save(self, ready: Ready) -> None:
        """Persist what a Ready asks for: its snapshot, then its entries, then its hard state."""
        if ready.snapshot is not None:
            self._install(ready.snapshot)
        if ready.entries:
            self._append(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        """Replace the entries up to ``snapshot.index`` by the snapshot, keeping the ones after it."""
        if snapshot.index <= self.snapshot.index:
            return
        if snapshot.index > self.last_index():
            raise ValueError(f"cannot compact to {snapshot.index}: the log ends at {self.last_index()}")
        del self._entries[:snapshot.index - self.snapshot.index]
        self.snapshot = snapshot

    def _install(self, snapshot: Snapshot) -> None:
        """A snapshot from the leader replaces the whole log."""
        self.snapshot = snapshot
        self._entries = []

    def _append(self, entries) -> None:
        first = entries[0].index
        if not self.snapshot.index < first <= self.last_index() + 1:
            raise ValueError(f"entry {first} does not follow the stored log [{self.first_index()}, {self.last_index()}]")
        del self._entries[first - self.snapshot.index - 1:]  # overwrite a conflicting suffix
        self._entries.extend(entries)


class CorruptLogError(ValueError):
    """The log file is damaged somewhere other than its last record."""


_MAGIC = b"RAFTWAL\x00"
_VERSION = 2  # 2 added the record header's CRC
_FILE_HEADER = struct.Struct(">8sH")
_RECORD_FIELDS = struct.Struct(">IBI")  # payload length, type, payload CRC
_HEADER_CRC = struct.Struct(">I")
_RECORD_HEADER_SIZE = _RECORD_FIELDS.size + _HEADER_CRC.size
_ENTRY = struct.Struct(">QQB")
_HARD_STATE = struct.Struct(">QqQ")
_SNAPSHOT = struct.Struct(">QQII")
ENTRY_RECORD, HARD_STATE_RECORD, SNAPSHOT_RECORD = 1, 2, 3


def _payload_crc(kind: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(bytes((kind,))))


def _record(kind: int, payload: bytes) -> bytes:
    fields = _RECORD_FIELDS.pack(len(payload), kind, _payload_crc(kind, payload))
    return fields + _HEADER_CRC.pack(zlib.crc32(fields)) + payload


def _intact_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(payload length, type, payload CRC) of the record at ``pos``; None if its header is cut short or damaged."""
    crc_at = pos + _RECORD_FIELDS.size
    if (crc_at + _HEADER_CRC.size > len(data)
            or zlib.crc32(data[pos:crc_at]) != _HEADER_CRC.unpack_from(data, crc_at)[0]):
        return None
    return _RECORD_FIELDS.unpack_from(data, pos)


def _intact_record(data: bytes, pos: int) -> tuple[int, bytes] | None:
    """(type, payload) of the record at ``pos``, or None if any of it is missing or fails a CRC."""
    header = _intact_header(data, pos)
    if header is None:
        return None
    length, kind, crc = header
    payload = data[pos + _RECORD_HEADER_SIZE:pos + _RECORD_HEADER_SIZE + length]
    if len(payload) < length or _payload_crc(kind, payload) != crc:
        return None
    return kind, payload


def _entry_record(entry: Entry) -> bytes:
    return _record(ENTRY_RECORD, _ENTRY.pack(entry.index, entry.term, entry.kind) + entry.data)


def _hard_state_record(hs: HardState) -> bytes:
    return _record(HARD_STATE_RECORD, _HARD_STATE.pack(hs.term, -1 if hs.vote is None else hs.vote, hs.commit))


def _snapshot_record(snap: Snapshot) -> bytes:
    ids = snap.voters + snap.learners
    head = _SNAPSHOT.pack(snap.index, snap.term, len(snap.voters), len(snap.learners))
    return _record(SNAPSHOT_RECORD, head + struct.pack(f">{len(ids)}q", *ids) + snap.data)


class FileStorage(MemoryStorage):
    """MemoryStorage mirrored to an append-only file; ``fsync=True`` makes each save durable.

    ``truncated_bytes`` is how many bytes of a torn tail were cut when the file was opened.
    """

    def __init__(self, path, fsync: bool = True):
        super().__init__()
        self.path = Path(path)
        self.fsync = fsync
        self.truncated_bytes = 0
        self._file = None
        if self.path.exists() and self.path.stat().st_size > 0:
            self._replay()
        else:
            self._rewrite()
        self._file = open(self.path, "ab")

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def save(self, ready: Ready) -> None:
        super().save(ready)
        if ready.snapshot is not None:
            self._rewrite()  # the new state, entries and hard state included, replaces the file
            return
        records = [_entry_record(e) for e in ready.entries]
        if ready.hard_state is not None:
            records.append(_hard_state_record(ready.hard_state))
        if records:
            self._write(b"".join(records))

    def compact(self, snapshot: Snapshot) -> None:
        super().compact(snapshot)
        self._rewrite()

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def _rewrite(self) -> None:
        """Write the whole state to a fresh file and atomically swap it in."""
        records = [_FILE_HEADER.pack(_MAGIC, _VERSION)]
        if self.snapshot.index:
            records.append(_snapshot_record(self.snapshot))
        records.append(_hard_state_record(self.hard_state))
        records.extend(_entry_record(e) for e in self._entries)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(records))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self.fsync:  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        if self._file is not None:
            self._file.close()
            self._file = open(self.path, "ab")

    def _replay(self) -> None:
        data = self.path.read_bytes()
        if len(data) < _FILE_HEADER.size:
            if not _FILE_HEADER.pack(_MAGIC, _VERSION).startswith(data):
                raise CorruptLogError(f"{self.path} is not a Raft log (bad header)")
            self.truncated_bytes = len(data)  # a crash while creating the file
            self._rewrite()
            return
        magic, version = _FILE_HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise CorruptLogError(f"{self.path} is not a Raft log (bad magic {magic!r})")
        if version != _VERSION:
            raise CorruptLogError(f"{self.path} has format version {version}; this code reads version {_VERSION}")
        pos = _FILE_HEADER.size
        while (record := _intact_record(data, pos)) is not None:
            kind, payload = record
            self._apply_record(kind, payload, pos)
            pos += _RECORD_HEADER_SIZE + len(payload)
        if pos < len(data):
            self._check_torn(data, pos)
            self.truncated_bytes = len(data) - pos
            with open(self.path, "r+b") as f:
                f.truncate(pos)
                if self.fsync:
                    os.fsync(f.fileno())

    def _check_torn(self, data: bytes, pos: int) -> None:
        """Raise CorruptLogError unless the damaged record at ``pos`` can be a torn write: no intact record follows."""
        header = _intact_header(data, pos)
        # search from where an intact header says the record ends; a damaged header's length cannot be trusted
        after = pos + 1 if header is None else pos + _RECORD_HEADER_SIZE + header[0]
        following = next((at for at in range(after, len(data)) if _intact_record(data, at) is not None), None)
        if following is not None:
            raise CorruptLogError(f"{self.path}: record at byte {pos} is damaged and an intact record follows at "
                                  f"byte {following}; the log is corrupt, not torn")

    def _apply_record(self, kind: int, payload: bytes, pos: int) -> None:
        if kind == ENTRY_RECORD:
            index, term, entry_kind = _ENTRY.unpack_from(payload)
            entry = Entry(index, term, payload[_ENTRY.size:], entry_kind)
            if not self.snapshot.index < index <= self.last_index() + 1:
                raise CorruptLogError(f"{self.path}: entry {index} at byte {pos} does not follow the log "
                                      f"[{self.first_index()}, {self.last_index()}]")
            self._append((entry,))
        elif kind == HARD_STATE_RECORD:
            term, vote, commit = _HARD_STATE.unpack(payload)
            self.hard_state = HardState(term, None if vote < 0 else vote, commit)
        elif kind == SNAPSHOT_RECORD:
            index, term, n_voters, n_learners = _SNAPSHOT.unpack_from(payload)
            ids = struct.unpack_from(f">{n_voters + n_learners}q", payload, _SNAPSHOT.size)
            data = payload[_SNAPSHOT.size + 8 * len(ids):]
            self._install(Snapshot(index, term, data, ids[:n_voters], ids[n_voters:]))
        else:
            raise CorruptLogError(f"{self.path}: unknown record type {kind} at byte {pos}")
