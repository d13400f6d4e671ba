"""The sidebar in a real browser: JupyterLab on 127.0.0.1 with a token, Debian's Chromium driven by
Playwright (labextension/e2e/sidebar.e2e.mjs); the screenshot lands in test-output/sidebar/."""
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

ROOT = pathlib.Path(__file__).parent.parent
SCRIPT = ROOT / "labextension" / "e2e" / "sidebar.e2e.mjs"
OUTPUT = ROOT / "test-output" / "sidebar"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CELLS = [
    "%load_ext mlsys_ext",
    "cluster = %cluster start 2",
    "class Echo:\n    def ping(self, x):\n        return x\n\n"
    "echoes = [cluster.spawn(Echo, name=name, max_restarts=1) for name in ('a', 'b')]",
]

if CHROMIUM is None and os.environ.get("MLSYS_REQUIRE_BROWSER"):
    raise RuntimeError("MLSYS_REQUIRE_BROWSER is set but Debian's chromium is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, serving ``tmp_path``; stopped with its kernels."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "sidebar.ipynb")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")], metadata=notebook.metadata)
    nbformat.write(other, tmp_path / "other.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
               f"--LabApp.user_settings_dir={tmp_path / '.settings'}",
               f"--LabApp.workspaces_dir={tmp_path / '.workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.3)
    yield {"url": url, "token": token, "notebook": "sidebar.ipynb", "other": "other.ipynb",
           "log": tmp_path / "jupyter.log"}
    server.terminate()  # it shuts its kernels down, and they their clusters
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


@pytest.mark.timeout(300)
def test_the_sidebar_shows_two_actors_a_killed_one_dead_then_restarted_and_refills_after_a_kernel_restart(lab):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT / "sidebar.png"
    screenshot.unlink(missing_ok=True)
    env = {**os.environ, "JUPYTER_URL": lab["url"], "JUPYTER_TOKEN": lab["token"], "NOTEBOOK": lab["notebook"], "OTHER": lab["other"],
           "CHROMIUM": CHROMIUM, "SCREENSHOT": str(screenshot)}
    run = subprocess.run(["node", str(SCRIPT)], cwd=SCRIPT.parent.parent, env=env, capture_output=True, text=True,
                         timeout=280)
    report = run.stdout + run.stderr + "\n--- jupyter log ---\n" + lab["log"].read_text()[-3000:]
    assert run.returncode == 0, report
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"] and any(state.startswith("dead") for state in result["states"])
    assert result["states"][-1] == "alive restarts=1" and result["reloaded"]
    assert screenshot.stat().st_size > 10_000
