"""Shared-memory segments: the memfd handle, what this process holds, and the pool of memfds
that messages' buffers are written into.

Writing a buffer into a fresh memfd costs the kernel a page allocation and zeroing per 4 KiB
(about 11 ms per 16 MiB here, against 0.7 ms for the copy itself). The pool keeps memfds
mapped in this process and writes into pages already there. A message gets its own
read-only *open file* of the pooled memfd (opened anew through /proc/self/fd), sent with
SCM_RIGHTS; receivers map that file, and forward it as it is. inotify reports the moment
the last process holding that open file, by descriptor or mapping, lets it go
(IN_CLOSE_NOWRITE): only then is the memfd written again. One such file is out per memfd
at a time, so no two closes can be coalesced into one event. Receivers get read-only
files, so they cannot write into a sender's pages either.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import stat
import struct
import threading
import weakref
from collections import deque

POOL_BYTES = 256 * 1024 * 1024  # free memfds kept for reuse, at most, per process
FREE_LIMIT = 32  # and at most this many: each holds two descriptors (the memfd, its mapping's)
LENT_LIMIT = 64  # memfds out at once that the pool watches; past it the oldest is let go
_IN_CLOSE_NOWRITE = 0x10
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, name length


class SharedMemory:
    """A memfd (or another descriptor held the same way); it closes with the last reference."""

    __slots__ = ("fd", "__weakref__")

    def __init__(self, fd: int):
        self.fd = fd
        _held.add(self)

    def __del__(self):
        os.close(self.fd)


_held: "weakref.WeakSet[SharedMemory]" = weakref.WeakSet()  # the descriptors this process holds open


def held_memory(memories=None) -> dict[tuple[int, int], int]:
    """(device, inode) -> bytes of every memfd this process holds (or of ``memories``): the key
    names one segment whichever process holds it, so that the driver can count each once."""
    held = {}
    for memory in list(_held) if memories is None else memories:  # held by the list: none closes under fstat
        status = os.fstat(memory.fd)
        if stat.S_ISREG(status.st_mode):  # a memfd; socket ends to peers are held the same way
            held[status.st_dev, status.st_ino] = status.st_size
    return held


def write_fresh(fd: int, chunk: memoryview, offset: int) -> None:
    """``chunk`` (bytes) into a memfd's fresh pages at ``offset``: pwrite, not a mapping, as
    the kernel then fills them without a fault (and a zeroing) per page."""
    done = 0
    while done < chunk.nbytes:
        done += os.pwrite(fd, chunk[done:], offset + done)


def capacity_for(size: int) -> int:
    """The pool's size class for ``size`` bytes, in whole pages: a quarter of the power of two
    below it apart, so at most a quarter of a memfd goes unused."""
    pages = -(-size // mmap.PAGESIZE)
    if pages <= 4:
        return pages * mmap.PAGESIZE
    step = (1 << ((pages - 1).bit_length() - 1)) // 4
    return -(-pages // step) * step * mmap.PAGESIZE


class _Memfd:
    """A pooled memfd and the inotify watch that reports its lent file closed."""

    __slots__ = ("memory", "capacity", "watch", "mapping", "view")

    def __init__(self, capacity: int, watch_with):
        self.memory = SharedMemory(os.memfd_create("mlsys_ext", os.MFD_CLOEXEC))
        os.ftruncate(self.memory.fd, capacity)
        self.capacity = capacity
        self.watch = watch_with(self.memory.fd)
        self.mapping = self.view = None  # mapped at its first reuse: pages already there fault in cheaply

    def write(self, chunks: list[memoryview], spans: list[tuple[int, int]]) -> None:
        for (offset, length), chunk in zip(spans, chunks):
            chunk = chunk.cast("B")
            if self.view is None:
                write_fresh(self.memory.fd, chunk, offset)
            else:
                self.view[offset:offset + length] = chunk

    def map(self) -> None:
        if self.view is None:
            self.mapping = mmap.mmap(self.memory.fd, self.capacity)
            self.view = memoryview(self.mapping)

    def close(self) -> None:
        if self.view is not None:
            self.view.release()
            self.mapping.close()
        self.memory = self.mapping = self.view = None


class MemfdPool:
    """Memfds to write messages' buffers into, reused once every receiver has let go."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free: dict[int, deque[_Memfd]] = {}  # capacity -> memfds ready to write
        self._free_bytes = 0
        self._lent: dict[int, _Memfd] = {}  # watch -> memfd whose file is out, in lending order
        self._inotify = None
        self._libc = None

    def write(self, chunks: list[memoryview], spans: list[tuple[int, int]], end: int) -> SharedMemory:
        """A read-only open file of a pooled memfd holding ``chunks`` at ``spans`` (offset, length)."""
        with self._lock:
            self._collect()
            memfd = self._take(capacity_for(end))
        memfd.write(chunks, spans)
        lent = SharedMemory(os.open(f"/proc/self/fd/{memfd.memory.fd}", os.O_RDONLY | os.O_CLOEXEC))
        with self._lock:
            self._lent[memfd.watch] = memfd
            if len(self._lent) > LENT_LIMIT:  # receivers keep what they were sent: let the oldest go
                self._drop(self._lent.pop(next(iter(self._lent))))
        return lent

    def free_memory(self) -> dict[tuple[int, int], int]:
        """The free memfds, kept for reuse, as ``held_memory`` names them."""
        with self._lock:
            self._collect()
            return held_memory([memfd.memory for free in self._free.values() for memfd in free])

    def clear(self) -> None:
        """Close every memfd and the watch (what a stopped cluster leaves: no descriptor)."""
        with self._lock:
            for memfd in [m for free in self._free.values() for m in free] + list(self._lent.values()):
                memfd.close()  # the watches go with the inotify descriptor
            self._free.clear()
            self._lent.clear()
            self._free_bytes = 0
            if self._inotify is not None:
                os.close(self._inotify)
                self._inotify = None

    def _take(self, capacity: int) -> _Memfd:
        free = self._free.get(capacity)
        if free:
            self._free_bytes -= capacity
            memfd = free.pop()
            memfd.map()
            return memfd
        return _Memfd(capacity, self._watch)

    def _watch(self, fd: int) -> int:
        if self._inotify is None:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._inotify = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if self._inotify < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
        watch = self._libc.inotify_add_watch(self._inotify, f"/proc/self/fd/{fd}".encode(), _IN_CLOSE_NOWRITE)
        if watch < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        return watch

    def _drop(self, memfd: _Memfd) -> None:
        self._libc.inotify_rm_watch(self._inotify, memfd.watch)
        memfd.close()

    def _collect(self) -> None:
        """Take back the memfds whose lent file every process has closed."""
        if self._inotify is None:
            return
        while True:
            try:
                data = os.read(self._inotify, 64 * _EVENT.size)
            except BlockingIOError:
                return
            at = 0
            while at < len(data):
                watch, mask, _, name_length = _EVENT.unpack_from(data, at)
                at += _EVENT.size + name_length
                memfd = self._lent.pop(watch, None) if mask & _IN_CLOSE_NOWRITE else None
                if memfd is not None:
                    self._give_back(memfd)

    def _give_back(self, memfd: _Memfd) -> None:
        self._free.setdefault(memfd.capacity, deque()).append(memfd)
        self._free_bytes += memfd.capacity
        while self._free_bytes > POOL_BYTES or sum(map(len, self._free.values())) > FREE_LIMIT:
            largest = max(c for c, free in self._free.items() if free)  # gives up its least recently freed
            self._drop(self._free[largest].popleft())
            self._free_bytes -= largest


pool = MemfdPool()  # this process's
