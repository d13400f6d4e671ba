"""Which compute backends can run here, and why not: the one place kernels choose from."""
from __future__ import annotations

import functools

from .._environment import cuda_status, cupy_status

BACKENDS = ("numba", "numba-cuda", "cupy", "numpy")
# "auto" takes the first usable one; the CUDA simulator is correct but far slower than the CPU.
_AUTO_ORDER = ("cupy", "numba-cuda", "numba", "numpy")


class BackendUnavailable(RuntimeError):
    """A backend that was asked for cannot run on this machine; the message says why."""


@functools.lru_cache(maxsize=None)
def _status(name: str) -> tuple[bool, str]:
    """Probed once per process (~80 us: a small decode step's budget); a driver does not come and go."""
    if name in ("numba", "numpy"):
        return True, "CPU"
    try:
        return cupy_status() if name == "cupy" else cuda_status()
    except Exception as exc:  # a broken driver install is a reason, not a crash
        return False, f"probe failed: {exc}"


def available_backends() -> dict[str, tuple[bool, str]]:
    """{backend: (usable here, why or why not)} for every backend."""
    return {name: _status(name) for name in BACKENDS}


def resolve_backend(name: str = "auto") -> str:
    """The backend to run: ``name`` itself if it can run here, or for ``"auto"`` the
    fastest that can (a real GPU first; never the CUDA simulator)."""
    if name == "auto":
        for candidate in _AUTO_ORDER:
            usable, why = _status(candidate)
            if usable and "simulator" not in why:
                return candidate
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {', '.join(BACKENDS)}, got {name!r}")
    usable, why = _status(name)
    if not usable:
        raise BackendUnavailable(f"backend {name!r} cannot run here: {why}")
    return name
