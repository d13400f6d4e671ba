"""Backend selection: usable backends run, unusable ones are refused saying why."""
import os
import subprocess
import sys

import pytest

from mlsys_ext.kernels import BACKENDS, BackendUnavailable, available_backends, resolve_backend


def test_cpu_backends_are_always_usable():
    status = available_backends()
    assert set(status) == set(BACKENDS)
    assert status["numba"][0] and status["numpy"][0]
    assert resolve_backend("numpy") == "numpy" and resolve_backend("numba") == "numba"


def test_auto_picks_a_usable_backend_and_never_the_simulator():
    chosen = resolve_backend("auto")
    usable, why = available_backends()[chosen]
    assert usable and "simulator" not in why


@pytest.mark.parametrize("name", ["cupy", "numba-cuda"])
def test_an_unusable_gpu_backend_is_refused_with_its_reason(name):
    usable, why = available_backends()[name]
    if usable:
        pytest.skip(f"{name} is usable on this machine")
    with pytest.raises(BackendUnavailable, match=f"backend '{name}' cannot run here: .+"):
        resolve_backend(name)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="one of numba, numba-cuda, cupy, numpy"):
        resolve_backend("tpu")


def test_cuda_simulator_is_usable_but_not_chosen_automatically():
    code = "from mlsys_ext.kernels import resolve_backend as r; print(r('numba-cuda'), r('auto'))"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    chosen, auto = out.stdout.split()
    assert chosen == "numba-cuda" and auto != "numba-cuda"
