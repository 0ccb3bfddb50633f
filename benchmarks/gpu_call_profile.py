"""Where one eager projector call's time goes on the GPU: the host's share, piece by piece.

An eager call's time (what ``gpu_bench.py`` reports, CUDA events around one call) is the host's
time until the kernel is queued plus the kernels' GPU time; a CUDA graph replays the kernels
without the host (``gpu_bench.py``'s graph column). This script splits the host's part, per
case (P256 batch 32 and P128s batch 128, the ``triton`` backend) and direction, into what a
call does, each timed alone as ``--calls`` calls issued back to back (microseconds per call,
median of 5 runs), with the GPU waited for only after the loop:

* ``XRayTransform`` with ``check_inputs=False`` (as ``gpu_bench.py`` times it) and ``True``;
* the backend call alone (``TritonBackend.forward`` / ``adjoint``);
* its layout copy alone (allocation and ``copy_``, :mod:`operators.backends.triton_launch`);
* its Triton launch alone (``kernel[grid](...)`` with the prepared arguments);
* one ``torch.empty_like``, the price of a single PyTorch operation on this host.

The last column, ``with GPU``, is the same loop timed until the GPU is done: where it exceeds
the host's time, the GPU was the bottleneck of back-to-back calls. Then, for P256 unless
``--no-profile``, ``torch.profiler``'s 14 operations with the most self CPU time, per
direction, over 20 calls of ``XRayTransform`` with ``check_inputs=False``.

Usage (on the GPU machine)::

    python benchmarks/gpu_call_profile.py [--calls 100] [--no-profile]

Without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._arguments import positive_int  # noqa: E402

#: name, image size, views, detectors, batch (as in ``gpu_bench.py``)
CASES = (("P256", 256, 256, 363, 32), ("P128s", 128, 30, 183, 128))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=positive_int, default=100,
                   help="calls per timed loop (default 100; the median of 5 loops is printed)")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the torch.profiler tables")
    return p.parse_args(argv)


def _synchronize(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def host_us(fn, calls: int, device: torch.device):
    """``(host, with_gpu)``: microseconds per call to issue ``calls`` calls, and until the GPU
    has finished them; medians of 5 loops after a warm-up."""
    sync = _synchronize(device)
    for _ in range(3):
        fn()
    sync()
    hosts, alls = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        hosts.append((t1 - t0) / calls * 1e6)
        alls.append((t2 - t0) / calls * 1e6)
    return statistics.median(hosts), statistics.median(alls)


def breakdown(name, size, views, dets, batch, calls, device=None):
    """The table's rows for one case, and ``(operator, x, y)`` for the profiler. ``device``:
    the current CUDA device by default (the tests pass the CPU, with the kernels stubbed)."""
    import operators as op
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device())
    grid = op.ImageGrid(shape=(size, size))
    geom = op.ParallelGeometry.full_scan(views, dets, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = op.XRayTransform(grid, geom, backend="triton", check_inputs=False).to(device)
        checked = op.XRayTransform(grid, geom, backend="triton").to(device)
    backend, table = fast._backend_for(device), fast.ray_table
    x = torch.rand(batch, size, size, device=device)
    y = torch.rand(batch, views, dets, device=device)
    rows = []
    for direction, t, out_shape in (("forward", x, (views, dets)), ("adjoint", y, (size, size))):
        getattr(backend, direction)(t, table)  # compile, tables, prepared launch
        launch = backend._ready[(direction, t.shape, t.dtype, t.device)]
        buf = launch.layout(t)
        out = torch.empty(batch, *out_shape, device=device)
        a, a_checked = (fast, checked) if direction == "forward" else (fast.T, checked.T)
        with torch.no_grad():
            for what, fn in (("XRayTransform, check_inputs=False", lambda: a(t)),
                             ("XRayTransform, check_inputs=True", lambda: a_checked(t)),
                             ("backend call", lambda: getattr(backend, direction)(t, table)),
                             ("layout copy", lambda: launch.layout(t)),
                             ("Triton launch", lambda: launch._launch(buf, out, *launch.args,
                                                                      **launch.kwargs)),
                             ("one torch.empty_like", lambda: torch.empty_like(t))):
                rows.append((name, direction, what, *host_us(fn, calls, device)))
    return rows, (fast, x, y)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_call_profile.py needs a CUDA device", file=sys.stderr)
        return 2
    print(f"# Host time of one eager call, {torch.cuda.get_device_name()}, torch "
          f"{torch.__version__}, {args.calls} calls per loop\n")
    print("| case | direction | what | host us / call | with GPU us / call |")
    print("|---|---|---|---|---|")
    keep = None
    for case in CASES:
        rows, ops = breakdown(*case, args.calls)
        keep = keep or ops
        for name, direction, what, host, total in rows:
            print(f"| {name} | {direction} | {what} | {host:.1f} | {total:.1f} |", flush=True)
    if args.no_profile:
        return 0
    from torch.profiler import ProfilerActivity, profile
    a, x, y = keep
    with torch.no_grad():
        for name, f, arg in (("forward", a, x), ("adjoint", a.T, y)):
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    f(arg)
                torch.cuda.synchronize()
            print(f"\n## torch.profiler, P256 {name}, 20 calls\n")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14,
                                            max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
