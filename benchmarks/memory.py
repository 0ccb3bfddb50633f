"""Peak memory of the projector on a large case: 512x512, 720 views, batch 8 (float32).

Each measurement runs in a fresh subprocess: the peak resident set size (``ru_maxrss``) after
the inputs exist is subtracted from the peak after ``A(x)`` (or ``A.T(y)``), so the number is
what the operator adds on top of its inputs and outputs. On CUDA the script reports
``torch.cuda.max_memory_allocated`` instead.

Run:  python benchmarks/memory.py [--size 512] [--views 720] [--batch 8] [--backend torch]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, math, resource, sys, time, torch
sys.path.insert(0, {root!r})
from operators import ImageGrid, ParallelGeometry, XRayTransform
size, views, batch, backend, direction, device = {args!r}
grid = ImageGrid(shape=(size, size))
dets = int(math.ceil(size * math.sqrt(2))) + 1
geom = ParallelGeometry.full_scan(views, dets, 1.0)
a = XRayTransform(grid, geom, backend=backend).to(device)
x = torch.rand(batch, size, size, device=device)
y = torch.rand(batch, views, dets, device=device)
out_bytes = (y if direction == "forward" else x).numel() * 4
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
with torch.no_grad():
    r = a(x) if direction == "forward" else a.T(y)
if device == "cuda":
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps({{"direction": direction, "backend": a.backend_name(torch.device(device)),
                  "seconds": time.perf_counter() - t0, "peak_extra_bytes": peak,
                  "output_bytes": out_bytes, "rays": views * dets}}))
"""


#: ``operators.backends.BACKENDS`` (not imported here: the parent stays light).
BACKENDS = ("auto", "sparse", "torch", "triton", "torch-radon")


class MeasurementFailed(RuntimeError):
    """A measuring subprocess exited with an error (its stderr's last lines in the message)."""


def measure(size, views, batch, backend, direction, device):
    code = _CHILD.format(root=str(ROOT), args=(size, views, batch, backend, direction, device))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        how = (f"killed by signal {-res.returncode}" if res.returncode < 0
               else f"exit status {res.returncode}")
        tail = [ln for ln in res.stderr.strip().splitlines() if ln.strip()][-5:]
        raise MeasurementFailed(f"the {direction} measurement failed ({how})"
                                + (":\n" + "\n".join("    " + ln for ln in tail) if tail
                                   else " with nothing on stderr"))
    return json.loads(res.stdout.strip().splitlines()[-1])


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from _arguments import positive_int  # noqa: E402


def _check_runs_here(ap, backend: str, device: str) -> None:
    """Refuse (argparse error, exit 2) a device or backend this machine cannot run, on a tiny
    problem, before any measurement starts."""
    import warnings

    import torch
    if device == "cuda" and not torch.cuda.is_available():
        ap.error(f"argument --device: no CUDA device here (torch {torch.__version__})")
    if backend == "auto":
        return
    sys.path.insert(0, str(ROOT))
    from operators import ImageGrid, ParallelGeometry, XRayTransform
    from operators.backends import BackendUnavailableError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = XRayTransform(ImageGrid(shape=(4, 4)), ParallelGeometry.full_scan(2, 7, 1.0),
                              backend=backend)
            a._backend_for(torch.device(device))
    except (BackendUnavailableError, ImportError) as exc:
        ap.error(f"argument --backend: {' '.join(str(exc).split())}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=positive_int, default=512, help="image side (pixels)")
    ap.add_argument("--views", type=positive_int, default=720)
    ap.add_argument("--batch", type=positive_int, default=8)
    ap.add_argument("--backend", default="auto", choices=BACKENDS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    _check_runs_here(ap, args.backend, args.device)
    print(f"# peak memory, {args.size}x{args.size}, {args.views} views, batch {args.batch}, "
          f"float32, device {args.device}\n")
    print("| direction | backend | seconds | output MiB | peak above inputs MiB |")
    print("|---|---|---|---|---|")
    rows = []
    for direction in ("forward", "adjoint"):
        try:
            r = measure(args.size, args.views, args.batch, args.backend, direction, args.device)
        except MeasurementFailed as exc:
            print(f"memory.py: {exc}", file=sys.stderr)
            sys.exit(1)
        rows.append(r)
        print(f"| {direction} | {r['backend']} | {r['seconds']:.1f} | "
              f"{r['output_bytes'] / 2**20:.0f} | {r['peak_extra_bytes'] / 2**20:.0f} |")
    return rows


if __name__ == "__main__":
    main()
