"""Properties of the network layer's decisions, without processes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.cluster._network import Network, make_faults

NAMES = ["a", "b", "c", "d"]
WORKER = {"a": "w0", "b": "w0", "c": "w1", "d": "w1"}

endpoint = st.sampled_from(NAMES + ["driver"])
probability = st.floats(0.0, 1.0)
delay = st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 0.5)).map(sorted).map(tuple)


def network(seed=0, size=10_000):
    return Network(WORKER.get, seed=seed, trace_size=size)


@given(endpoint, endpoint)
def test_clean_network_delivers_once_at_once(src, dst):
    assert network().decide("call", src, dst, "m", 10) == [0.0]


@given(st.lists(endpoint, min_size=2, max_size=5, unique=True), st.data())
def test_partition_drops_exactly_across_groups(members, data):
    cut = data.draw(st.integers(1, len(members) - 1))
    left, right = members[:cut], members[cut:]
    net = network()
    net.partition([left, right])
    src, dst = data.draw(endpoint), data.draw(endpoint)
    side = {n: 0 for n in left} | {n: 1 for n in right}
    crosses = src in side and dst in side and side[src] != side[dst]
    assert (net.decide("call", src, dst, "m", 1) == []) == crosses
    net.heal()
    assert net.decide("call", src, dst, "m", 1) == [0.0]


def test_partition_by_worker_covers_its_actors():
    net = network()
    net.partition([["w0"], ["w1", "driver"]])
    assert net.decide("send", "a", "c", "m", 1) == []
    assert net.decide("send", "b", "driver", "m", 1) == []
    assert net.decide("send", "a", "b", "m", 1) == [0.0]


@settings(max_examples=50)
@given(probability, delay, probability, st.integers(0, 2**32))
def test_faults_respect_their_settings(drop, delay_range, duplicate, seed):
    net = network(seed)
    net.set_faults(make_faults(drop, delay_range, duplicate))
    for _ in range(50):
        copies = net.decide("send", "a", "c", "m", 1)
        assert len(copies) <= 2
        assert all(delay_range[0] <= d <= delay_range[1] for d in copies)
        if drop == 1.0:
            assert copies == []
        if duplicate == 0.0:
            assert len(copies) <= 1
    fates = {row[-1] for row in net.trace}
    assert fates <= {"delivered", "dropped", "delayed", "duplicated"}


@pytest.mark.parametrize("seed", range(20))
def test_drop_frequency_matches_probability(seed):
    net = network(seed)
    net.set_faults(make_faults(drop=0.25))
    dropped = sum(not net.decide("send", "a", "b", "m", 1) for _ in range(4000))
    assert 0.21 < dropped / 4000 < 0.29  # about 6 standard deviations wide


def test_link_faults_apply_both_ways_and_only_there():
    net = network()
    net.set_faults(make_faults(drop=1.0), link=("a", "w1"))
    assert net.decide("call", "a", "c", "m", 1) == []
    assert net.decide("reply", "d", "a", "m", 1) == []
    assert net.decide("call", "b", "c", "m", 1) == [0.0]
    net.set_faults(make_faults(), link=("a", "w1"))
    assert net.decide("call", "a", "c", "m", 1) == [0.0]


def test_trace_is_bounded_and_counters_add_up():
    net = network(size=10)
    net.set_faults(make_faults(drop=0.5))
    outcomes = [net.decide("send", "a", "b", "m", 3) for _ in range(100)]
    assert len(net.trace) == 10
    assert net.sent["a"] == 100
    assert net.received["b"] == sum(len(o) for o in outcomes)
    copies = sum(max(len(o), 1) for o in outcomes)  # a dropped message was still sent; a duplicate twice
    assert net.counts()[2] == {("a", "b"): (copies, 3 * copies)}


@pytest.mark.parametrize("kwargs, message", [
    ({"drop": -0.1}, "drop must be a probability"),
    ({"duplicate": 2}, "duplicate must be a probability"),
    ({"delay": (0.3, 0.1)}, "delay must satisfy"),
    ({"delay": "soon"}, "delay must be seconds"),
])
def test_bad_fault_settings_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_faults(**kwargs)


@pytest.mark.parametrize("seed", range(20))
def test_each_link_draws_its_own_reproducible_fates(seed):
    """The fates of one link do not depend on traffic on other links, nor on which copy decides."""
    faults = make_faults(drop=0.3, delay=(0.0, 0.1), duplicate=0.2)
    alone, busy = network(seed), network(seed)
    for net in (alone, busy):
        net.set_faults(faults)
    quiet = [alone.decide("call", "a", "c", "m", 1) for _ in range(200)]
    noisy = []
    for i in range(200):
        busy.decide("reply", "c", "a", "m", 1)  # the other direction is another link
        for _ in range(i % 3):
            busy.decide("send", "b", "d", "m", 1)
        noisy.append(busy.decide("call", "a", "c", "m", 1))
    assert quiet == noisy
    copy = Network(WORKER.get, seed=seed)  # a worker's copy, given the driver's settings
    copy.load(alone.export())
    fresh = network(seed)
    fresh.set_faults(faults)
    assert [copy.decide("call", "a", "c", "m", 1) for _ in range(200)] == \
        [fresh.decide("call", "a", "c", "m", 1) for _ in range(200)]
    other = network(seed + 1)
    other.set_faults(faults)
    assert [other.decide("call", "a", "c", "m", 1) for _ in range(200)] != quiet


def test_exported_settings_decide_alike_and_pauses_hold_by_worker():
    master = network()
    master.partition([["a", "w1"], ["b"]])
    master.set_faults(make_faults(drop=1.0), link=("a", "b"))
    master.set_paused("w1", True)
    copy = Network(WORKER.get, seed=0)
    copy.load(master.export())
    assert copy.settings() == master.settings()
    assert copy.decide("call", "b", "c", "m", 1) == []  # across the partition
    assert copy.decide("call", "a", "c", "m", 1) == [0.0]  # c is on w1, a's group
    assert copy.holds("c") and copy.holds("d") and not copy.holds("a")
    master.set_paused("w1", False)
    copy.load(master.export())
    assert not copy.holds("c")


def test_take_trace_hands_over_rows_once():
    net = network()
    net.decide("send", "a", "b", "m", 1)
    net.decide("send", "a", "b", "m", 1)
    assert len(net.take_trace()) == 2 and net.take_trace() == []
    assert net.sent["a"] == 2  # the counters stay
