"""The sketches' byte format: a versioned header, a payload, and a CRC-32 of all before it.

    magic (8 bytes) | version (uint16) | the sketch's own header fields | payload | CRC-32

All little-endian, no padding. ``ByteFormat.unpack`` checks what every sketch shares
(type, length, magic, version, the length the header implies, the checksum) and
each header field against the constraint the sketch's constructor applies to it,
and raises ``ValueError`` saying what is wrong; each sketch then checks that its
fields agree with one another. The checksum catches accidents, not hand edits:
a field out of range would make a kernel hang or index out of bounds.
"""
from __future__ import annotations

import struct
import zlib
from typing import Callable

_CHECKSUM = struct.Struct("<I")


class ByteFormat:
    """One sketch's format: its magic, version, name, and header fields in order, each
    a struct code and a constraint (``_validation``): ``ByteFormat(b"MLSXBLOM", 1,
    "BloomFilter", {"num_bits": ("Q", Integer(low=1, high=2**48)), ...})``."""

    def __init__(self, magic: bytes, version: int, name: str, fields: dict[str, tuple[str, object]]):
        self.magic, self.version, self.name = magic, version, name
        self.header = struct.Struct("<8sH" + "".join(code for code, _ in fields.values()))
        self.constraints = {field: constraint for field, (_, constraint) in fields.items()}

    def pack(self, fields: tuple, payload: bytes) -> bytes:
        body = self.header.pack(self.magic, self.version, *fields) + payload
        return body + _CHECKSUM.pack(zlib.crc32(body))

    def unpack(self, data, payload_size: Callable[[tuple], tuple[int, str]]) -> tuple[tuple, memoryview]:
        """(the header fields after magic and version, the payload) of ``data``.

        ``payload_size(fields)`` returns the payload's length in bytes and a phrase
        naming what the header describes ("65536 bits"), for the error message.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes needs bytes, got {type(data).__name__}")
        data = bytes(data)
        least = self.header.size + _CHECKSUM.size
        if len(data) < least:
            raise ValueError(f"truncated: {len(data)} bytes, fewer than the {least} of a header and checksum")
        magic, version, *fields = self.header.unpack_from(data)
        if magic != self.magic:
            raise ValueError(f"not a serialised {self.name}: it starts with {magic!r}, not {self.magic!r}")
        if version > self.version:
            raise ValueError(f"format version {version} is newer than this library reads "
                             f"({self.version}): upgrade mlsys_ext")
        if version != self.version:
            raise ValueError(f"unknown format version {version}")
        for (field, constraint), value in zip(self.constraints.items(), fields):
            try:
                constraint.check(field, value)
            except ValueError as exc:
                raise ValueError(f"corrupt header: {exc}") from None
        size, described = payload_size(tuple(fields))
        expected = self.header.size + size + _CHECKSUM.size
        if len(data) != expected:
            raise ValueError(f"{len(data)} bytes, but the header describes {described}, which take "
                             f"{expected} bytes: the data are truncated or corrupt")
        (checksum,) = _CHECKSUM.unpack_from(data, len(data) - _CHECKSUM.size)
        if zlib.crc32(data[:-_CHECKSUM.size]) != checksum:
            raise ValueError("checksum mismatch: the data are corrupt")
        return tuple(fields), memoryview(data)[self.header.size:-_CHECKSUM.size]
