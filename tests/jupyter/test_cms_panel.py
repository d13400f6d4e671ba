"""The %cms panel, headless: controls moved through ipywidgets' test comm, measurements checked."""
import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter import CountMinPanel
from mlsys_ext.jupyter.cms_panel import measure_countmin, zipf_stream


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


@pytest.mark.parametrize("conservative", [False, True])
def test_measurement_never_underestimates_and_reports_the_bound(conservative):
    m = measure_countmin(0.01, 0.05, 50_000, 1.3, conservative)
    assert m.errors.min() >= 0
    assert m.bound == pytest.approx(0.01 * 50_000)
    assert m.broken == pytest.approx((m.errors > m.bound).mean())
    assert len(m.errors) == len(np.unique(zipf_stream(50_000, 1.3)))


def test_conservative_update_is_never_worse():
    plain = measure_countmin(0.01, 0.05, 50_000, 1.3, False)
    conservative = measure_countmin(0.01, 0.05, 50_000, 1.3, True)
    assert np.all(conservative.errors <= plain.errors)


def test_panel_measures_again_when_controls_move(comm):
    panel = CountMinPanel(eps=0.01, delta=0.05, length=20_000)
    assert panel.wait()
    assert panel.result.sketch.total == 20_000
    panel.controls["eps"].value = 0.001
    panel.controls["conservative"].value = True
    assert panel.wait()
    sketch = panel.result.sketch
    assert sketch.conservative and sketch.width > 1000
    assert "keys over the bound" in panel.summary.value and "w = 2,719" in panel.summary.value


@pytest.mark.parametrize("kwargs, message", [({"eps": 0}, "eps"), ({"skew": 1.0}, "skew"),
                                             ({"length": 0}, "length")])
def test_bad_values_are_refused(comm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CountMinPanel(**kwargs)
