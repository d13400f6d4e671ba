"""The %kmeans panel, headless: sliders moved through ipywidgets' test comm, measurements checked."""
import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter import KMeansPanel
from mlsys_ext.kernels import kmeans
from mlsys_ext.jupyter.kmeans_panel import MAX_TRACE_ITERATIONS, measure_kmeans


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_trace_follows_lloyd_until_it_settles():
    m = measure_kmeans(n=3000, dims=4, k=5, backend="numba", threads=1, init="random")
    assert m.paths.shape[1:] == (5, 4) and 2 <= len(m.paths) <= MAX_TRACE_ITERATIONS + 1
    assert len(m.inertia) == len(m.paths) - 1
    assert np.all(np.diff(m.inertia) <= 1e-6 * m.inertia[0])  # Lloyd never raises the inertia
    if len(m.paths) <= MAX_TRACE_ITERATIONS:  # stopped before the cap: one more step moves no centroid
        step = kmeans(m.X, 5, init=m.paths[-1], max_iter=1, tol=0, backend="numba", threads=1)
        np.testing.assert_allclose(step.centroids, m.paths[-1], rtol=1e-5, atol=1e-5)
    assert {"numba", "numpy"} <= set(m.seconds_per_iteration)
    assert all(seconds > 0 for seconds in m.seconds_per_iteration.values())
    assert m.peak_gflops > 0 and m.gflops_per_iteration == pytest.approx(2 * 3000 * 5 * 4 / 1e9)


def test_panel_measures_again_when_sliders_move(comm):
    panel = KMeansPanel(n=2000, dims=3, k=4)
    assert panel.wait()
    assert panel.result.paths.shape[1:] == (4, 3)
    panel.controls["k"].value = 6
    panel.controls["backend"].value = "numpy"
    panel.controls["init"].value = "random"
    assert panel.wait()
    assert panel.result.paths.shape[1] == 6 and panel.result.backend == "numpy"
    assert bytes(panel.plot.value[:4]) == b"\x89PNG"
    assert "GFLOP/s" in panel.summary.value and "measured" in panel.status.value


def test_unusable_backend_is_refused(comm):
    with pytest.raises(ValueError, match="backend must be one of"):
        KMeansPanel(backend="tpu")


def test_redrawing_reuses_the_figure_without_stale_artists():
    from mlsys_ext.jupyter.kmeans_panel import draw_kmeans

    m = measure_kmeans(n=2000, dims=2, k=3, backend="numpy", threads=1)
    _, _, fresh = draw_kmeans(m)
    artists = [(len(ax.lines), len(ax.patches), len(ax.texts)) for ax in fresh.axes]
    colors = [line.get_color() for line in fresh.axes[1].lines]
    _, _, again = draw_kmeans(m, fresh)
    assert again is fresh and len(again.axes) == 3
    assert [(len(ax.lines), len(ax.patches), len(ax.texts)) for ax in again.axes] == artists
    assert [line.get_color() for line in again.axes[1].lines] == colors
