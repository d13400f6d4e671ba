"""RaftConfig: timing in seconds (turned into whole ticks) and replication limits, checked once."""
from __future__ import annotations

from dataclasses import dataclass

READ_ONLY_OPTIONS = ("safe", "lease")


@dataclass(frozen=True)
class RaftConfig:
    """Tunables shared by every node of a cluster.

    Times are in seconds; ``tick`` is how many seconds one ``node.tick()`` stands for, and
    every timeout becomes a whole number of ticks (``election_ticks``, ``heartbeat_ticks``).
    """

    election_timeout: tuple[float, float] = (1.0, 2.0)
    heartbeat: float = 0.1
    tick: float = 0.05
    max_batch: int = 64           # entries per append message
    max_bytes: int = 1 << 20      # bytes of entry data per append message (at least one entry is sent)
    max_inflight: int = 8         # append messages in flight per follower in replicate state
    prevote: bool = True
    check_quorum: bool = True
    read_only: str = "safe"       # "safe": ReadIndex with a heartbeat round; "lease": trust the leader lease

    def __post_init__(self):
        low, high = self.election_timeout
        for name, value in (("tick", self.tick), ("heartbeat", self.heartbeat), ("election_timeout[0]", low)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not low < high:
            raise ValueError(f"election_timeout must be a range (min, max) with min < max, got {self.election_timeout!r}")
        if not self.tick <= self.heartbeat:
            raise ValueError(f"tick ({self.tick} s) must be at most heartbeat ({self.heartbeat} s)")
        if not self.heartbeat < low:
            raise ValueError(f"heartbeat ({self.heartbeat} s) must be shorter than the minimum election timeout ({low} s)")
        lo_ticks, hi_ticks = self.election_ticks
        if not lo_ticks < hi_ticks:
            raise ValueError(f"election_timeout {self.election_timeout!r} spans less than one tick of {self.tick} s: "
                             "timeouts could not be randomised")
        for name in ("max_batch", "max_bytes", "max_inflight"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.read_only not in READ_ONLY_OPTIONS:
            raise ValueError(f"read_only must be one of {READ_ONLY_OPTIONS}, got {self.read_only!r}")
        if self.read_only == "lease" and not self.check_quorum:
            raise ValueError("read_only='lease' needs check_quorum=True: the lease is what CheckQuorum guarantees")

    @property
    def election_ticks(self) -> tuple[int, int]:
        """The election timeout range in ticks; each timeout is drawn uniformly from [min, max]."""
        low, high = self.election_timeout
        return max(1, round(low / self.tick)), max(1, round(high / self.tick))

    @property
    def heartbeat_ticks(self) -> int:
        return max(1, round(self.heartbeat / self.tick))
