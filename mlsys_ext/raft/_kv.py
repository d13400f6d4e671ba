"""The replicated key-value service on top of Raft: its commands, and the state machine
each server applies them to.

Commands travel in log entries as JSON bytes (never pickle: a log on disk may outlive
the session). Each carries the client's id and sequence number, so a command a client
retried after a lost reply is applied once, and the retry gets the first answer.
"""
from __future__ import annotations

import json

KINDS = ("get", "put", "append", "cas")


def encode_command(client: int, seq: int, kind: str, key: str, value=None) -> bytes:
    """``value``: the string for put and append, (expected, new) for cas, None for get."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    return json.dumps([client, seq, kind, key, value], separators=(",", ":")).encode()


def decode_command(data: bytes) -> tuple:
    """(client, seq, kind, key, value) of an encoded command."""
    client, seq, kind, key, value = json.loads(data)
    return client, seq, kind, key, value


class KVStore:
    """The state machine: keys to strings (a missing key reads as ""), and for each client
    the last sequence number applied and its output."""

    def __init__(self):
        self.data: dict[str, str] = {}
        self.last: dict[int, tuple[int, object]] = {}  # client -> (seq, output)

    def apply(self, data: bytes):
        """Apply one encoded command; its output (the value for get, True/False for cas,
        None for put and append). A command seen before returns its first output."""
        client, seq, kind, key, value = decode_command(data)
        seen = self.last.get(client)
        if seen is not None and seq <= seen[0]:
            return seen[1] if seq == seen[0] else None
        current = self.data.get(key, "")
        output = None
        if kind == "get":
            output = current
        elif kind == "put":
            self.data[key] = value
        elif kind == "append":
            self.data[key] = current + value
        else:
            expected, new = value
            output = current == expected
            if output:
                self.data[key] = new
        self.last[client] = (seq, output)
        return output

    def snapshot(self) -> bytes:
        return json.dumps({"data": self.data, "last": {str(c): v for c, v in self.last.items()}},
                          separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes) -> "KVStore":
        state = json.loads(data) if data else {"data": {}, "last": {}}
        store = cls()
        store.data = dict(state["data"])
        store.last = {int(client): (seq, output) for client, (seq, output) in state["last"].items()}
        return store


class KVOperations:
    """The client calls of the service, each one ``_call(kind, key, value)`` of the subclass."""

    def get(self, key: str):
        return self._call("get", key, None)

    def put(self, key: str, value: str):
        return self._call("put", key, value)

    def append(self, key: str, value: str):
        return self._call("append", key, value)

    def cas(self, key: str, expected: str, new: str):
        return self._call("cas", key, (expected, new))
