"""The kernels' GPU paths (issue [J] item 6): CuPy and numba-cuda against plain torch on the
same GPU and against this package's CPU path (numba), whole call and per iteration.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--repeats 3] [--only attention,kmeans,hogwild]

Runs with numpy, scipy, pandas, numba, numba-cuda, cupy and torch (and threadpoolctl, which the
CPU paths and ``describe_machine`` use), without any Jupyter package. Where no CUDA device is
present it says so in one line and exits 0; numba's CUDA simulator is no device.

"Whole call" is the public function on host (numpy) arrays: its checks, the host-to-device
copies, the work and the copy back. "Per iteration" is the device work alone, the inputs
already on the device, the device synchronised before each clock read:
- attention, B=1 H=8 D=64 float32 at L = 512, 2048, 8192, full and causal: one pass. CuPy:
  ``flash_xp`` on CuPy arrays; numba-cuda: one launch of its kernel on device arrays; peer:
  torch's ``scaled_dot_product_attention`` on CUDA tensors.
- k-means, N = 1,000,000, D = 32, K = 64 float32, 10 Lloyd iterations (tol=0) from the same
  centroids: one iteration as ``history.seconds`` times it. X stays on the device; each
  iteration sends the centroids and takes back the sums (numba-cuda also the labels): the
  package's own per-iteration traffic. Peer: a plain torch Lloyd iteration (GEMM distances,
  ``argmin``, ``index_add_``), per iteration = 10 iterations / 10.
- Hogwild SGD at kernels_hogwild.py's size (200,000 x 2^18 CSR float64, ~50 nonzeros per
  row, log loss, one epoch, 16,384 GPU threads): one epoch's kernel (``history.seconds``).
  Peer: this package's CPU path (hogwild on every core), since a torch sparse SGD loop would
  be one Python step per row, no fair peer. No speed target.
Each is warmed up first (JIT, CuPy's kernel cache, memory pools); figures are the best of
``--repeats`` runs. torch's float32 matmuls run without TF32, as CuPy's do.

Targets on an NVIDIA H200: attention per iteration within 1.5x torch SDPA, k-means per
iteration within 1.5x the torch iteration, and every GPU result equal to the CPU path within
float tolerance (the "result" column: attention max |difference|; k-means labels that agree,
inertia and centroid gaps; Hogwild accuracy against the CPU serial run, and a serial GPU run
against the CPU's on 20,000 rows).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.kernels import (attention, available_backends, hogwild_sgd, kmeans, sparse_classification)

try:  # PYTHONPATH=. (or imported as benchmarks.bench_gpu)
    from benchmarks.kernels_hogwild import FEATURES, LR, NONZEROS, ROWS
except ImportError:  # run as a script with benchmarks/ first on the path
    from kernels_hogwild import FEATURES, LR, NONZEROS, ROWS

GPU_BACKENDS = ("cupy", "numba-cuda")
SECTIONS = ("attention", "kmeans", "hogwild")
ATTENTION = dict(batch=1, heads=8, dim=64, lengths=(512, 2048, 8192))
KMEANS = dict(n=1_000_000, dim=32, k=64, iterations=10)
SERIAL_CHECK_ROWS = 20_000
SPEED_TARGET = 1.5  # GPU per iteration / torch per iteration, attention and k-means
ATTENTION_ATOL = 1e-5  # float32 against the CPU path (both are ~1e-6 from a float64 reference)
KMEANS_AGREE, KMEANS_INERTIA_RTOL, KMEANS_CENTROID_ATOL = 0.999, 1e-5, 1e-2
HOGWILD_ACCURACY_MARGIN = 0.02
JUPYTER_MODULES = ("IPython", "ipywidgets", "ipykernel", "matplotlib", "mlsys_ext.jupyter")

COLUMNS = [("kernel", "<10"), ("case", "<14"), ("backend", "<11"), ("GPU call", ">10"), ("GPU iter", ">10"),
           ("torch call", ">11"), ("torch iter", ">11"), ("CPU call", ">10"), ("CPU iter", ">10"),
           ("iter/peer", ">12"), ("speed", ">6"), ("  result", "<0")]


def no_device_reason() -> str | None:
    """Why nothing can be measured here, or None when a GPU backend runs on a real device."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 is set: numba's CUDA simulator is no GPU (unset it)"
    status = available_backends()
    if any(status[name][0] for name in GPU_BACKENDS):
        return None
    return "no CUDA device here (" + "; ".join(f"{name}: {status[name][1]}" for name in GPU_BACKENDS) + ")"


def gpu_lines(backends, torch) -> list[str]:
    """The GPU's name, the driver and the CUDA versions, as each library sees them."""
    lines = []
    for probe in (_smi_line, _cupy_line, _numba_line, _torch_line):
        try:
            lines += probe(backends, torch)
        except Exception as exc:  # a version query must not stop the benchmark
            lines.append(f"{probe.__name__[1:-5]}: version query failed: {exc!r}")
    return lines


def _smi_line(backends, torch) -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
            return [f"nvidia-smi:      {out}"]
        except (OSError, subprocess.SubprocessError) as exc:
            return [f"nvidia-smi:      failed: {exc}"]
    return []


def _cupy_line(backends, torch) -> list[str]:
    if "cupy" in backends:
        import cupy

        runtime = cupy.cuda.runtime
        props = runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return [f"CuPy:            cupy {cupy.__version__}, {name}, compute capability "
                f"{props['major']}.{props['minor']}, {props['multiProcessorCount']} SMs, "
                f"CUDA driver {_cuda_version(runtime.driverGetVersion())}, "
                f"runtime {_cuda_version(runtime.runtimeGetVersion())}"]
    return []


def _numba_line(backends, torch) -> list[str]:
    if "numba-cuda" in backends:
        from numba import cuda

        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        try:
            package = f"numba-cuda {importlib.metadata.version('numba-cuda')}"
        except importlib.metadata.PackageNotFoundError:
            package = "numba's built-in cuda"
        return [f"numba.cuda:      {package}, {name}, compute capability "
                f"{'.'.join(map(str, device.compute_capability))}, CUDA driver "
                f"{'.'.join(map(str, cuda.cudadrv.driver.driver.get_version()))}, runtime "
                f"{'.'.join(map(str, cuda.runtime.get_version()))}"]
    return []


def _torch_line(backends, torch) -> list[str]:
    if torch is not None:
        return [f"torch:           torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"{torch.cuda.get_device_name()}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}"]
    return []


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def _torch_on_gpu():
    """(torch, None) with TF32 off, or (None, why not)."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} sees no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False  # full float32, as CuPy's and numba's
    torch.backends.cudnn.allow_tf32 = False
    return torch, None


def _synchronizer(backends, torch):
    calls = []
    if "cupy" in backends:
        import cupy

        calls.append(lambda: cupy.cuda.Device().synchronize())
    if "numba-cuda" in backends:
        from numba import cuda

        calls.append(cuda.synchronize)
    if torch is not None:
        calls.append(torch.cuda.synchronize)

    def synchronize():
        for call in calls:
            call()
    return synchronize


def best_seconds(call, synchronize, repeats: int) -> float:
    """The best of ``repeats`` timed calls after one untimed warm-up, the devices idle at each clock read."""
    call()
    synchronize()
    best = math.inf
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        call()
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best


class Report:
    """Prints each row as it is measured (a run stopped early keeps what it printed) and the verdicts."""

    def __init__(self):
        self.speed = {}  # (kernel, backend): [ratios]
        self.results = []  # (label, ok)

    def header(self):
        print(" ".join(f"{name:{spec}}" for name, spec in COLUMNS), flush=True)

    def row(self, kernel, case, backend, gpu, torch_times, cpu, peer, target, result, ok):
        """gpu, torch_times, cpu: (whole s, per-iteration s) or None; peer: 'torch' or 'CPU'."""
        def ms(pair, i):
            return "-" if pair is None else f"{1e3 * pair[i]:.2f}"

        reference = torch_times if peer == "torch" else cpu
        ratio = None if reference is None else gpu[1] / reference[1]
        speed = "-" if ratio is None or target is None else ("PASS" if ratio <= target else "MISS")
        if ratio is not None and target is not None:
            self.speed.setdefault((kernel, backend), []).append(ratio)
        self.results.append((f"{kernel} {case} {backend}", ok))
        cells = [kernel, case, backend, ms(gpu, 0), ms(gpu, 1), ms(torch_times, 0), ms(torch_times, 1), ms(cpu, 0),
                 ms(cpu, 1), "-" if ratio is None else f"{ratio:.2f}x {peer}", speed,
                 f"  {'PASS' if ok else 'MISS'} {result}"]
        print(" ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, COLUMNS)), flush=True)

    def verdicts(self) -> list[str]:
        lines = []
        for (kernel, backend), ratios in self.speed.items():
            met = sum(r <= SPEED_TARGET for r in ratios)
            lines.append(f"{'PASS' if met == len(ratios) else 'MISS'}: {kernel} ({backend}) per iteration within "
                         f"{SPEED_TARGET}x torch in {met} of {len(ratios)} cases (worst {max(ratios):.2f}x)")
        bad = [label for label, ok in self.results if not ok]
        lines.append(f"{'PASS' if not bad else 'MISS'}: every GPU result equal to the CPU path within float "
                     f"tolerance ({len(self.results) - len(bad)} of {len(self.results)})"
                     + (f"; off: {', '.join(bad)}" if bad else ""))
        return lines


# ---- attention ------------------------------------------------------------------------------------

def _attention_on_device(backend, q, k, v, causal, scale):
    """A call of the backend's device work on inputs already on the device."""
    from mlsys_ext.kernels import _attention

    if backend == "cupy":
        import cupy

        qd, kd, vd = (cupy.asarray(a) for a in (q, k, v))
        limit = _attention._causal_limit(q.shape[2]) if causal else None
        return lambda: _attention.flash_xp(cupy, qd, kd, vd, scale, limit, _attention.XP_Q_TILE,
                                           _attention.XP_K_TILE)
    from numba import cuda

    from mlsys_ext.kernels import _attention_cuda as kernels

    qd, kd, vd = (cuda.to_device(a) for a in (q, k, v))
    out = cuda.device_array_like(q)
    blocks = q.shape[0] * q.shape[1] * -(-q.shape[2] // kernels.Q_TILE)
    return lambda: kernels.flash_attention_kernel[blocks, kernels.Q_TILE](qd, kd, vd, out, scale, causal)


def bench_attention(report, backends, torch, synchronize, repeats):
    batch, heads, dim = ATTENTION["batch"], ATTENTION["heads"], ATTENTION["dim"]
    scale = 1 / math.sqrt(dim)
    rng = np.random.default_rng(0)
    for length in ATTENTION["lengths"]:
        q, k, v = rng.standard_normal((3, batch, heads, length, dim), dtype=np.float32)
        for causal in (False, True):
            case = f"L={length} {'causal' if causal else 'full'}"
            want = attention(q, k, v, causal=causal, backend="numba")
            seconds = best_seconds(lambda: attention(q, k, v, causal=causal, backend="numba"), synchronize, repeats)
            cpu = (seconds, seconds)  # no copies on the CPU: the call is the iteration
            torch_times = None
            if torch is not None:
                sdpa = torch.nn.functional.scaled_dot_product_attention
                tq, tk, tv = (torch.from_numpy(a).cuda() for a in (q, k, v))
                torch_times = (
                    best_seconds(lambda: sdpa(*(torch.from_numpy(a).cuda() for a in (q, k, v)),
                                              is_causal=causal).cpu().numpy(), synchronize, repeats),
                    best_seconds(lambda: sdpa(tq, tk, tv, is_causal=causal), synchronize, repeats))
                del tq, tk, tv
            for backend in backends:
                whole = best_seconds(lambda: attention(q, k, v, causal=causal, backend=backend), synchronize, repeats)
                gap = float(np.abs(attention(q, k, v, causal=causal, backend=backend) - want).max())
                per_iteration = best_seconds(_attention_on_device(backend, q, k, v, causal, scale), synchronize,
                                             repeats)
                report.row("attention", case, backend, (whole, per_iteration), torch_times, cpu, "torch",
                           SPEED_TARGET, f"max|d| {gap:.1e}", gap <= ATTENTION_ATOL)


# ---- k-means --------------------------------------------------------------------------------------

def _torch_lloyd(torch, X, centroids, iterations, final=True):
    """Plain Lloyd on the GPU: GEMM scores ‖c‖²/2 - x·c, argmin, index_add_ sums; a cluster
    left empty keeps its centroid. Returns (centroids, labels of a final assignment or None)."""
    k = centroids.shape[0]
    for _ in range(iterations):
        labels = torch.argmin(0.5 * (centroids * centroids).sum(1) - X @ centroids.T, dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=k).to(X.dtype)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    if not final:
        return centroids, None
    return centroids, torch.argmin(0.5 * (centroids * centroids).sum(1) - X @ centroids.T, dim=1)


def _inertia(X, centroids, labels) -> float:
    total = 0.0
    for start in range(0, len(X), 1 << 16):
        diff = X[start:start + (1 << 16)].astype(np.float64) - centroids[labels[start:start + (1 << 16)]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def _kmeans_runs(backend, X, init, synchronize, repeats):
    """(best whole-call seconds, best per-iteration seconds, the last result), after a warm-up."""
    def run():
        return kmeans(X, KMEANS["k"], init=init, max_iter=KMEANS["iterations"], tol=0, backend=backend)

    run()
    whole, per_iteration, result = math.inf, math.inf, None
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        result = run()
        synchronize()
        whole = min(whole, time.perf_counter() - start)
        per_iteration = min(per_iteration, float(np.median(result.history.seconds.to_numpy()[1:])))
    return whole, per_iteration, result


def bench_kmeans(report, backends, torch, synchronize, repeats):
    n, dim, k, iterations = KMEANS["n"], KMEANS["dim"], KMEANS["k"], KMEANS["iterations"]
    case = f"{n / 1e6:g}M x{dim} K={k}"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, dim), dtype=np.float32)  # no structure: all 10 iterations run
    init = X[rng.choice(n, k, replace=False)].copy()
    cpu_whole, cpu_iteration, want = _kmeans_runs("numba", X, init, synchronize, repeats)
    torch_times = None
    if torch is not None:
        Xd, initd = torch.from_numpy(X).cuda(), torch.from_numpy(init).cuda()

        def whole_call():
            centroids, labels = _torch_lloyd(torch, torch.from_numpy(X).cuda(), torch.from_numpy(init).cuda(),
                                             iterations)
            return centroids.cpu().numpy(), labels.cpu().numpy()

        torch_times = (best_seconds(whole_call, synchronize, repeats),
                       best_seconds(lambda: _torch_lloyd(torch, Xd, initd, iterations, final=False), synchronize,
                                    repeats) / iterations)
        centroids, labels = whole_call()
        gap = abs(_inertia(X, centroids, labels) - want.inertia) / want.inertia
        print(f"  (torch's Lloyd, float32 sums: inertia {gap:.1e} from the CPU path's, labels agree "
              f"{np.mean(labels == want.labels):.5f})", flush=True)
        del Xd, initd
    for backend in backends:
        whole, per_iteration, got = _kmeans_runs(backend, X, init, synchronize, repeats)
        agree = float(np.mean(got.labels == want.labels))
        inertia_gap = abs(got.inertia - want.inertia) / want.inertia
        centroid_gap = float(np.abs(got.centroids - want.centroids).max())
        ok = (agree >= KMEANS_AGREE and inertia_gap <= KMEANS_INERTIA_RTOL and centroid_gap <= KMEANS_CENTROID_ATOL
              and got.n_iter == want.n_iter)
        report.row("k-means", case, backend, (whole, per_iteration), torch_times, (cpu_whole, cpu_iteration), "torch",
                   SPEED_TARGET, f"labels {agree:.5f}, inertia {inertia_gap:.1e}, centroids {centroid_gap:.1e}", ok)


# ---- Hogwild SGD ----------------------------------------------------------------------------------

def _hogwild_runs(backend, X, y, synchronize, repeats, **keywords):
    """(best whole-call seconds, best epoch seconds, the last result), after a warm-up."""
    def run(seed):
        return hogwild_sgd(X, y, epochs=1, lr=LR, seed=seed, backend=backend, **keywords)

    run(0)
    whole, epoch, result = math.inf, math.inf, None
    for seed in range(repeats):
        synchronize()
        start = time.perf_counter()
        result = run(seed)
        synchronize()
        whole = min(whole, time.perf_counter() - start)
        epoch = min(epoch, float(result.history.seconds.iloc[0]))
    return whole, epoch, result


def bench_hogwild(report, backends, synchronize, repeats):
    if "cupy" in backends and "numba-cuda" not in backends:  # CuPy's path launches the numba.cuda kernel
        backends = [b for b in backends if b != "cupy"]
        print("  (Hogwild: CuPy's path launches numba.cuda's kernel, and numba-cuda cannot run here: skipped)")
    X, y = sparse_classification(ROWS, FEATURES, NONZEROS, seed=0, dtype=np.float64)
    case = f"{ROWS / 1e3:g}k x2^{FEATURES.bit_length() - 1}"
    cpu_whole, cpu_epoch, _ = _hogwild_runs("numba", X, y, synchronize, repeats)
    serial = hogwild_sgd(X, y, epochs=1, lr=LR, seed=repeats - 1, mode="serial", backend="numba")
    small_X, small_y = X[:SERIAL_CHECK_ROWS], y[:SERIAL_CHECK_ROWS]
    small_serial = hogwild_sgd(small_X, small_y, epochs=1, lr=LR, seed=0, mode="serial", backend="numba").weights
    for backend in backends:
        whole, epoch, got = _hogwild_runs(backend, X, y, synchronize, repeats)
        gap = abs(got.history.accuracy.iloc[0] - serial.history.accuracy.iloc[0])
        weights = hogwild_sgd(small_X, small_y, epochs=1, lr=LR, seed=0, mode="serial", backend=backend).weights
        serial_gap = float(np.abs(weights - small_serial).max() / np.abs(small_serial).max())
        ok = gap <= HOGWILD_ACCURACY_MARGIN and serial_gap <= 1e-7
        report.row("hogwild", case, backend, (whole, epoch), None, (cpu_whole, cpu_epoch), "CPU", None,
                   f"accuracy {got.history.accuracy.iloc[0]:.4f} vs serial {serial.history.accuracy.iloc[0]:.4f} "
                   f"({got.threads} threads); serial w {serial_gap:.1e}", ok)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up; the best is shown")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    reason = no_device_reason()
    if reason:
        print(f"bench_gpu: {reason}; nothing measured")
        return 0
    if importlib.util.find_spec("threadpoolctl") is None:
        print("bench_gpu: threadpoolctl is not installed, and the CPU paths and describe_machine() need it "
              "(pip install threadpoolctl, or carry its wheel); nothing measured")
        return 1
    status = available_backends()
    backends = [name for name in GPU_BACKENDS if status[name][0]]
    torch, no_torch = _torch_on_gpu()
    print(describe_machine())
    print("\n".join(gpu_lines(backends, torch)))
    for name in GPU_BACKENDS:
        if name not in backends:
            print(f"{name}: cannot run here ({status[name][1]}): its rows are missing")
    if torch is None:
        print(f"torch peer: none ({no_torch}): its columns show '-'")
    synchronize = _synchronizer(backends, torch)
    print(f"\nms; best of {args.repeats} after a warm-up. iter/peer: GPU per iteration against torch's "
          f"(Hogwild: against this package's CPU path). speed: within {SPEED_TARGET}x torch. "
          f"result: equal to the CPU path within float tolerance.")
    report = Report()
    report.header()
    if "attention" in sections:
        bench_attention(report, backends, torch, synchronize, args.repeats)
    if "kmeans" in sections:
        bench_kmeans(report, backends, torch, synchronize, args.repeats)
    if "hogwild" in sections:
        bench_hogwild(report, backends, synchronize, args.repeats)
    print("\n".join(report.verdicts()))
    jupyter = [name for name in JUPYTER_MODULES if name in sys.modules]
    print(f"Jupyter modules this run imported: {', '.join(jupyter) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
