"""Framed messages over a Unix socket, and their encoding.

Round trips on a small VM are dominated by the time a blocked process takes to
wake up, so a reader first polls without blocking for a short while (``spin``)
and only then sleeps in ``poll``. That is what lets a sync call beat the wake-up
latency when calls come back to back.
"""
from __future__ import annotations

import array
import io
import mmap
import os
import pickle
import select
import socket
import struct
import threading
import time
import traceback
import weakref
from collections import deque

import cloudpickle

from ._errors import RemoteError, RemoteTraceback
from ._shm import SharedMemory, pool, write_fresh

_HEADER = struct.Struct("!I")
_FDS_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)  # descriptors one read can take
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
SPIN_SECONDS = 200e-6
_READ_SIZE = 1 << 18  # bytes one read takes at most


def is_plain(obj, depth: int = 2) -> bool:
    """Builtin scalars, possibly in shallow tuples, lists and str-keyed dicts."""
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if not depth:
        return False
    if kind is tuple or kind is list:  # loops, not all(generator): this runs for every message
        for x in obj:
            if type(x) not in _PLAIN and not is_plain(x, depth - 1):
                return False
        return True
    if kind is dict:
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in _PLAIN and not is_plain(v, depth - 1)):
                return False
        return True
    return False


def dumps(obj) -> bytes:
    """Plain pickle for plain data (3x faster), cloudpickle otherwise.

    Notebook-defined classes and functions live in ``__main__`` of the kernel,
    which a worker does not have; cloudpickle sends them by value.
    """
    if is_plain(obj):
        return pickle.dumps(obj, 5)
    return cloudpickle.dumps(obj, 5)


# Large buffers (numpy arrays) of call arguments and return values travel in a memfd
# sent beside the frame (SCM_RIGHTS), not through the pickle stream: the receiver maps
# it read-only, so its arrays are zero-copy views, and nothing names the memory but the
# descriptors, which the kernel frees with the last process holding one. An ObjectRef
# (``cluster.put``) inside a message travels the same way, as its own memfd, and is
# resolved on arrival: n actors sent one ref map the same pages.
SHARED_MEMORY_THRESHOLD = 256 * 1024  # bytes; smaller buffers stay in the pickle
_SHARED = b"M"  # a payload's first byte when descriptors come with it (a pickle's is 0x80)
_REF = b"R"  # an ObjectRef's payload: its memfd holds the pickle itself, then its buffers
_PREFIX = struct.Struct("<HHI")  # refs inside, memfds holding its buffers, buffers
_SPAN = struct.Struct("<HQQ")  # one buffer: which of the memfds, offset, length
_ALIGN = 64


class _Mapping(mmap.mmap):
    """A received memfd mapped read-only. It keeps the memfd open, so that an array viewing
    it can be sent on (returned, forwarded) as the same memfd, without a copy."""

    def __init__(self, memory: SharedMemory, size: int):
        self.memory, self.size, self.start = memory, size, _address(self)
        _mappings.add(self)

    def __new__(cls, memory: SharedMemory, size: int):
        return super().__new__(cls, memory.fd, size, prot=mmap.PROT_READ)


_mappings: "weakref.WeakSet[_Mapping]" = weakref.WeakSet()  # the live ones of this process


def _address(buffer) -> int:
    """Where a (possibly read-only) buffer starts in this process's memory."""
    import numpy as np  # here, not at import: a worker that never maps memory starts ~0.1 s sooner

    return np.frombuffer(buffer, np.uint8).__array_interface__["data"][0]


def _mapping_of(raw: memoryview):
    """(mapping, offset) if ``raw`` lies in a live received mapping, else None."""
    if not _mappings:
        return None
    address = _address(raw)
    for mapping in list(_mappings):
        if mapping.start <= address and address + raw.nbytes <= mapping.start + mapping.size:
            return mapping, address - mapping.start
    return None


def _layout(chunks: list) -> tuple[list[tuple[int, int]], int]:
    """Where ``chunks`` (byte memoryviews) go in one memfd, each at an aligned offset: their
    (offset, length) spans, and the end."""
    spans, end = [], 0
    for chunk in chunks:
        spans.append((end, chunk.nbytes))
        end += max(-(-chunk.nbytes // _ALIGN) * _ALIGN, _ALIGN)
    return spans, end


def _memfd(chunks: list) -> tuple[SharedMemory, list[tuple[int, int]]]:
    """A new memfd of its own holding ``chunks``, each at an aligned offset (an ObjectRef's:
    it lives as long as the ref, so the pool's reuse is not for it)."""
    spans, end = _layout(chunks)
    memory = SharedMemory(os.memfd_create("mlsys_ext", os.MFD_CLOEXEC))
    for (offset, _), chunk in zip(spans, chunks):
        write_fresh(memory.fd, chunk.cast("B"), offset)
    os.ftruncate(memory.fd, end)
    return memory, spans


def _head(marker: bytes, refs: int, memfds: int, spans) -> bytes:
    return marker + _PREFIX.pack(refs, memfds, len(spans)) + b"".join(_SPAN.pack(*span) for span in spans)


class ObjectRef:
    """An object put in shared memory once (``cluster.put``): ``get()`` it, or pass it to
    actors, which receive the object itself, mapped from the same memory."""

    __slots__ = ("_payload", "_memory", "_value", "__weakref__")

    def __init__(self, payload: bytes, memory: SharedMemory):
        self._payload, self._memory, self._value = payload, memory, None

    def get(self):
        """The object: its arrays are read-only views of the shared memory."""
        if self._memory is None:
            raise ValueError("this ObjectRef was released when its cluster stopped")
        if self._value is None:
            self._value = (loads(SharedPayload(self._payload, [self._memory])),)
        return self._value[0]

    def release(self) -> None:
        """Drop this process's hold on the memory (what ``stop()`` does to its cluster's refs)."""
        self._memory = self._value = None

    def __reduce__(self):
        raise TypeError("an ObjectRef travels only inside its cluster's calls (its memory goes beside them)")

    def __repr__(self) -> str:
        state = "released" if self._memory is None else f"{payload_size(self._payload):,} bytes"
        return f"<ObjectRef {state}>"


def put(obj) -> ObjectRef:
    """``obj`` in one memfd: its pickle, then each of its buffers out of band."""
    buffers = []
    data = cloudpickle.dumps(obj, 5, buffer_callback=lambda b: _leave_pickle(b, 1, buffers))
    memory, spans = _memfd([memoryview(data)] + [raw for raw, _ in buffers])
    return ObjectRef(_head(_REF, 0, 1, [(0, *span) for span in spans]), memory)


def _leave_pickle(buffer: pickle.PickleBuffer, threshold: int | None, into: list):
    """A buffer_callback: a contiguous buffer of ``threshold`` bytes or more leaves the pickle
    (returns None; (its bytes, the received mapping it lies in or None) join ``into``)."""
    try:
        raw = buffer.raw()
    except BufferError:  # not contiguous: it stays in the pickle
        return True
    if threshold is None or raw.nbytes < threshold:
        return True
    into.append((raw, _mapping_of(raw)))
    return None


class _Pickler(cloudpickle.Pickler):
    """cloudpickle that lifts ObjectRefs out of the stream: their descriptors go beside it."""

    def __init__(self, file, refs: list, buffer_callback):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.refs = refs

    def persistent_id(self, obj):
        if type(obj) is not ObjectRef:
            return None
        if obj._memory is None:
            raise ValueError("an ObjectRef released when its cluster stopped cannot be sent")
        self.refs.append(obj)
        return obj._payload


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, buffers, refs: list):
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.refs = refs

    def persistent_load(self, payload):
        return loads(SharedPayload(payload, [self.refs.pop(0)]))


class SharedPayload:
    """A received payload whose large buffers, and the refs inside it, are mapped read-only."""

    __slots__ = ("data", "buffers", "refs", "size")

    def __init__(self, payload, memories: list[SharedMemory]):
        refs, memfds, count = _PREFIX.unpack_from(payload, 1)
        at = 1 + _PREFIX.size
        spans = [_SPAN.unpack_from(payload, at + i * _SPAN.size) for i in range(count)]
        self.size = len(payload) + sum(n for _, _, n in spans)
        views = [memoryview(_Mapping(memory, os.fstat(memory.fd).st_size)) for memory in memories[:memfds]]
        buffers = [views[i][o:o + n] for i, o, n in spans]  # each mapping outlives this payload
        if payload[:1] == _REF:
            self.data, self.buffers = buffers[0], buffers[1:]
        else:
            self.data, self.buffers = bytes(memoryview(payload)[at + count * _SPAN.size:]), buffers
        self.refs = memories[memfds:memfds + refs]  # one memfd each, in the order the refs were pickled


def encode(obj, threshold: int | None) -> tuple[bytes, tuple[SharedMemory, ...]]:
    """``obj`` pickled, and the memfds to send beside it: with ``threshold``, buffers of that
    many bytes or more leave the pickle, into a memfd of this process's pool, or as the
    received memfd they already lie in; and one memfd per ObjectRef inside it."""
    if is_plain(obj):
        return pickle.dumps(obj, 5), ()
    large, refs = [], []
    stream = io.BytesIO()
    _Pickler(stream, refs, lambda buffer: _leave_pickle(buffer, threshold, large)).dump(obj)
    data = stream.getvalue()
    if not large and not refs:
        return data, ()
    copies = [raw for raw, found in large if found is None]
    memories, spans, index = [], [], {}
    if copies:
        copied, end = _layout(copies)
        memories.append(pool.write(copies, copied, end))
        copied = iter(copied)
    for raw, found in large:
        if found is None:
            spans.append((0, *next(copied)))
            continue
        mapping, offset = found
        if id(mapping) not in index:
            index[id(mapping)] = len(memories)
            memories.append(mapping.memory)
        spans.append((index[id(mapping)], offset, raw.nbytes))
    head = _head(_SHARED, len(refs), len(memories), spans)
    return head + data, tuple(memories) + tuple(ref._memory for ref in refs)


def shared_count(payload) -> int:
    """How many descriptors came with ``payload`` (the next ones its channel received)."""
    if payload[:1] != _SHARED:
        return 0
    refs, memfds, _ = _PREFIX.unpack_from(payload, 1)
    return refs + memfds


def payload_size(payload) -> int:
    """What a payload carries, its shared buffers included (the trace's bytes column)."""
    if isinstance(payload, SharedPayload):
        return payload.size
    if payload[:1] not in (_SHARED, _REF):
        return len(payload)
    _, _, count = _PREFIX.unpack_from(payload, 1)
    at = 1 + _PREFIX.size
    return len(payload) + sum(_SPAN.unpack_from(payload, at + i * _SPAN.size)[2] for i in range(count))


def loads(payload):
    """A payload back to its object; a SharedPayload's arrays are read-only views of its memfds.
    A payload of a backend's own (the Ray backend's, carrying object refs) loads itself."""
    if isinstance(payload, SharedPayload):
        if payload.refs:
            return _Unpickler(payload.data, payload.buffers, payload.refs).load()
        return pickle.loads(payload.data, buffers=payload.buffers)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return pickle.loads(payload)
    return payload.load()


class Channel:
    """One end of a socket pair carrying length-prefixed frames.

    Any thread may send (sends are serialised by a lock); one thread at a time
    reads, which the owner of the channel arranges. A ``queued`` channel never
    blocks a sender: what the socket will not take now waits in an outbox that
    ``flush()`` sends later. The driver's channels are queued, because a driver
    blocked writing to a worker that is itself blocked writing to the driver
    would stop every socket from draining. Actors' direct sockets are queued
    too: the actor's own thread writes out what waits while it reads its
    other sockets, and the worker's delay thread leaves what does not fit.
    """

    __slots__ = ("sock", "fd", "_buf", "_send_lock", "closed", "_poller", "fds", "_outbox", "drained")

    def __init__(self, sock: socket.socket, carries_fds: bool = False, queued: bool = False):
        self.sock = sock
        # Descriptors that arrived with frames, in order; None when this channel carries none.
        self.fds: list[int] | None = [] if carries_fds else None
        self.fd = sock.fileno()
        self._buf = bytearray()
        self._send_lock = threading.Lock()
        self.closed = False
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)
        # (rest of a frame, descriptors still to go with it) in order; None: sends block instead
        self._outbox: deque | None = deque() if queued else None
        # True when the last read took all the socket held then (short, and no descriptors
        # that could have cut it short): a reader draining it need not read again to know
        self.drained = False

    def fileno(self) -> int:
        return self.fd

    def send(self, data: bytes, fds: list[int] = ()) -> bool:
        """Send one frame (with ``fds`` attached); True if part of it waits in the outbox."""
        frame = _HEADER.pack(len(data)) + data
        with self._send_lock:
            if self._outbox is None:
                sent = socket.send_fds(self.sock, [frame], fds) if fds else 0
                self.sock.sendall(memoryview(frame)[sent:])
                return False
            if not self._outbox:
                sent = self._send_some(frame, fds)
                if sent == len(frame):
                    return False
                frame, fds = memoryview(frame)[sent:], (() if sent else fds)
            # the caller may close its descriptors as soon as we return
            self._outbox.append((frame, [os.dup(fd) for fd in fds]))
            return True

    def _send_some(self, frame, fds) -> int:
        try:
            if fds:
                return socket.send_fds(self.sock, [frame], fds, socket.MSG_DONTWAIT)
            return self.sock.send(frame, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0

    def flush(self) -> bool:
        """Send what the outbox holds without blocking; True once it is empty.

        OSError when the peer is gone (its end-of-file reaches the reader).
        """
        with self._send_lock:
            box = self._outbox
            while box:
                frame, fds = box[0]
                sent = self._send_some(frame, fds)
                if sent:
                    _close_all(fds)
                    fds = []
                if sent < len(frame):
                    box[0] = (memoryview(frame)[sent:], fds)
                    return False
                box.popleft()
            return True

    def _read(self, flags: int) -> bytes:
        if self.fds is None:
            data = self.sock.recv(_READ_SIZE, flags)
            self.drained = len(data) < _READ_SIZE
            return data
        # A plain recv() would silently close descriptors sent with the data; and
        # socket.recv_fds ignores its flags (so MSG_DONTWAIT would block).
        data, ancillary, _, _ = self.sock.recvmsg(_READ_SIZE, _FDS_SPACE, flags | socket.MSG_CMSG_CLOEXEC)
        for level, kind, fds in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds.extend(array.array("i", fds[:len(fds) - len(fds) % 4]))
        self.drained = len(data) < _READ_SIZE and not ancillary
        return data

    def _pop_frame(self):
        buf = self._buf
        if len(buf) < 4:
            return None
        (n,) = _HEADER.unpack_from(buf)
        if len(buf) < 4 + n:
            return None
        frame = bytes(buf[4:4 + n])
        del buf[:4 + n]
        return frame

    def _fill_nowait(self) -> bool:
        try:
            data = self._read(socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            self.drained = True
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            raise EOFError
        self._buf += data
        return True

    def _fill_blocking(self) -> None:
        try:
            data = self._read(0)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            raise EOFError
        self._buf += data

    def recv(self, timeout: float | None = None, spin: float = SPIN_SECONDS):
        """Next frame, or None after ``timeout`` seconds; EOFError when the peer is gone."""
        frame = self._pop_frame()
        if frame is not None:
            return frame
        end = time.perf_counter() + spin
        while True:  # at least one read that does not block, then spin until `end`
            if self._fill_nowait():
                frame = self._pop_frame()
                if frame is not None:
                    return frame
            elif time.perf_counter() >= end:
                break
        if timeout == 0:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                self._fill_blocking()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if self._poller.poll(left * 1000):
                    self._fill_nowait()
            frame = self._pop_frame()
            if frame is not None:
                return frame

    def has_frame(self) -> bool:
        """True if a whole frame is already buffered (select() would not see it)."""
        buf = self._buf
        return len(buf) >= 4 and len(buf) >= 4 + _HEADER.unpack_from(buf)[0]

    def close(self) -> None:
        self.closed = True
        if self._outbox:
            with self._send_lock:
                for _, fds in self._outbox:
                    _close_all(fds)
                self._outbox.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def pack(header: tuple, payload: bytes = b"") -> bytes:
    """A frame body: pickled header (kind, id, source, destination, method, ...), then the
    payload, which whoever only routes or holds the frame never decodes."""
    h = pickle.dumps(header, 5)
    return _HEADER.pack(len(h)) + h + payload


def unpack(frame: bytes):
    (n,) = _HEADER.unpack_from(frame)
    return pickle.loads(frame[4:4 + n]), memoryview(frame)[4 + n:]


def encode_error(exc: BaseException) -> bytes:
    """An exception with its traceback text; the type name and message if it will not pickle."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        return dumps((exc, type(exc).__name__, str(exc), tb))
    except Exception:
        return dumps((None, type(exc).__name__, str(exc), tb))


def decode_error(payload) -> BaseException:
    """The remote exception itself, with the remote traceback as its cause."""
    exc, type_name, message, tb = loads(payload)
    if exc is None:
        exc = RemoteError(f"{type_name}: {message}")
    exc.__cause__ = RemoteTraceback(tb)
    return exc
