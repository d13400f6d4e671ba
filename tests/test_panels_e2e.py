"""Every panel of the sidebar's registry in a real browser at device pixel ratio 2 (JupyterLab and
Chromium as in tests/_jupyterlab.py, driven by labextension/e2e/panels.e2e.mjs): controls within
their box, slider tracks wide enough to drag, a drag landing where it was let go, plots at their
natural size, and a key press on a slider bringing a new plot. One screenshot per panel lands in
test-output/panels/, and the measurements in test-output/panels/measurements.json."""
import json
import os

import pytest

from mlsys_ext.jupyter.magics import PANELS

from ._jupyterlab import ROOT, needs_chromium, run_script, running_lab, write_notebook

OUTPUT = ROOT / "test-output" / "panels"
SETUP = ["%load_ext mlsys_ext", "cluster = %cluster start 2"]
# the slider each panel's drag and key press move: one whose middle measures in a second or two
DRAGGED = {"%cluster": "drop", "%bloom": "capacity n", "%cms": "eps", "%lsh": "num_perm", "%lsh --simhash": "bits",
           "%kmeans": "dims", "%hogwild": "lr", "%attention": "heads", "%raft": "batch", "%batching": "max batch",
           "%sharding": "vnodes", "%mapreduce": "reduce tasks", "%allreduce": "floats log2",
           "%allreduce --sgd": "async staleness s"}
# paused at t = 0, a restarted Raft simulation draws the same picture whatever its knobs: play it, so frames change
PLAYED = {"%raft"}
# the cluster panel's drag leaves the network dropping half the messages: MapReduce, which
# then takes its task timeouts many times over, and all-reduce and SGD, whose calls time out, are opened before it
ORDER = sorted(PANELS, key=lambda panel: panel["magic"] not in ("%mapreduce", "%allreduce", "%allreduce --sgd"))
pytestmark = needs_chromium


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a notebook that opens every panel, cell by cell; the notebook keeps
    every cell in the page (no windowing), so cells scrolled past can still be measured."""
    write_notebook(tmp_path / "panels.ipynb", SETUP + [panel["magic"] for panel in ORDER])
    with running_lab(tmp_path, {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}) as lab:
        yield lab


@pytest.mark.timeout(300)
def test_every_panel_fits_its_box_drags_true_shows_its_plot_unscaled_and_redraws_on_a_key(lab):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("*.png"):
        old.unlink()
    panels = [{"label": panel["label"], "cell": len(SETUP) + i, "slider": DRAGGED[panel["magic"]],
               "play": panel["magic"] in PLAYED,
               "screenshot": str(OUTPUT / f"{panel['label'].replace(' ', '-').lower()}.png")}
              for i, panel in enumerate(ORDER)]
    measured = run_script("panels.e2e.mjs", lab, timeout=280, NOTEBOOK="panels.ipynb", PANELS=json.dumps(panels),
                          FAILED=str(OUTPUT / "failed.png"))["panels"]
    (OUTPUT / "measurements.json").write_text(json.dumps({"load": os.getloadavg(), "panels": measured}, indent=1))
    assert [m["label"] for m in measured] == [panel["label"] for panel in ORDER]
    for m, panel in zip(measured, panels):
        assert m["overflowing"] == [], m["label"]
        assert m["sliders"] and all(s["track"] > 100 for s in m["sliders"]), (m["label"], m["sliders"])
        assert abs(m["dragged"]["fraction"] - 0.5) <= 0.15, (m["label"], m["dragged"])
        assert abs(m["image"]["natural"] / m["devicePixelRatio"] - m["image"]["shown"]) <= 1, (m["label"], m["image"])
        assert None not in m["keyToImageMs"], f"{m['label']}: no new image after a key press: {m['keyToImageMs']}"
        assert os.path.getsize(panel["screenshot"]) > 10_000
