"""The sidebar in a real browser: JupyterLab on 127.0.0.1 with a token, Debian's Chromium driven by
Playwright (labextension/e2e/sidebar.e2e.mjs); the screenshot lands in test-output/sidebar/."""
import pytest

from ._jupyterlab import ROOT, needs_chromium, run_script, running_lab, write_notebook

OUTPUT = ROOT / "test-output" / "sidebar"
CELLS = [
    "%load_ext mlsys_ext",
    "cluster = %cluster start 2",
    "class Echo:\n    def ping(self, x):\n        return x\n\n"
    "echoes = [cluster.spawn(Echo, name=name, max_restarts=1) for name in ('a', 'b')]",
]
pytestmark = needs_chromium


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving two notebooks: the sidebar's, with a cluster of two actors, and another."""
    write_notebook(tmp_path / "sidebar.ipynb", CELLS)
    write_notebook(tmp_path / "other.ipynb", ["1 + 1"])
    with running_lab(tmp_path) as lab:
        yield lab


@pytest.mark.timeout(300)
def test_the_sidebar_shows_two_actors_a_killed_one_dead_then_restarted_and_refills_after_a_kernel_restart(lab):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT / "sidebar.png"
    screenshot.unlink(missing_ok=True)
    result = run_script("sidebar.e2e.mjs", lab, timeout=280, NOTEBOOK="sidebar.ipynb", OTHER="other.ipynb",
                        SCREENSHOT=str(screenshot))
    assert result["ok"] and any(state.startswith("dead") for state in result["states"])
    assert result["states"][-1] == "alive restarts=1" and result["reloaded"]
    assert screenshot.stat().st_size > 10_000
