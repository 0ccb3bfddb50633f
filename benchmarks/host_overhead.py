"""Host-side cost of one projector call: the Python and PyTorch work around the GPU kernels.

For small problems (P128s: 128x128, 30 views) the kernels take tens of microseconds on an
H100/H200 and the fixed cost of a call (argument checks, autograd, layout copies, launches)
decides the time. This measures that cost on the CPU, without a GPU: the Triton kernels are
replaced by no-ops (under ``TRITON_INTERPRET=1``, so the backend's host code runs unchanged on
CPU tensors) and the problem is tiny (8x8 pixels, 4 views, batch 4), so what remains is the
per-call overhead: ``XRayTransform`` (autograd function included) and the backend alone, per
direction, median of ``--repeats`` runs of ``--calls`` calls. The CUDA launch latency itself is
not included (it needs a GPU).

Usage::

    python benchmarks/host_overhead.py [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import operators as op  # noqa: E402


class _NoKernel:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](*args)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def _stub_kernels() -> None:
    from operators.backends import triton_kernels as K
    for name in ("joseph_forward_kernel", "joseph_adjoint_kernel",
                 "joseph_adjoint_parallel_kernel"):
        setattr(K, name, _NoKernel())


def per_call_us(fn, calls: int, repeats: int) -> float:
    for _ in range(min(100, calls)):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from _arguments import positive_int  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=positive_int, default=2000, help="calls per timed run")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs (the median is printed)")
    args = p.parse_args(argv)
    from _triton_check import require_triton
    require_triton("host_overhead.py")  # exits 2 with a one-line message without Triton
    torch.set_num_threads(1)
    _stub_kernels()
    grid = op.ImageGrid(shape=(8, 8), spacing=(1.0, 1.0))
    rows = []
    for label, geom in (("parallel", op.ParallelGeometry.full_scan(4, 11, 1.0)),
                        ("fan, flat", op.FanGeometry.full_scan(4, 11, 2.0, 20.0, 40.0, "flat"))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = op.XRayTransform(grid, geom, backend="triton", check_inputs=False)
        backend, table = a._backend_for(torch.device("cpu")), a.ray_table
        x, y = torch.rand(4, 8, 8), torch.rand(4, *geom.sinogram_shape)
        for what, fn in (("XRayTransform forward", lambda: a(x)),
                         ("XRayTransform adjoint", lambda: a.T(y)),
                         ("backend forward", lambda: backend.forward(x, table)),
                         ("backend adjoint", lambda: backend.adjoint(y, table))):
            rows.append((label, what, per_call_us(fn, args.calls, args.repeats)))
    print(f"Host cost per call, Triton kernels replaced by no-ops (torch {torch.__version__}, "
          "1 thread), microseconds:\n")
    print("| geometry | call | us |")
    print("|---|---|---|")
    for label, what, us in rows:
        print(f"| {label} | {what} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
