"""The kernels' launches for Nsight Compute: what limits each kernel, from the hardware counters.

The H100 run put the default (v4) forward at 3.8x the cost model's bound at P256 and the adjoint
at 2.3x (``KERNELS.md``, "v4 measured"); timings cannot say which unit the forward waits for.
This script builds the operators of ``gpu_bench.py``'s cases, compiles and warms up both
directions outside the profiled range, then issues exactly one forward and one adjoint per case
between ``cudaProfilerStart`` and ``cudaProfilerStop``, so that ``ncu`` profiles those launches
alone (the layout copies around them are left out by the kernel-name filter)::

    ncu --clock-control none --profile-from-start off --kernel-name regex:joseph \\
        --section SpeedOfLight --section MemoryWorkloadAnalysis \\
        --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \\
        --section WarpStateStats --section SchedulerStats --section InstructionStats \\
        python3 benchmarks/ncu_kernels.py [--cases P256,P512,F256]

In every case a third launch follows: the forward with one launch option flipped, so that the
two forwards' counters can be compared. ``--other tile_order`` (default): the tiles longest
first where the default takes them in the grid's order (v6, ``KERNELS.md``, thirteenth
session: does the last wave still leave multiprocessors idle?); ``--other pair_offset``: the
other pair addressing (v4 / v5, twelfth session; profiled on the H200 in the thirteenth);
``--other none`` leaves it out.

(``benchmarks/gpu_session.sh``, step 4, runs exactly this.) ``--clock-control none`` leaves
the clocks as the benchmark had them. Before each profiled pair the script prints the case,
the kernels it will launch in order (``joseph_forward_kernel``, then
``joseph_adjoint_parallel_kernel`` or ``joseph_adjoint_kernel``) and their grids, so that each
of ``ncu``'s reports can be matched to its case.

Without CUDA it runs the same calls at tiny sizes in Triton's interpreter (a dry run of the
script, which the tests do; there is nothing to profile).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _arguments import positive_int  # noqa: E402

#: The cases profiled by default: the two goal cases and the fan beam (whose adjoint is the
#: generic kernel).
DEFAULT_CASES = "P256,P512,F256"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=DEFAULT_CASES,
                    help=f"comma-separated cases of gpu_bench.py (default {DEFAULT_CASES}; "
                         "the memory case M512 is refused)")
    ap.add_argument("--other", choices=sorted(OTHER) + ["none"], default="tile_order",
                    help="the forward launched a second time with this option flipped "
                         "(default tile_order; none leaves it out)")
    ap.add_argument("--warmup", type=positive_int, default=2,
                    help="unprofiled calls per direction before the profiled pair (default 2; "
                         "the first compiles the kernels)")
    return ap, ap.parse_args(argv)


def select_cases(ap, text: str, full, tiny=None):
    """The named cases of ``full`` (``gpu_bench.FULL_CASES``) in the order given; unknown names
    and the memory case are a usage error. With ``tiny`` (a dry run), each case's tiny
    version instead, where it has one."""
    by_name = {c.name: c for c in full if not c.memory}
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in by_name]
    if bad or not names:
        what = (f"not a case to profile: {', '.join(bad)} (the memory case M512 is left out)"
                if bad else f"no case named in {text!r}")
        ap.error(f"argument --cases: {what}; choose from {', '.join(by_name)}")
    if tiny is None:
        return [by_name[n] for n in names]
    small = {c.name: c for c in tiny}
    return [small[n] for n in names if n in small]


def _prepared(backend, direction, t):
    """The launch ``backend`` (a warmed-up ``TritonBackend``) prepared for ``t``."""
    return backend._ready[(direction, t.shape, t.dtype, t.device)]


#: The launch options ``--other`` can flip, each with the value it takes instead of ``value``.
OTHER = {"tile_order": lambda value: "longest_first" if value == "grid" else "grid",
         "pair_offset": lambda value: not value}


def other_launch(backend, x, table, field: str):
    """``(config, forward)``: the launch ``backend`` prepared for ``x`` with ``field`` (a key
    of :data:`OTHER`) flipped, and the forward of a backend that runs it."""
    from operators.backends.triton_backend import TritonBackend
    cfg = _prepared(backend, "forward", x).config
    flipped = cfg.replace(**{field: OTHER[field](getattr(cfg, field))})
    other = TritonBackend(backend.grid, backend.geometry, flipped)
    return flipped, lambda t: other.forward(t, table)


def planned_launches(backend, x, y):
    """``[(kernel name, grid)]`` of the forward of ``x`` and the adjoint of ``y``, as
    ``backend`` will launch them: its prepared launches."""
    out = []
    for direction, t in (("forward", x), ("adjoint", y)):
        launch = _prepared(backend, direction, t)
        kernel = getattr(launch.kernel, "fn", launch.kernel)  # the interpreter wraps it
        out.append((kernel.__name__, launch.grid))
    return out


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import gpu_bench
    from _triton_check import require_triton

    import operators as op

    cases = select_cases(ap, args.cases, gpu_bench.FULL_CASES,
                         None if cuda else gpu_bench.TINY_CASES)
    require_triton("ncu_kernels.py")  # exits 2 with a one-line message without Triton
    if not cases:
        print(f"none of {args.cases} has a tiny version for the dry run")
        return 0
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    plans = []
    for case in cases:  # compile, build the tables and prepare the launches: all unprofiled
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = op.XRayTransform(case.grid(), case.geometry(), backend="triton",
                                 check_inputs=False).to(device)
        x = torch.rand((case.batch,) + case.grid().shape, generator=gen).to(device)
        y = torch.rand((case.batch, case.views, case.dets), generator=gen).to(device)
        for _ in range(args.warmup):
            a(x)
            a.T(y)
        backend = a._backend_for(x.device)
        other = None
        if args.other != "none":
            other = other_launch(backend, x, a.ray_table, args.other)
            for _ in range(args.warmup):
                other[1](x)
        plans.append((case, a, x, y, planned_launches(backend, x, y), other))
    sync()

    if cuda:
        torch.cuda.profiler.start()
    try:
        for case, a, x, y, launches, other in plans:
            kernels = ", then ".join(f"{name} grid {grid}" for name, grid in launches)
            if other is not None:
                kernels += (f", then joseph_forward_kernel with {args.other}="
                            f"{getattr(other[0], args.other)!r} (the other {args.other})")
            print(f"profiled: {case.name} (batch {case.batch}): {kernels}", flush=True)
            a(x)
            a.T(y)
            if other is not None:
                other[1](x)
            sync()
    finally:
        if cuda:
            torch.cuda.profiler.stop()
    n = sum(2 + (other is not None) for *_, other in plans)
    print(f"{n} launches on {device.type}"
          + ("" if cuda else " (Triton's interpreter: a dry run, nothing to profile)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
