"""The attention panel, headless: controls moved through ipywidgets' test comm, measurements checked."""
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter.attention_panel import AttentionPanel, usable_backends


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_panel_measures_again_when_controls_move(comm):
    panel = AttentionPanel(seq_len=128, heads=2, head_dim=16, threads=1)
    assert panel.wait()
    first = panel.result
    assert (first.seq_len, first.heads, first.head_dim, first.causal) == (128, 2, 16, False)
    assert {first.backend, "naive numpy"} <= set(first.seconds) and all(s > 0 for s in first.seconds.values())
    assert list(first.lengths) == [32, 64, 128]
    panel.controls["seq_len"].value = 256
    panel.controls["causal"].value = True
    panel.controls["backend"].value = "numpy"
    assert panel.wait()
    second = panel.result
    assert (second.seq_len, second.causal, second.backend) == (256, True, "numpy")
    assert second.flops() == 4 * 2 * 256 * 256 * 16 / 2
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"
    assert "GFLOP/s" in panel.summary.value and "% of matmul peak" in panel.summary.value
    assert "measured" in panel.status.value


def test_backend_choices_are_the_usable_ones(comm):
    panel = AttentionPanel(seq_len=64, heads=1, head_dim=16)
    assert panel.wait()
    assert list(panel.controls["backend"].options) == usable_backends()
    assert "simulator" not in " ".join(usable_backends())


@pytest.mark.parametrize("kwargs, message", [({"backend": "tpu"}, "backend must be"),
                                             ({"threads": 0}, "threads must be"),
                                             ({"heads": 0}, "heads must be an integer from 1 to 16")])
def test_bad_values_are_refused(comm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionPanel(**kwargs)
