"""Exceptions raised by the cluster runtime."""


class ClusterError(RuntimeError):
    """Misuse of a cluster: unknown names, a stopped cluster, a refused fault."""


class ActorDiedError(ClusterError):
    """The actor's process is dead; calls fail at once instead of hanging."""


def died_before_answering(actor: str, worker: str, method: str) -> ActorDiedError:
    """The one wording for a call whose actor died with it pending, on every backend and path."""
    return ActorDiedError(f"actor {actor!r} died (worker {worker}) before answering {method}")


class ActorTimeoutError(ClusterError, TimeoutError):
    """No reply arrived in time: the actor may be paused, cut off, or the message dropped."""


class RemoteError(ClusterError):
    """An actor raised an exception that could not be sent back as itself."""


class RemoteTraceback(Exception):
    """Carries the remote traceback text; attached as ``__cause__`` of a re-raised error."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\nRemote traceback:\n" + self.text
