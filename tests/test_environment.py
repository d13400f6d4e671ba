"""What %mlsys and every benchmark report about the machine."""
import os

import mlsys_ext
from mlsys_ext._environment import CPU_FEATURES, format_environment


def test_the_machine_report_names_the_cpu_its_features_numba_target_blas_kernel_and_load(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)  # set on some machines: it would be listed too
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    info = mlsys_ext.environment()
    assert info["cpu_model"] and set(info["cpu_features"]) <= set(CPU_FEATURES)
    assert info["blas"] and "kernel" in info["blas"][0], "numpy's BLAS and the kernel it chose"
    assert info["blas_overrides"] == ["OPENBLAS_CORETYPE=Haswell"]
    report = mlsys_ext.describe_machine()
    for text in (info["cpu_model"], "numba target:", "forced: NUMBA_CPU_NAME=generic", info["blas"][0],
                 "OPENBLAS_CORETYPE=Haswell set: about half speed", "load average:"):
        assert text in report, text
    assert f"{os.cpu_count()} (" in report
    assert info["blas"][0] in format_environment(info), "%mlsys shows the same facts"
