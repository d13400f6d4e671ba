"""The two paths a message to an actor can take, behind one interface, for the contract suite.

``routed``: from the driver (the driver decides the fate). ``direct``: from actor
``s`` on w1 (or another sender), over its direct socket to the target, fates
decided at s's worker. Tests place their targets on w0, so a partition or a link
given by worker separates the sender from them on both paths.
"""
from __future__ import annotations

import pytest

from .actors import Peer

PATHS = ["routed", "direct"]


class Pending:
    """A call made inside the sender actor, watched and collected from the driver."""

    def __init__(self, path: "Path", call_id: int):
        self.path, self.call_id = path, call_id

    def done(self) -> bool:
        return self.path.sender.call_done.remote(self.call_id).result()

    def result(self, timeout: float | None = None):
        timeout = self.path.cluster.timeout if timeout is None else timeout
        ok, value = self.path.sender.finish_call.remote(self.call_id, timeout).result(timeout + 10)
        if not ok:
            raise value
        return value


class Path:
    def __init__(self, cluster, kind: str, sender: str | None = None):
        self.cluster, self.kind = cluster, kind
        if kind == "routed":
            self.src, self.group, self.link = "driver", "driver", None
            return
        if sender is None:
            cluster.spawn(Peer, name="s", worker="w1")
            sender = "s"
        self.src, self.group, self.link = sender, cluster._worker_of(sender), (cluster._worker_of(sender), "w0")
        self.sender = cluster.handle(sender)

    def __repr__(self) -> str:
        return f"<path {self.kind} from {self.src}>"

    def call(self, target: str, method: str, *args):
        if self.kind == "routed":
            return getattr(self.cluster.handle(target), method).remote(*args)
        return Pending(self, self.sender.start_call.remote(target, method, args).result())

    def send(self, target: str, method: str, *args, times: int = 1) -> None:
        if self.kind == "routed":
            handle = getattr(self.cluster.handle(target), method)
            for _ in range(times):
                handle.send(*args)
        else:
            self.sender.send_to.remote(target, method, args, times).result()

    def send_each(self, target: str, method: str, args_list) -> None:
        if self.kind == "routed":
            handle = getattr(self.cluster.handle(target), method)
            for args in args_list:
                handle.send(*args)
        else:
            self.sender.send_each.remote(target, method, list(args_list)).result()

    def trace(self, target: str):
        """The trace rows between the sender and ``target``, both ways."""
        t = self.cluster.trace()
        return t[((t.src == self.src) & (t.dst == target)) | ((t.src == target) & (t.dst == self.src))]


@pytest.fixture(params=PATHS)
def path(request, cluster):
    return Path(cluster, request.param)
