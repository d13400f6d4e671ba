"""RaftConfig validates at the edge, with messages that say what to change."""
import pytest

from mlsys_ext.raft import Entry, Message, RaftConfig, Ready, Snapshot


def test_defaults_become_whole_ticks():
    config = RaftConfig()
    assert config.election_ticks == (20, 40) and config.heartbeat_ticks == 2


@pytest.mark.parametrize("overrides, message", [
    ({"tick": 0}, "tick must be positive"),
    ({"election_timeout": (2.0, 1.0)}, "min < max"),
    ({"heartbeat": 0.01}, "tick .* must be at most heartbeat"),
    ({"heartbeat": 1.5}, "shorter than the minimum election timeout"),
    ({"election_timeout": (1.0, 1.01)}, "less than one tick"),
    ({"max_batch": 0}, "max_batch must be a positive integer"),
    ({"max_inflight": 2.5}, "max_inflight must be a positive integer"),
    ({"read_only": "fast"}, "read_only must be one of"),
    ({"read_only": "lease", "check_quorum": False}, "needs check_quorum=True"),
])
def test_invalid_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        RaftConfig(**overrides)


def test_message_sizes_are_deterministic_estimates():
    entries = (Entry(1, 1, b"abc"), Entry(2, 1, b""))
    assert Message("append", 0, 1, 1, entries=entries).size() == 64 + (24 + 3) + 24
    snap = Snapshot(5, 1, b"x" * 10, (0, 1, 2))
    assert Message("snapshot", 0, 1, 1, snapshot=snap).size() == 64 + 32 + 3 * 8 + 10
    assert Message("heartbeat", 0, 1, 1, context=b"read-7").size() == 64 + 6
    assert not Ready() and Ready(messages=(Message("heartbeat", 0, 1, 1),))
