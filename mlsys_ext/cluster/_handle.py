"""Actor handles: ``handle.method.remote(...)`` and ``handle.method.send(...)``.

A handle holds only the actor's name and the runtime of the process it lives
in, so it pickles to a name and can be passed to other actors.
"""
from __future__ import annotations

import threading

from ._errors import ClusterError

_decoding = threading.local()  # per thread: the runtime handles unpickled here bind to
_process_runtime = None


def set_process_runtime(runtime) -> None:
    """The runtime handles bind to when unpickled in this process (a worker's)."""
    global _process_runtime
    _process_runtime = runtime


class decoding_for:
    """Bind handles unpickled in this thread to ``runtime`` (the driver's cluster)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def __enter__(self):
        self.previous = getattr(_decoding, "runtime", None)
        _decoding.runtime = self.runtime

    def __exit__(self, *exc):
        _decoding.runtime = self.previous


def _rebuild_handle(name: str) -> "ActorHandle":
    return ActorHandle(name, getattr(_decoding, "runtime", None) or _process_runtime)


class ActorMethod:
    __slots__ = ("_handle", "_name")

    def __init__(self, handle: "ActorHandle", name: str):
        self._handle = handle
        self._name = name

    def remote(self, *args, **kwargs):
        """Call the method; returns a Future for its result."""
        return self._handle._runtime_or_raise()._call(self._handle._name, self._name, args, kwargs, False)

    def send(self, *args, **kwargs) -> None:
        """One-way message: no reply, no future."""
        self._handle._runtime_or_raise()._call(self._handle._name, self._name, args, kwargs, True)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"actor methods are called with .remote(...) or .send(...): "
            f"use {self._handle._name}.{self._name}.remote(...)"
        )


class ActorHandle:
    """A reference to an actor by name, valid in the driver and inside other actors."""

    def __init__(self, name: str, runtime):
        self._name = name
        self._runtime = runtime

    @property
    def name(self) -> str:
        return self._name

    def _runtime_or_raise(self):
        if self._runtime is None:
            raise ClusterError(f"handle {self._name!r} is not bound to a running cluster")
        return self._runtime

    def __getattr__(self, method: str) -> ActorMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        bound = ActorMethod(self, method)
        self.__dict__[method] = bound  # cache: attribute look-ups are on the hot path
        return bound

    def __reduce__(self):
        return (_rebuild_handle, (self._name,))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._name == self._name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self) -> str:
        return f"ActorHandle({self._name!r})"
