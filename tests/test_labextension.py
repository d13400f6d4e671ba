"""The JupyterLab sidebar: built and enabled by the install, its TypeScript tests green."""
import json
import pathlib
import subprocess
import sys

LABEXTENSION = pathlib.Path(__file__).parent.parent / "labextension"
JUPYTER = pathlib.Path(sys.executable).parent / "jupyter"


def test_the_install_built_the_sidebar_and_jupyterlab_lists_it_as_enabled():
    listed = subprocess.run([str(JUPYTER), "labextension", "list"], capture_output=True, text=True, timeout=120)
    line = next((l for l in (listed.stdout + listed.stderr).splitlines() if "mlsys-ext-sidebar" in l), "")
    assert "enabled" in line and "OK" in line, listed.stdout + listed.stderr
    built = json.loads((LABEXTENSION.parent / "mlsys_ext" / "labextension" / "package.json").read_text())
    assert built["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry")


def test_the_typescript_model_and_view_tests_pass():
    # node_modules comes from the install (hatch-jupyter-builder runs npm install before it builds)
    run = subprocess.run(["npm", "test", "--silent"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
