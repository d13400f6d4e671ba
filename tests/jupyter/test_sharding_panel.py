"""The sharding panel, headless: controls moved, measurements checked against the core."""
import pytest

from mlsys_ext.distributed import ConsistentHashRing, load_balance
from mlsys_ext.jupyter.sharding_panel import SCHEMES, ShardingPanel, draw_sharding, measure_sharding


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_places_every_key_and_moves_about_the_ideal_share(scheme):
    m = measure_sharding(scheme, 8, 50, 0.0, 1, 50_000)
    assert m.loads.sum() == 50_000 and len(m.loads) == 8
    add, ideal = m.moved["add"]
    if scheme == "modulo":
        assert add > 0.8  # nearly every key moves: the reason for consistent hashing
    elif scheme != "range":
        assert abs(add - ideal) < 0.35 * ideal, (scheme, add, ideal)
    png, summary, _ = draw_sharding(m)
    assert png[:4] == b"\x89PNG" and "std/mean" in summary


def test_the_ring_measurement_is_the_cores_and_salting_spreads_the_hottest_keys():
    m = measure_sharding("ring", 10, 100, 0.0, 1, 100_000)
    ring = ConsistentHashRing(10, vnodes=100, seed=0)
    from mlsys_ext.distributed import zipf_keys

    assert m.std_over_mean == pytest.approx(load_balance(ring, zipf_keys(100_000, 0.0, 1_000_000, seed=0)).std_over_mean)
    plain = measure_sharding("jump", 10, 100, 1.2, 1, 100_000)
    salted = measure_sharding("jump", 10, 100, 1.2, 16, 100_000)
    assert salted.max_over_mean < 0.6 * plain.max_over_mean


def test_panel_measures_again_when_a_control_moves():
    panel = ShardingPanel(keys=20_000)
    assert panel.wait() and "measured" in panel.status.value
    first = panel.result
    panel.controls["scheme"].value = "rendezvous"
    panel.controls["shards"].value = 12
    assert panel.wait()
    assert panel.result is not first and panel.result.scheme == "rendezvous" and len(panel.result.loads) == 12
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheme="crush"), "scheme must be one of ring"),
    (dict(shards=65), "shards must be an integer from 2 to 64"),
    (dict(vnodes=0), "vnodes must be an integer from 1 to 1,000"),
    (dict(skew=-1.0), "skew must be a number from 0 to 2"),
    (dict(keys=10**8), "keys must be an integer from 10,000 to 1,000,000"),
])
def test_values_outside_the_sliders_are_refused_before_anything_is_measured(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShardingPanel(**kwargs)
