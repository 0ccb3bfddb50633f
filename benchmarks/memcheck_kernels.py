"""Run every launch the backend makes once, small, for ``compute-sanitizer --tool memcheck``.

v3 and v4 read without masks: the forward from zero-framed image copies, the parallel adjoint
from a zero-framed sinogram, the fan adjoint at clamped candidate rays with zero weight, and the
planar layout pads the batch to whole planes. Each of these rests on index arithmetic that the
tests check only through the results. Here every geometry of the contract tests
(``tests/operators/registry.py``: parallel full / offset / limited / sparse, fan flat and
curved with offsets and limited arcs, odd and even grids) runs with the default launch at the
batch sizes that select different layouts (1: plain; 2, 3, 8, 32: planar with 1 to 8 planes)
in float32 and bfloat16, plus v3's, v1's and v6's (tiles longest first) launches at batch 8::

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \\
        python3 benchmarks/memcheck_kernels.py

``PYTORCH_NO_CUDA_MEMORY_CACHING=1`` gives every tensor its own allocation, so a read past a
tensor's end is outside any allocation and the tool reports it (with PyTorch's caching
allocator it would land in a neighbour). Prints the relative error of each launch against the
float64 reference and the worst one; exits 1 if any exceeds 1e-5 (float32) or 1e-2 (bfloat16).
Without CUDA it runs in Triton's interpreter (a dry run, ``--quick`` takes a subset).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "operators"))


def launches(batch: int, dtype):
    """``(name, KernelConfig)``: the default launch, and at batch 8 in float32 also v3's,
    v1's and the default with its tiles longest first (v6; the launches the benchmark
    times)."""
    import torch

    from operators.backends.triton_backend import KernelConfig
    yield "default", KernelConfig.default(batch, dtype)
    if batch == 8 and dtype == torch.float32:
        yield "v3", KernelConfig.v3(batch, dtype)
        yield "v1", KernelConfig.v1(batch)
        yield "v6", KernelConfig.default(batch, dtype).replace(tile_order="longest_first")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a subset (one parallel and one fan geometry, batches 1 and 8)")
    ap.add_argument("--geometries", default="",
                    help="comma-separated registry geometries to sweep (default: all; a run cut "
                         "by its time limit can go on with the ones it did not reach)")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from _triton_check import require_triton
    require_triton("memcheck_kernels.py")  # exits 2 with a one-line message without Triton
    import registry

    import operators as op
    from operators.backends.reference import ReferenceBackend
    from operators.backends.triton_backend import TritonBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    geometries = sorted(registry._GEOMETRIES)
    batches = (1, 2, 3, 8, 32)
    dtypes = (torch.float32, torch.bfloat16)
    if args.quick:
        geometries, batches, dtypes = ["parallel-offset", "fan-curved-limited"], (1, 8), dtypes
    if args.geometries:
        wanted = [g.strip() for g in args.geometries.split(",") if g.strip()]
        unknown = sorted(set(wanted) - set(registry._GEOMETRIES))
        if unknown or not wanted:
            ap.error(f"--geometries: unknown {unknown or args.geometries!r}; "
                     f"choose from {', '.join(sorted(registry._GEOMETRIES))}")
        geometries = [g for g in geometries if g in wanted] if args.quick else wanted
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
    gen = torch.Generator().manual_seed(0)
    worst, failures, count = 0.0, [], 0
    for name in geometries:
        for size in ("even", "odd"):
            grid, geom, _ = registry.build(f"{name}-{size}-torch")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = op.XRayTransform(grid, geom, backend="torch").ray_table.to(device)
            ref = ReferenceBackend(grid)
            for dtype in dtypes:
                for batch in batches:
                    x = torch.rand(batch, *grid.shape, generator=gen).to(device, dtype)
                    y = torch.rand(batch, *geom.sinogram_shape, generator=gen).to(device, dtype)
                    yr = ref.forward(x.double(), table)
                    xr = ref.adjoint(y.double(), table)
                    for launch, cfg in launches(batch, dtype):
                        backend = TritonBackend(grid, geom, cfg)
                        yk, xk = backend.forward(x, table), backend.adjoint(y, table)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        errs = [float((a.double() - b).norm() / b.norm())
                                for a, b in ((yk, yr), (xk, xr))]
                        count += 1
                        worst = max(worst, *errs) if dtype == torch.float32 else worst
                        tag = (f"{name}-{size} {str(dtype)[6:]} batch {batch} {launch}: "
                               f"forward {errs[0]:.1e}, adjoint {errs[1]:.1e}")
                        if max(errs) > tolerance[dtype]:
                            failures.append(tag)
                        print(tag, flush=True)
    print(f"{count} launches on {device}; worst float32 relative error {worst:.1e}; "
          f"{len(failures)} above tolerance", flush=True)
    for tag in failures:
        print("  FAILED " + tag)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
