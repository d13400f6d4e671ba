"""What this machine offers the labs: threads, GPUs, Ray. Pure: no IPython imports."""
from __future__ import annotations

import importlib
import os

from ._version import __version__

MAGICS = ("%mlsys", "%cluster", "%%cluster run", "%bloom", "%cms", "%lsh", "%kmeans", "%hogwild", "%attention", "%raft", "%batching")


def _numba_threading() -> str:
    import numba

    usable = []
    for layer, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
            usable.append(layer)
        except ImportError:
            pass
    chosen = numba.config.THREADING_LAYER
    return f"{chosen} (usable here: {', '.join(usable)}), numba {numba.__version__}"


def cuda_status() -> tuple[bool, str]:
    """(usable, why): numba.cuda on a real GPU, or the simulator when NUMBA_ENABLE_CUDASIM=1."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True, "numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): correct but slow, no GPU"
    from numba import cuda

    if cuda.is_available():
        return True, f"{len(cuda.gpus)} GPU(s): {cuda.get_current_device().name.decode()}"
    reason = (cuda.cuda_error() or "no CUDA device").strip().splitlines()
    return False, reason[0] if reason else "no CUDA device"


def cupy_status() -> tuple[bool, str]:
    """(usable, why) for CuPy: installed, and cupy.is_available()."""
    try:
        import cupy
    except ImportError:
        return False, "not installed (pip install 'mlsys-ext[gpu]')"
    if cupy.is_available():
        return True, f"cupy {cupy.__version__}"
    return False, f"cupy {cupy.__version__} is installed but cupy.is_available() is False: no usable GPU or driver"


def _ray() -> tuple[bool, str]:
    try:
        ray = importlib.import_module("ray")
    except ImportError:
        return False, "not installed (pip install 'mlsys-ext[ray]')"
    return True, f"ray {ray.__version__}: Cluster(backend='ray') binds a local Ray to 127.0.0.1"


def environment() -> dict:
    """Version, magics, CPU and threading facts, and which accelerators and backends are usable, with why."""
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_usable = os.cpu_count()
    info = {
        "version": __version__,
        "magics": list(MAGICS),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "numba_threading": _numba_threading(),
    }
    for key, probe in (("cuda", cuda_status), ("cupy", cupy_status), ("ray", _ray)):
        try:
            info[key] = probe()
        except Exception as exc:  # a broken driver install must not break the report
            info[key] = (False, f"probe failed: {exc}")
    return info


def format_environment(info: dict) -> str:
    def flag(pair):
        ok, why = pair
        return ("yes: " if ok else "no: ") + why

    return "\n".join([
        f"mlsys_ext {info['version']}",
        f"magics:          {'  '.join(info['magics'])}",
        f"CPUs:            {info['cpu_count']} ({info['cpus_usable']} usable by this process)",
        f"numba threading: {info['numba_threading']}",
        f"CUDA (numba):    {flag(info['cuda'])}",
        f"CuPy:            {flag(info['cupy'])}",
        f"Ray:             {flag(info['ray'])}",
    ])
