"""MemoryStorage and FileStorage: round trips, overwritten suffixes, torn tails, corruption, fsync."""
import bisect
import os

import pytest

from mlsys_ext.raft import CorruptLogError, Entry, FileStorage, HardState, MemoryStorage, Ready, Snapshot

from .harness import Network


def entries(lo, hi, term=1):
    return tuple(Entry(i, term, b"cmd%d" % i) for i in range(lo, hi))


def state(storage):
    return (storage.hard_state, storage.snapshot, storage.first_index(), storage.last_index(),
            storage.entries(storage.first_index(), storage.last_index() + 1))


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_save_overwrites_a_conflicting_suffix(kind, tmp_path):
    storage = MemoryStorage() if kind == "memory" else FileStorage(tmp_path / "log", fsync=False)
    storage.save(Ready(entries=entries(1, 6), hard_state=HardState(1, 0, 2)))
    storage.save(Ready(entries=entries(4, 5, term=2)))
    assert [e.term for e in storage.entries(1, 5)] == [1, 1, 1, 2]
    assert storage.last_index() == 4 and storage.term(4) == 2 and storage.term(5) is None
    assert storage.hard_state == HardState(1, 0, 2)
    with pytest.raises(ValueError):
        storage.save(Ready(entries=entries(7, 8)))  # a gap


def test_file_storage_round_trip(tmp_path):
    path = tmp_path / "raft.log"
    with FileStorage(path) as storage:
        storage.save(Ready(entries=entries(1, 10), hard_state=HardState(3, 2, 5)))
        storage.save(Ready(entries=(Entry(10, 3, b"\x00\xff" * 100, 1),), hard_state=HardState(3, None, 9)))
        storage.save(Ready(entries=entries(8, 9, term=3)))   # overwrite 8.. : 9 and 10 go
        before = state(storage)
    with FileStorage(path) as reopened:
        assert state(reopened) == before
        assert reopened.truncated_bytes == 0
        assert reopened.hard_state == HardState(3, None, 9)


def test_file_storage_compaction_and_snapshot_install_rewrite_the_file(tmp_path):
    path = tmp_path / "raft.log"
    with FileStorage(path, fsync=False) as storage:
        storage.save(Ready(entries=entries(1, 101), hard_state=HardState(1, 0, 100)))
        size_before = path.stat().st_size
        storage.compact(Snapshot(90, 1, b"state@90", (0, 1, 2), (3,)))
        assert path.stat().st_size < size_before / 5
        assert storage.first_index() == 91 and storage.term(90) == 1 and storage.term(89) is None
        compacted = state(storage)
    with FileStorage(path) as reopened:
        assert state(reopened) == compacted
        reopened.save(Ready(snapshot=Snapshot(200, 4, b"from leader", (0, 1, 2)), hard_state=HardState(4, 1, 200)))
        installed = state(reopened)
        assert reopened.last_index() == 200 and reopened.entries(201, 201) == []
    with FileStorage(path) as reopened:
        assert state(reopened) == installed


def write_log(path, count=5):
    with FileStorage(path, fsync=False) as storage:
        for i in range(1, count + 1):
            storage.save(Ready(entries=entries(i, i + 1), hard_state=HardState(1, 0, i - 1)))


@pytest.mark.parametrize("cut", [1, 5, 12, 30])
def test_a_torn_tail_is_cut_and_reported(tmp_path, cut):
    path = tmp_path / "raft.log"
    write_log(path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with FileStorage(path) as storage:
        assert storage.truncated_bytes > 0
        assert 1 <= storage.last_index() <= 5
        assert storage.entries(1, storage.last_index() + 1) == list(entries(1, storage.last_index() + 1))
        good_size = path.stat().st_size
        storage.save(Ready(entries=entries(storage.last_index() + 1, 7)))  # the log goes on after the cut
    assert good_size == len(data) - cut - storage.truncated_bytes
    with FileStorage(path) as storage:
        assert storage.truncated_bytes == 0 and storage.last_index() == 6


def test_a_garbled_last_record_is_a_torn_write(tmp_path):
    path = tmp_path / "raft.log"
    write_log(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with FileStorage(path) as storage:
        assert storage.truncated_bytes > 0 and storage.last_index() == 5  # only the hard state record was lost
        assert storage.hard_state.commit == 3


def test_corruption_before_the_tail_raises(tmp_path):
    path = tmp_path / "raft.log"
    write_log(path)
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF   # inside the first records
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="corrupt, not torn"):
        FileStorage(path)


def write_records(path):
    """A small log written one record per save: its bytes, and the state and file size after each save.
    The last entry carries a copy of an earlier record as its data, which must not pass for a record of its own."""
    with FileStorage(path, fsync=False) as storage:
        states, sizes = [state(storage)], [path.stat().st_size]
        for ready in (Ready(entries=entries(1, 2)), Ready(entries=entries(2, 3)), Ready(hard_state=HardState(2, 1, 1))):
            storage.save(ready)
            states.append(state(storage))
            sizes.append(path.stat().st_size)
        storage.save(Ready(entries=(Entry(3, 2, path.read_bytes()[sizes[0]:sizes[1]]),)))
        states.append(state(storage))
        sizes.append(path.stat().st_size)
    return path.read_bytes(), states, sizes


def test_a_flipped_bit_is_refused_or_costs_at_most_the_last_record(tmp_path):
    path = tmp_path / "raft.log"
    data, states, _ = write_records(path)
    silent_losses = []
    for bit in range(8 * len(data)):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << bit % 8
        path.write_bytes(bytes(damaged))
        try:
            with FileStorage(path, fsync=False) as storage:
                loaded = state(storage)
        except CorruptLogError:
            continue
        if loaded not in states[-2:]:  # only the last record can be a torn write
            silent_losses.append(bit)
    assert silent_losses == []


def test_a_log_cut_at_any_byte_keeps_every_whole_record(tmp_path):
    path = tmp_path / "raft.log"
    data, states, sizes = write_records(path)
    for cut in range(sizes[0], len(data)):
        path.write_bytes(data[:cut])
        whole = bisect.bisect_right(sizes, cut) - 1  # the saves that were written in full
        with FileStorage(path, fsync=False) as storage:
            assert (state(storage), storage.truncated_bytes) == (states[whole], cut - sizes[whole]), f"cut at {cut}"


@pytest.mark.parametrize("version", [1, 3])
def test_an_old_or_unknown_format_version_is_refused(tmp_path, version):
    path = tmp_path / "raft.log"
    write_log(path)
    data = bytearray(path.read_bytes())
    data[8:10] = version.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match=f"format version {version}; this code reads version 2"):
        FileStorage(path)


def test_a_file_that_is_not_a_raft_log_is_refused(tmp_path):
    path = tmp_path / "other"
    path.write_bytes(b"hello world, this is not a log")
    with pytest.raises(CorruptLogError, match="not a Raft log"):
        FileStorage(path)


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_option(tmp_path, monkeypatch, fsync):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    with FileStorage(tmp_path / "raft.log", fsync=fsync) as storage:
        calls.clear()
        storage.save(Ready(entries=entries(1, 4), hard_state=HardState(1, 0, 0)))  # one fsync per save
        assert len(calls) == (1 if fsync else 0)


def test_a_cluster_on_file_storage_survives_restarts(tmp_path):
    counter = iter(range(100))
    factory = lambda: FileStorage(tmp_path / f"node{next(counter)}.log", fsync=False)  # noqa: E731
    net = Network(3, storage_factory=factory)
    net.elect(0)
    for k in range(10):
        net.propose(b"v%d" % k)
    net.stabilize()
    for i in (0, 1, 2):
        net.crash(i)
        net.storages[i].close()
        net.storages[i] = FileStorage(net.storages[i].path, fsync=False)
        net.restart(i)
    assert [n.term for n in net.nodes.values()] == [1, 1, 1]
    assert all(n.log.last_index() == 11 for n in net.nodes.values())
    net.tick(60)
    leader = net.leader()
    assert leader is not None
    net.propose(b"after")
    net.tick(3)
    assert all(n.log.committed == 13 for n in net.nodes.values())
    net.check_safety()
    for s in net.storages.values():
        s.close()


def test_storage_refuses_reads_outside_its_range():
    storage = MemoryStorage()
    storage.save(Ready(entries=entries(1, 4)))
    storage.compact(Snapshot(2, 1))
    with pytest.raises(IndexError):
        storage.entries(1, 3)
    assert storage.entries(3, 4) == [Entry(3, 1, b"cmd3")]
    assert storage.term(2) == storage.term(3) == 1 and storage.term(1) is None
