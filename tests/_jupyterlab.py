"""A JupyterLab server and Debian's Chromium for the end-to-end tests (tests/test_*_e2e.py)."""
import contextlib
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
E2E = ROOT / "labextension" / "e2e"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None and os.environ.get("MLSYS_REQUIRE_BROWSER"):
    raise RuntimeError("MLSYS_REQUIRE_BROWSER is set but Debian's chromium is not installed")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    """A Python 3 notebook of code cells."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


@contextlib.contextmanager
def running_lab(root: pathlib.Path, settings: dict | None = None):
    """A JupyterLab server on 127.0.0.1 with a token, serving ``root``, with the user
    ``settings`` ({'@jupyterlab/notebook-extension:tracker': {...}}); stopped with its kernels.
    Yields {'url', 'token', 'log'}."""
    for plugin, values in (settings or {}).items():
        package, _, name = plugin.partition(":")
        path = root / ".settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               f"--LabApp.user_settings_dir={root / '.settings'}",
               f"--LabApp.workspaces_dir={root / '.workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = root / "jupyter.log"
    with open(log_path, "w") as log:
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
                    pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.3)
        try:
            yield {"url": url, "token": token, "log": log_path}
        finally:
            server.terminate()  # it shuts its kernels down, and they their clusters
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def run_script(script: str, lab: dict, timeout: float, **env) -> dict:
    """Run ``labextension/e2e/<script>`` against ``lab`` with Chromium; the JSON of its last
    stdout line. Fails the test, with its output and the server's log, when it fails."""
    run = subprocess.run(["node", str(E2E / script)], cwd=E2E.parent, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "JUPYTER_URL": lab["url"], "JUPYTER_TOKEN": lab["token"],
                              "CHROMIUM": CHROMIUM, **env})
    report = run.stdout + run.stderr + "\n--- jupyter log ---\n" + lab["log"].read_text()[-3000:]
    assert run.returncode == 0, report
    return json.loads(run.stdout.strip().splitlines()[-1])
