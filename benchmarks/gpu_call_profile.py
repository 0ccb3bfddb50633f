"""Where one eager projector call's time goes on the GPU (P256: 256x256, 256 views, 363
detectors, batch 32, the `triton` backend).

Per direction: the host's time to issue ``--calls`` calls back to back (microseconds per
call), the same loop with the GPU waited for at its end, then ``torch.profiler`` over 20 calls
(CPU and CUDA), the 14 operations with the most self CPU time. Where the first two numbers
agree, something in each call made the host wait for the GPU (on the H100 on 2026-11-27 that
was the input's NaN/Inf check, since removed for CUDA tensors: KERNELS.md, ninth session).

Usage (on the GPU machine)::

    python benchmarks/gpu_call_profile.py [--calls 200]

Without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._arguments import positive_int  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=positive_int, default=200,
                   help="calls per direction in the timed loop (default 200)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_call_profile.py needs a CUDA device", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    import operators as op

    grid = op.ImageGrid(shape=(256, 256))
    geom = op.ParallelGeometry.full_scan(256, 363, 1.0)
    a = op.XRayTransform(grid, geom, backend="triton").cuda()
    x = torch.rand(32, 256, 256, device="cuda")
    y = torch.rand(32, 256, 363, device="cuda")
    with torch.no_grad():
        for _ in range(5):  # compile and build the tables
            a(x)
            a.T(y)
        torch.cuda.synchronize()
        for name, f, arg in (("forward", a, x), ("adjoint", a.T, y)):
            t0 = time.perf_counter()
            for _ in range(args.calls):
                f(arg)
            t_host = (time.perf_counter() - t0) / args.calls * 1e6
            torch.cuda.synchronize()
            t_all = (time.perf_counter() - t0) / args.calls * 1e6
            print(f"{name}: host issue {t_host:.1f} us per call; back-to-back with GPU "
                  f"{t_all:.1f} us per call")
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    f(arg)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14,
                                            max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
