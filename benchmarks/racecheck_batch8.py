"""Run the batch-8 launches once, for ``compute-sanitizer --tool racecheck`` (GPU machine).

The only launch whose loops moved values between threads through shared memory was v1's batch-8
launch (``KERNELS.md``), and only that case (P512) gave a wrong adjoint on an H200. Under the
race detector, one small parallel-beam case with that launch tells whether the compiled kernel
has a shared-memory hazard::

    compute-sanitizer --tool racecheck --racecheck-report hazard \
        python3 benchmarks/racecheck_batch8.py v1        # v1's launch
    compute-sanitizer --tool racecheck python3 benchmarks/racecheck_batch8.py default

Prints the relative errors against the float64 reference, so a wrong result shows even where
the tool reports nothing. Without CUDA it runs in Triton's interpreter (a dry run).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(launch: str) -> int:
    import torch
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from _triton_check import require_triton
    require_triton("racecheck_batch8.py")  # exits 2 with a one-line message without Triton
    import operators as op
    from operators.backends.reference import ReferenceBackend
    from operators.backends.triton_backend import KernelConfig, TritonBackend
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n, views, dets = (128, 128, 183) if device == "cuda" else (32, 8, 47)
    grid = op.ImageGrid(shape=(n, n), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry.full_scan(views, dets, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table.to(device)
    cfg = {"v1": KernelConfig.v1, "default": KernelConfig.default}[launch](8)
    backend = TritonBackend(grid, geom, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, n, n, generator=gen).to(device)
    y = torch.rand(8, views, dets, generator=gen).to(device)
    yk, xk = backend.forward(x, table), backend.adjoint(y, table)
    if device == "cuda":
        torch.cuda.synchronize()
    ref = ReferenceBackend(grid)
    yr, xr = ref.forward(x.double(), table), ref.adjoint(y.double(), table)
    rel = lambda a, b: float((a.double() - b).norm() / b.norm())
    print(f"{launch} ({cfg!r}) on {device}: forward {rel(yk, yr):.2e}, adjoint {rel(xk, xr):.2e}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("v1", "default"):
        print("usage: python benchmarks/racecheck_batch8.py v1|default", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
