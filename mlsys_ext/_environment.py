"""What this machine offers the labs: threads, GPUs, Ray. Pure: no IPython imports."""
from __future__ import annotations

import functools
import importlib
import os
import platform

from ._version import __version__

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set on some machines here; they slow BLAS
MAGICS = ("%mlsys", "%cluster", "%%cluster run", "%bloom", "%cms", "%lsh", "%kmeans", "%hogwild", "%attention", "%raft", "%batching", "%sharding", "%mapreduce", "%%mapreduce")


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


# the instruction sets the kernels' speed turns on (numba's vector width, BLAS's kernel)
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """(model name, the CPU_FEATURES it has) from /proc/cpuinfo, read once (batch kernels
    ask at every call); platform facts elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, tuple(name for name in CPU_FEATURES if name in flags)


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    return _cpuinfo()[0]


@functools.lru_cache(maxsize=1)
def machine_key() -> str:
    """What a choice measured on this machine is remembered under: the CPU's model name and
    the CPU numba compiles for (a VM's model name, such as "AMD EPYC", is the same on three
    generations of CPU with and without AVX-512; NUMBA_CPU_NAME, when set, names the second)."""
    import llvmlite.binding as llvm
    import numba

    return f"{cpu_model()} ({numba.config.CPU_NAME or llvm.get_host_cpu_name()})"


def _numba_cpu() -> str:
    import llvmlite.binding as llvm
    import numba

    forced = [f"{name}={os.environ[name]}" for name in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES") if name in os.environ]
    return f"{llvm.get_host_cpu_name()}" + (f" (forced: {', '.join(forced)})" if forced else "") + \
        f", {numba.config.NUMBA_NUM_THREADS} threads"


def _blas() -> list[str]:
    """Each BLAS numpy loaded, with the kernel it picked for this CPU (threadpoolctl)."""
    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports
    from threadpoolctl import threadpool_info

    return [f"{lib['internal_api']} {lib['version']}, kernel {lib.get('architecture') or '?'}, "
            f"{lib['num_threads']} threads" for lib in threadpool_info() if lib["user_api"] == "blas"]


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
    info["cpu_model"], info["cpu_features"] = _cpuinfo()
    info["numba_cpu"] = _numba_cpu()
    info["blas"] = _blas()
    info["blas_overrides"] = [f"{name}={os.environ[name]}" for name in BLAS_OVERRIDES if name in os.environ]
    for key, probe in (("cuda", cuda_status), ("cupy", cupy_status), ("ray", _ray)):
        try:
            info[key] = probe()
        except Exception as exc:  # a broken driver install must not break the report
            info[key] = (False, f"probe failed: {exc}")
    return info


def _cpu_lines(info: dict) -> list[str]:
    overrides = info["blas_overrides"]
    return [
        f"CPU:             {info['cpu_model']}; {' '.join(info['cpu_features']) or 'no AVX2'}",
        f"CPUs:            {info['cpu_count']} ({info['cpus_usable']} usable by this process)",
        f"numba target:    {info['numba_cpu']}",
        f"numba threading: {info['numba_threading']}",
        f"BLAS:            {'; '.join(info['blas']) or 'none loaded'}"
        + (f" ({', '.join(overrides)} set: about half speed)" if overrides else ""),
    ]


def format_environment(info: dict) -> str:
    def flag(pair):
        ok, why = pair
        return ("yes: " if ok else "no: ") + why

    return "\n".join([
        f"mlsys_ext {info['version']}",
        f"magics:          {'  '.join(info['magics'])}",
        *_cpu_lines(info),
        f"CUDA (numba):    {flag(info['cuda'])}",
        f"CuPy:            {flag(info['cupy'])}",
        f"Ray:             {flag(info['ray'])}",
    ])


def describe_machine() -> str:
    """What a benchmark prints first: the CPU, its features, numba's target, the BLAS kernel, the load."""
    info = environment()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([f"mlsys_ext {info['version']}, python {platform.python_version()}", *_cpu_lines(info),
                      f"load average:    {load} (1, 5, 15 min)"])
