"""CPU benchmark: forward, adjoint and FBP side by side with the installed peers, in one run.

Case P256 of shared/ANCHORS.md: 256x256 image, 256 parallel views over [0, pi), 363 detectors
of the pixel size, float32; batch 1 and batch 8. Times are the best of ``--repeats`` within this
process (after one warm-up call, which for our ``sparse`` backend builds the cached system
matrix; that one-off build time is printed separately). The adjoint test is
``|<Ax, y> - <x, A^T y>| / |<Ax, y>|`` on random inputs.

Run:  python benchmarks/cpu_bench.py [--threads 2] [--repeats 3] [--batches 1 8] [--json FILE]
Peers (optional, each skipped with a note when missing): astra-toolbox (CPU, ``linear`` and
``strip``), scikit-image (radon / iradon), torchtomo (``torch`` backend), deepinv (Tomography).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators import FBP, ImageGrid, ParallelGeometry, XRayTransform  # noqa: E402

N, VIEWS, DETS = 256, 256, 363


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time in milliseconds over ``repeats`` calls (after the caller's warm-up)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def dot_test(forward, adjoint, x: np.ndarray, y: np.ndarray) -> float:
    ax = np.asarray(forward(x), dtype=np.float64)
    aty = np.asarray(adjoint(y), dtype=np.float64)
    lhs = float((ax * y).sum())
    rhs = float((x.astype(np.float64) * aty).sum())
    return abs(lhs - rhs) / abs(lhs)


class Row(dict):
    pass


def ours(batch: int, repeats: int, backend: str) -> Row:
    grid = ImageGrid(shape=(N, N))
    geom = ParallelGeometry.full_scan(VIEWS, DETS, 1.0)
    a = XRayTransform(grid, geom, backend=backend)
    fbp = FBP(grid, geom)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, N, N, generator=gen)
    y = torch.rand(batch, VIEWS, DETS, generator=gen)
    t0 = time.perf_counter()
    with torch.no_grad():
        a(x), a.T(y), fbp(y)
    setup = (time.perf_counter() - t0) * 1e3
    with torch.no_grad():
        fwd = best_of(lambda: a(x), repeats)
        adj = best_of(lambda: a.T(y), repeats)
        rec = best_of(lambda: fbp(y), repeats)
        x64, y64 = x.double(), y.double()
        mismatch = float(abs((a(x64) * y64).sum() - (x64 * a.T(y64)).sum()) / abs((a(x64) * y64).sum()))
        mismatch32 = float(abs((a(x).double() * y64).sum() - (x64 * a.T(y).double()).sum())
                           / abs((a(x).double() * y64).sum()))
    return Row(peer=f"known-operators `{backend}` (Joseph)", forward=fwd, adjoint=adj, fbp=rec,
               adjoint_test=mismatch32, adjoint_test_f64=mismatch,
               note=f"first call (matrix build, FFT plans) {setup:.0f} ms")


def astra_rows(batch: int, repeats: int) -> List[Row]:
    import astra

    rows = []
    angles = np.arange(VIEWS) * math.pi / VIEWS
    vol = astra.create_vol_geom(N, N)
    # ASTRA's parallel angles rotate the other way round; timings do not depend on it.
    proj = astra.create_proj_geom("parallel", 1.0, DETS, angles)
    rng = np.random.default_rng(0)
    xs = rng.random((batch, N, N), dtype=np.float32)
    ys = rng.random((batch, VIEWS, DETS), dtype=np.float32)
    for kind in ("linear", "strip"):
        pid = astra.create_projector(kind, proj, vol)

        def fwd_one(img):
            sid, s = astra.create_sino(img, pid)
            astra.data2d.delete(sid)
            return s

        def bp_one(sino):
            bid, b = astra.create_backprojection(sino, pid)
            astra.data2d.delete(bid)
            return b

        def fbp_one(sino):
            sid = astra.data2d.create("-sino", proj, sino)
            rid = astra.data2d.create("-vol", vol)
            cfg = astra.astra_dict("FBP")
            cfg["ReconstructionDataId"] = rid
            cfg["ProjectionDataId"] = sid
            cfg["ProjectorId"] = pid
            alg = astra.algorithm.create(cfg)
            astra.algorithm.run(alg)
            out = astra.data2d.get(rid)
            astra.algorithm.delete(alg)
            astra.data2d.delete([sid, rid])
            return out

        fwd_one(xs[0]), bp_one(ys[0]), fbp_one(ys[0])
        fwd = best_of(lambda: [fwd_one(x) for x in xs], repeats)
        adj = best_of(lambda: [bp_one(y) for y in ys], repeats)
        rec = best_of(lambda: [fbp_one(y) for y in ys], repeats)
        mism = dot_test(fwd_one, bp_one, xs[0].astype(np.float32), ys[0])
        rows.append(Row(peer=f"ASTRA {astra.__version__} CPU `{kind}`", forward=fwd, adjoint=adj,
                        fbp=rec, adjoint_test=mism, note="loops over the batch"))
        astra.projector.delete(pid)
    return rows


def skimage_row(batch: int, repeats: int) -> Row:
    import skimage
    from skimage.transform import iradon, radon

    deg = np.arange(VIEWS) * 180.0 / VIEWS
    rng = np.random.default_rng(0)
    xs = rng.random((batch, N, N))
    sino = radon(xs[0], theta=deg, circle=False)
    ys = np.stack([sino] * batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwd = best_of(lambda: [radon(x, theta=deg, circle=False) for x in xs], repeats)
        rec = best_of(lambda: [iradon(y, theta=deg, circle=False, output_size=N) for y in ys],
                      repeats)
    return Row(peer=f"scikit-image {skimage.__version__} radon / iradon", forward=fwd,
               adjoint=None, fbp=rec, adjoint_test=None,
               note=f"{sino.shape[0]} detectors (its own choice); no adjoint; unmatched pair")


def torchtomo_row(batch: int, repeats: int) -> Row:
    import torchtomo

    p = torchtomo.ParallelBeam(img_size=N, n_angles=VIEWS, n_det=DETS, circle=False,
                               backend="torch")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, N, N, generator=gen)
    with torch.no_grad():
        y0 = p.forward(x)
        y = torch.rand(y0.shape, generator=gen)
        p.adjoint(y)
        fwd = best_of(lambda: p.forward(x), repeats)
        adj = best_of(lambda: p.adjoint(y), repeats)
        lhs = float((p.forward(x).double() * y.double()).sum())
        rhs = float((x.double() * p.adjoint(y).double()).sum())
    return Row(peer=f"torchtomo {getattr(torchtomo, '__version__', '?')} `torch`", forward=fwd,
               adjoint=adj, fbp=None, adjoint_test=abs(lhs - rhs) / abs(lhs),
               note=f"{y0.shape[-1]} detectors (it ignores n_det={DETS} with circle=False); "
                    "its FBP fails on this geometry")


def deepinv_row(batch: int, repeats: int) -> Row:
    import deepinv

    p = deepinv.physics.Tomography(angles=VIEWS, img_width=N, circle=False, device="cpu",
                                   normalize=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, N, N, generator=gen)
    with torch.no_grad():
        y0 = p.A(x)
    y = torch.rand(y0.shape, generator=gen)
    with torch.no_grad():
        p.A_adjoint(y)
        fwd = best_of(lambda: p.A(x), repeats)
        adj = best_of(lambda: p.A_adjoint(y), repeats)
        rec = best_of(lambda: p.A_dagger(y), 1) if batch == 1 else None  # ~10 s per image
        lhs = float((p.A(x).double() * y.double()).sum())
        rhs = float((x.double() * p.A_adjoint(y).double()).sum())
    return Row(peer=f"deepinv {deepinv.__version__} Tomography", forward=fwd, adjoint=adj,
               fbp=rec, adjoint_test=abs(lhs - rhs) / abs(lhs),
               note=f"{y0.shape[-2]} detectors (its own choice); FBP timed once, batch 1 only")


def fmt(v: Optional[float], unit: str = "ms") -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:,.1f}"
    return f"{v:.0e}"


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from _arguments import positive_int  # noqa: E402


#: What ``--skip`` accepts: the peers, and ``torch`` (our matrix-free backend's row).
SKIPPABLE = ("astra", "skimage", "torchtomo", "deepinv", "torch")


def main(argv=None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--batches", type=positive_int, nargs="+", default=[1, 8])
    ap.add_argument("--skip", nargs="*", default=[], choices=SKIPPABLE,
                    metavar="PEER", help="peers to skip: " + " ".join(SKIPPABLE))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    print(f"# CPU benchmark, case P256 ({N}x{N}, {VIEWS} views over [0, pi), {DETS} detectors), "
          f"float32, torch {torch.__version__}, {args.threads} threads, best of {args.repeats}")
    for batch in args.batches:
        rows: List[Row] = []
        candidates = [("ours", lambda: [ours(batch, args.repeats, "sparse")])]
        if "torch" not in args.skip and batch == 1:
            candidates.append(("torch", lambda: [ours(batch, 1, "torch")]))
        candidates += [("astra", lambda: astra_rows(batch, args.repeats)),
                       ("skimage", lambda: [skimage_row(batch, args.repeats)]),
                       ("torchtomo", lambda: [torchtomo_row(batch, args.repeats)]),
                       ("deepinv", lambda: [deepinv_row(batch, args.repeats)])]
        notes = []
        for name, make in candidates:
            if name in args.skip:
                continue
            try:
                rows.extend(make())
            except ImportError as exc:
                notes.append(f"{name}: not installed ({exc.name})")
            except Exception as exc:  # a peer failing must not stop the table
                notes.append(f"{name}: failed: {type(exc).__name__}: {exc}")
        base = rows[0]
        peers = [r for r in rows[1:] if not r["peer"].startswith("known-operators")]
        print(f"\n## batch {batch}\n")
        print("| implementation | forward ms | adjoint ms | FBP ms | adjoint test | note |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['peer']} | {fmt(r['forward'])} | {fmt(r['adjoint'])} | {fmt(r['fbp'])} |"
                  f" {fmt(r['adjoint_test'], 'e')} | {r['note']} |")
        for key in ("forward", "adjoint", "fbp"):
            times = [r[key] for r in peers if r.get(key) is not None]
            if times and base.get(key):
                print(f"- {key}: fastest peer {min(times):.1f} ms, ours {base[key]:.1f} ms: "
                      f"ours is {min(times) / base[key]:.1f}x faster")
        for n in notes:
            print(f"- {n}")
        results[batch] = {"rows": rows, "notes": notes}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
