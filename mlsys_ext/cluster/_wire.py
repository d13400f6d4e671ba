"""Framed messages over a Unix socket, and their encoding.

Round trips on a small VM are dominated by the time a blocked process takes to
wake up, so a reader first polls without blocking for a short while (``spin``)
and only then sleeps in ``poll``. That is what lets a sync call beat the wake-up
latency when calls come back to back.
"""
from __future__ import annotations

import array
import mmap
import os
import pickle
import select
import socket
import struct
import threading
import time
import traceback
from collections import deque

import cloudpickle

from ._errors import RemoteError, RemoteTraceback

_HEADER = struct.Struct("!I")
_FDS_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)  # descriptors one read can take
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
SPIN_SECONDS = 200e-6


def _plain(obj, depth: int = 2) -> bool:
    """Builtin scalars, possibly in shallow tuples, lists and str-keyed dicts."""
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if depth and (kind is tuple or kind is list):
        return all(_plain(x, depth - 1) for x in obj)
    if depth and kind is dict:
        return all(type(k) is str and _plain(v, depth - 1) for k, v in obj.items())
    return False


def dumps(obj) -> bytes:
    """Plain pickle for plain data (3x faster), cloudpickle otherwise.

    Notebook-defined classes and functions live in ``__main__`` of the kernel,
    which a worker does not have; cloudpickle sends them by value.
    """
    if _plain(obj):
        return pickle.dumps(obj, 5)
    return cloudpickle.dumps(obj, 5)


# Large buffers (numpy arrays) of call arguments and return values travel in a memfd
# sent beside the frame (SCM_RIGHTS), not through the pickle stream: the receiver maps
# it read-only, so its arrays are zero-copy views, and nothing names the memory but the
# descriptors, which the kernel frees with the last process holding one.
SHARED_MEMORY_THRESHOLD = 256 * 1024  # bytes; smaller buffers stay in the pickle
_SHARED = b"M"  # a payload's first byte when its large buffers lie in a memfd (a pickle's is 0x80)
_COUNT = struct.Struct("<I")
_SPAN = struct.Struct("<QQ")  # offset, length of one buffer in the memfd
_ALIGN = 64


class SharedMemory:
    """A memfd holding one message's large buffers; its descriptor closes with the last reference."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __del__(self):
        os.close(self.fd)


class SharedPayload:
    """A received payload whose large buffers are mapped read-only from its memfd."""

    __slots__ = ("data", "buffers", "size")

    def __init__(self, payload, memory: SharedMemory):
        (count,) = _COUNT.unpack_from(payload, 1)
        spans = [_SPAN.unpack_from(payload, 1 + _COUNT.size + i * _SPAN.size) for i in range(count)]
        self.data = bytes(memoryview(payload)[1 + _COUNT.size + count * _SPAN.size:])
        mapped = memoryview(mmap.mmap(memory.fd, max(o + n for o, n in spans), prot=mmap.PROT_READ))
        self.buffers = [mapped[o:o + n] for o, n in spans]  # the mapping outlives the descriptor
        self.size = len(payload) + sum(n for _, n in spans)


def encode(obj, threshold: int | None) -> tuple[bytes, SharedMemory | None]:
    """``obj`` pickled; with ``threshold``, buffers of that many bytes or more go to a memfd."""
    if threshold is None or _plain(obj):
        return dumps(obj), None
    large = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:  # False: the buffer leaves the pickle
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: it stays in the pickle
            return True
        if raw.nbytes < threshold:
            return True
        large.append(raw)
        return False

    data = cloudpickle.dumps(obj, 5, buffer_callback=out_of_band)
    if not large:
        return data, None
    spans, end = [], 0
    for raw in large:
        spans.append((end, raw.nbytes))
        end += -(-raw.nbytes // _ALIGN) * _ALIGN
    memory = SharedMemory(os.memfd_create("mlsys_ext", os.MFD_CLOEXEC))
    os.ftruncate(memory.fd, end)
    with mmap.mmap(memory.fd, end) as mapped:
        for (offset, length), raw in zip(spans, large):
            mapped[offset:offset + length] = raw
    head = _SHARED + _COUNT.pack(len(spans)) + b"".join(_SPAN.pack(*span) for span in spans)
    return head + data, memory


def is_shared(payload) -> bool:
    """True if ``payload`` came with a memfd (the next descriptor its channel received)."""
    return payload[:1] == _SHARED


def payload_size(payload) -> int:
    """What a payload carries, its shared buffers included (the trace's bytes column)."""
    if isinstance(payload, SharedPayload):
        return payload.size
    if not is_shared(payload):
        return len(payload)
    (count,) = _COUNT.unpack_from(payload, 1)
    return len(payload) + sum(_SPAN.unpack_from(payload, 1 + _COUNT.size + i * _SPAN.size)[1] for i in range(count))


def loads(payload):
    """A payload back to its object; a SharedPayload's arrays are read-only views of the memfd."""
    if isinstance(payload, SharedPayload):
        return pickle.loads(payload.data, buffers=payload.buffers)
    return pickle.loads(payload)


class Channel:
    """One end of a socket pair carrying length-prefixed frames.

    Any thread may send (sends are serialised by a lock); one thread at a time
    reads, which the owner of the channel arranges. A ``queued`` channel never
    blocks a sender: what the socket will not take now waits in an outbox that
    ``flush()`` sends later. The driver's channels are queued, because a driver
    blocked writing to a worker that is itself blocked writing to the driver
    would stop every socket from draining.
    """

    __slots__ = ("sock", "fd", "_buf", "_send_lock", "closed", "_poller", "fds", "_outbox")

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
            return self.sock.recv(1 << 18, flags)
        # A plain recv() would silently close descriptors sent with the data; and
        # socket.recv_fds ignores its flags (so MSG_DONTWAIT would block).
        data, ancillary, _, _ = self.sock.recvmsg(1 << 18, _FDS_SPACE, flags | socket.MSG_CMSG_CLOEXEC)
        for level, kind, fds in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds.extend(array.array("i", fds[:len(fds) - len(fds) % 4]))
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
    """A frame body: pickled routing header, then the payload the router never decodes."""
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
