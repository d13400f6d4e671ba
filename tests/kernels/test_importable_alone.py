"""The kernels core and benchmarks/bench_gpu.py work with no Jupyter package installed, as on a
GPU machine that has numpy, scipy, pandas, numba, numba-cuda, cupy and torch and little else.

Each test runs a fresh interpreter in which IPython, ipywidgets, ipykernel, matplotlib,
scikit-learn and mlsys_ext.jupyter cannot be imported (a ``sys.meta_path`` finder refuses them
and their submodules as if they were not installed), from the repository root with
``PYTHONPATH`` at it, as ``PYTHONPATH=. python benchmarks/bench_gpu.py`` runs.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlsys_ext.kernels import available_backends

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("IPython", "ipywidgets", "ipykernel", "matplotlib", "sklearn", "mlsys_ext.jupyter")

BLOCKER = f"""
import sys

BLOCKED = {BLOCKED!r}


def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {{name!r}} (refused by the test)", name=name)
        return None


assert not [name for name in sys.modules if blocked(name)], "imported before the finder went in"
sys.meta_path.insert(0, Refuse())
"""

# Makes the kernels core import matplotlib, as a careless edit of it would: the check must fail then.
PLANTED_IMPORT = """
import importlib.machinery


class Plant:
    def find_spec(self, name, path=None, target=None):
        if name != "mlsys_ext.kernels._kmeans":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        original = spec.loader.exec_module

        def exec_module(module):
            import matplotlib  # noqa: F401  the planted import
            original(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(1, Plant())
"""

CORE_AND_BENCHMARK = """
import mlsys_ext
import mlsys_ext.kernels
import benchmarks.bench_gpu

assert callable(benchmarks.bench_gpu.main)
mlsys_ext.describe_machine()
leaked = sorted(name for name in sys.modules if blocked(name))
assert not leaked, leaked
print("imported alone")
"""


def run_without_jupyter(code: str, *, plant: bool = False) -> subprocess.CompletedProcess:
    script = BLOCKER + (PLANTED_IMPORT if plant else "") + textwrap.dedent(code)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_kernels_core_and_gpu_benchmark_import_without_jupyter_packages():
    done = run_without_jupyter(CORE_AND_BENCHMARK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "imported alone"


def test_the_check_fails_when_the_kernels_core_imports_matplotlib():
    done = run_without_jupyter(CORE_AND_BENCHMARK, plant=True)
    assert done.returncode != 0
    assert "No module named 'matplotlib' (refused by the test)" in done.stderr
    assert "imported alone" not in done.stdout


def test_gpu_benchmark_without_a_device_says_so_in_one_line():
    """Here (no GPU, or only the simulator) the benchmark prints one line and exits 0. On a
    machine with a real device this would run the whole benchmark: there it is not run."""
    status = available_backends()
    real = [name for name in ("cupy", "numba-cuda") if status[name][0] and "simulator" not in status[name][1]]
    if real:
        pytest.skip(f"a real CUDA device is here ({', '.join(real)}): the benchmark would run in full")
    done = run_without_jupyter("""
        import runpy
        sys.argv = ["benchmarks/bench_gpu.py"]
        try:
            runpy.run_path("benchmarks/bench_gpu.py", run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_gpu: ") and lines[0].endswith("nothing measured"), lines
