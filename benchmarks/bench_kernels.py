"""The kernels lab against its peers, in one run: k-means (scikit-learn, faiss), Hogwild
SGD (scikit-learn's SGDClassifier) and attention (torch SDPA, naive numpy).

Not a test. Run on a quiet machine, with BLAS and numba both on every core and
without this VM's OpenBLAS overrides, which halve BLAS speed here:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_kernels.py

Peers come from the ``bench`` extra: pip install -e '.[bench]'.
"""
from __future__ import annotations

import os

import numba

from kernels_attention import bench_attention
from kernels_hogwild import bench_hogwild
from kernels_kmeans import bench_kmeans
from mlsys_ext import describe_machine
from mlsys_ext.kernels import compile_log, matmul_peak_gflops


def main() -> None:
    import torch

    cores = os.cpu_count()
    numba.set_num_threads(min(cores, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(cores)
    print(describe_machine())
    peak = matmul_peak_gflops("float32")
    print(f"{cores} cores; numba {numba.get_num_threads()} threads; "
          f"torch {torch.get_num_threads()} threads; float32 matmul peak {peak:.0f} GFLOP/s\n")
    for section in (bench_kmeans(peak), bench_hogwild(), bench_attention(peak)):
        print(section, end="\n\n")
    log = compile_log()
    print(f"numba compile time (first calls, kept out of every figure above): {log.seconds.sum():.2f} s "
          f"over {len(log)} kernel signatures")


if __name__ == "__main__":
    main()
