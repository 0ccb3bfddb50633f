"""The Triton kernels against the reference backend: exactness, adjointness, batching, errors.

On a machine with CUDA the checks run in-process on the GPU. Without one they run once, in a
subprocess with ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, slow: tiny sizes only), so
that the interpreter flag, which Triton reads when the kernels are decorated, cannot leak into
other tests. Everything skips when ``triton`` is not installed.

Tolerances (float32): forward and adjoint within 1e-5 relative (L2) of the float64 reference,
dot-product test within 1e-6 relative; float64: 1e-12. Half-precision storage (float16,
bfloat16): within ``HALF_TOL`` of the float64 reference applied to the rounded input (the
result is rounded once to the storage dtype; unit roundoff 2**-11 and 2**-8).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if __name__ != "__main__":  # also run as a script: the interpreter worker below
    from ..triton_floor import skip_unless_triton_runs_the_kernels

    skip_unless_triton_runs_the_kernels(interpreting=not torch.cuda.is_available())

REPO = Path(__file__).resolve().parents[2]

F32_TOL = 1e-5
DOT_TOL = 1e-6
F64_TOL = 1e-12
HALF_TOL = {"float16": 1e-3, "bfloat16": 8e-3}


def _cases():
    """(name, grid, geometry, batch, config kwargs, "v3" (``KernelConfig.v3``) or None (the
    default launch), dtype)."""
    import operators as op
    g_even = op.ImageGrid(shape=(9, 10), spacing=(1.0, 1.0))
    g_odd = op.ImageGrid(shape=(7, 9), spacing=(0.8, 1.1))
    odd_angles = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, -0.3, 4.0, math.pi)
    g_tall = op.ImageGrid(shape=(13, 6), spacing=(1.0, 1.0))
    tall_geom = op.ParallelGeometry(
        angles=tuple(math.pi / 4 + d for d in (-0.1, -0.02, 0.02, 0.1, 1.0, 2.0)),
        detector_count=21, detector_spacing=1.0)
    return [
        ("parallel-full-even", g_even, op.ParallelGeometry.full_scan(7, 15, 1.0), 3, None,
         "float32"),
        ("parallel-odd-45deg-fine-offset", g_odd,
         op.ParallelGeometry(angles=odd_angles, detector_count=31, detector_spacing=0.4,
                             detector_offset=-0.7), 2, None, "float32"),
        ("parallel-limited-angle-offset", g_even,
         op.ParallelGeometry.limited_angle(2.0, 7, 15, 1.0, start=0.3, detector_offset=1.3),
         2, None, "float32"),
        ("fan-flat-offset", g_even,
         op.FanGeometry.full_scan(7, 15, 2.0, 20.0, 40.0, "flat", detector_offset=0.9), 2, None,
         "float32"),
        ("fan-curved-short-scan", g_odd,
         op.FanGeometry.short_scan(7, 15, 1.5, 12.0, 30.0, "curved"), 2, None, "float32"),
        ("fan-curved-near-source", g_odd,
         op.FanGeometry(angles=odd_angles, detector_count=21, detector_spacing=1.0,
                        source_to_isocenter=6.5, source_to_detector=11.0, detector="curved"),
         2, None, "float32"),
        ("fan-flat-limited-float64", g_even,
         op.FanGeometry.limited_angle(2.5, 7, 15, 2.0, 20.0, 40.0, "flat", start=-0.4), 2, None,
         "float64"),
        # The generic adjoint on a parallel beam, and the unframed forward (no transposed copy).
        ("parallel-batch-40-small-tiles", g_odd, op.ParallelGeometry.full_scan(5, 11, 1.2), 40,
         dict(view_block=2, det_block=8, tile_h=4, tile_w=4, b_block=16,
              layout="channels_last", transposed=False, parallel_adjoint="generic"),
         "float32"),
        ("parallel-odd-float64", g_odd,
         op.ParallelGeometry(angles=odd_angles, detector_count=31, detector_spacing=0.4,
                             detector_offset=-0.7), 2, None, "float64"),
        ("parallel-batch-1-plain-layout", g_even, op.ParallelGeometry.full_scan(7, 15, 1.0), 1,
         dict(view_block=1, det_block=16, tile_h=2, tile_w=8, b_block=1, group=1,
              layout="plain"),
         "float32"),
        # Two groups with a partial batch tile (batch masks on the loads).
        ("fan-curved-batch-3-plain-two-groups", g_odd,
         op.FanGeometry.full_scan(7, 15, 1.5, 15.0, 30.0, "curved"), 3,
         dict(b_block=4, group=2, layout="plain"), "float32"),
        # The launch configuration of the P512 benchmark case (batch 8: default 8x16 pixel
        # tiles, batch tile 8, channels-last rows of 8 images), on a 64x64 crop of its
        # geometry: 16 of its 512 view angles (0, pi/4, pi/2 and 3 pi/4 among them), an odd
        # detector count covering the image.
        ("parallel-p512-launch-batch-8", op.ImageGrid(shape=(64, 64), spacing=(1.0, 1.0)),
         op.ParallelGeometry(angles=op.ParallelGeometry.full_scan(512, 91, 1.0).angle_array()[::32],
                             detector_count=91, detector_spacing=1.0), 8, None, "float32"),
        # The same with v3's launch (channels-last), which the benchmark times beside v4's.
        ("parallel-p512-v3-launch-batch-8", op.ImageGrid(shape=(64, 64), spacing=(1.0, 1.0)),
         op.ParallelGeometry(angles=op.ParallelGeometry.full_scan(512, 91, 1.0).angle_array()[::32],
                             detector_count=91, detector_spacing=1.0), 8, "v3", "float32"),
        # v4's planar layout with a half-padded last plane and a program tile of 4 planes of
        # which 2 exist (batch 6: masked loads), on a fan beam; and the default launch at 6.
        ("fan-flat-planar-batch-6-masked", g_odd,
         op.FanGeometry.full_scan(7, 15, 2.0, 20.0, 40.0, "flat", detector_offset=-0.6), 6,
         dict(view_block=4, det_block=8, tile_h=4, tile_w=8, b_block=16, group=4,
              layout="planar"), "float32"),
        ("fan-flat-planar-batch-6", g_odd,
         op.FanGeometry.full_scan(7, 15, 2.0, 20.0, 40.0, "flat", detector_offset=-0.6), 6,
         None, "float32"),
        # Eight planes of 4 images per thread (two quads of accumulators; the benchmark's
        # `[v4, 8 planes]` variant), batch 40 in two batch tiles, parallel and fan.
        ("parallel-planar-8-planes-batch-40", g_odd,
         op.ParallelGeometry.full_scan(7, 15, 1.0, detector_offset=0.3), 40,
         dict(view_block=4, det_block=8, tile_h=4, tile_w=8, b_block=32, group=4,
              layout="planar"), "float32"),
        ("fan-flat-planar-8-planes-batch-40", g_even,
         op.FanGeometry.full_scan(7, 15, 2.0, 20.0, 40.0, "flat"), 40,
         dict(view_block=4, det_block=8, tile_h=4, tile_w=8, b_block=32, group=4,
              layout="planar"), "float32"),
        # Detectors far narrower than the image: pixels whose candidate rays all miss the
        # detector, where the unmasked adjoints must read zeros of the frame (parallel) or a
        # clamped ray with weight zero (fan).
        # A detector pitch of 1/100 pixel: ~200 candidate rays per pixel and view, beyond the
        # affine parallel adjoint's bound, so the generic kernel (clamped to the detector)
        # runs; the affine one drifted past 1e-5 in float32 at 1/1000 pixel.
        ("parallel-fine-pitch-generic", op.ImageGrid(shape=(4, 4), spacing=(1.0, 1.0)),
         op.ParallelGeometry(angles=(0.0, 0.3, 1.2), detector_count=24, detector_spacing=0.01,
                             detector_offset=1.0), 2, None, "float32"),
        ("parallel-narrow-detector-batch-8", op.ImageGrid(shape=(16, 16), spacing=(1.0, 1.0)),
         op.ParallelGeometry.full_scan(6, 5, 1.0, detector_offset=0.7), 8, None, "float32"),
        ("fan-flat-narrow-detector-batch-8", op.ImageGrid(shape=(16, 16), spacing=(1.0, 1.0)),
         op.FanGeometry.full_scan(6, 5, 1.0, 40.0, 80.0, "flat", detector_offset=0.7), 8, None,
         "float32"),
        # v3's launch at batch 32 (channels-last rows of 32 images), parallel and fan.
        ("parallel-v3-launch-batch-32", g_even, op.ParallelGeometry.full_scan(7, 15, 1.0), 32,
         "v3", "float32"),
        ("fan-curved-v3-launch-batch-32", g_odd,
         op.FanGeometry.full_scan(7, 15, 1.5, 15.0, 30.0, "curved"), 32, "v3", "float32"),
        # v1's candidate count (a reduction over the tile in every view), kept selectable.
        ("fan-flat-v1-count-reduce", g_odd,
         op.FanGeometry.full_scan(7, 15, 2.0, 20.0, 40.0, "flat"), 8,
         dict(tile_h=4, tile_w=8, b_block=8, group=8, adjoint_count="reduce", framed=False),
         "float32"),
        # Half-precision storage: 8 images per 128-bit load (batch 16 spans two batch tiles).
        ("parallel-float16-batch-16", g_odd,
         op.ParallelGeometry.full_scan(7, 15, 1.0, detector_offset=0.4), 16,
         dict(b_block=8), "float16"),
        ("fan-curved-bfloat16", g_even, op.FanGeometry.full_scan(7, 15, 1.5, 15.0, 30.0, "curved"),
         4, None, "bfloat16"),
        # A tall grid and views on both sides of 45 degrees: tiles mix rays that step over rows
        # (13 steps) and over columns (6 steps), so the framed forward's unmasked loads must
        # clamp the step too (batch 8: channels-last; batch 1: plain layout).
        ("parallel-tall-mixed-tiles-batch-8", g_tall, tall_geom, 8, None, "float32"),
        ("parallel-tall-mixed-tiles-batch-1", g_tall, tall_geom, 1, None, "float32"),
    ]


def run_checks(device: str) -> dict:
    """All numeric checks on ``device``; returns ``{case: {metric: value}}`` (JSON-friendly)."""
    import warnings

    import operators as op
    from operators.backends.reference import ReferenceBackend
    from operators.backends.triton_backend import KernelConfig, TritonBackend

    results = {}
    gen = torch.Generator().manual_seed(0)
    for name, grid, geom, batch, cfg, dtype_name in _cases():
        dtype = getattr(torch, dtype_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a_ref = op.XRayTransform(grid, geom, backend="torch")
        table = a_ref.ray_table.to(device)
        ref = ReferenceBackend(grid)
        if cfg == "v3":
            cfg = KernelConfig.v3(batch, dtype).as_dict()
        kern = TritonBackend(grid, geom, KernelConfig(**cfg) if cfg else None)
        x = torch.rand(batch, *grid.shape, generator=gen, dtype=torch.float64)
        y = torch.rand(batch, *geom.sinogram_shape, generator=gen, dtype=torch.float64)
        yk = kern.forward(x.to(device, dtype), table).double().cpu()
        xk = kern.adjoint(y.to(device, dtype), table).double().cpu()
        xd, yd = x.to(dtype).double(), y.to(dtype).double()
        # Against the float64 model of the input as stored (half precision rounds it).
        yr = ref.forward(xd, a_ref.ray_table)
        xr = ref.adjoint(yd, a_ref.ray_table)
        lhs, rhs = float((yk * yd).sum()), float((xd * xk).sum())
        results[name] = dict(
            dtype=dtype_name,
            out_dtype=str(kern.forward(x[:1].to(device, dtype), table).dtype).split(".")[-1],
            forward_rel=float((yk - yr).norm() / yr.norm()),
            adjoint_rel=float((xk - xr).norm() / xr.norm()),
            dot_rel=abs(lhs - rhs) / abs(lhs),
            shapes_ok=(tuple(yk.shape) == (batch, *geom.sinogram_shape)
                       and tuple(xk.shape) == (batch, *grid.shape)),
            deterministic=bool(torch.equal(
                kern.adjoint(y.to(device, dtype), table).double().cpu(), xk)),
        )

    # v5's pair addressing against v1-v4's (the forward's ``pair_offset``): the same loads and
    # sums, so the same results bit for bit, in every layout, framed or masked, transposed or
    # not, with full and partial batch tiles.
    g_odd = op.ImageGrid(shape=(7, 9), spacing=(0.8, 1.1))
    par = op.ParallelGeometry(angles=(0.0, 0.6, math.pi / 4, 1.9, math.pi / 2, 2.9),
                              detector_count=17, detector_spacing=0.7, detector_offset=0.4)
    fan = op.FanGeometry.full_scan(6, 17, 1.5, 15.0, 30.0, "curved", detector_offset=-0.5)
    pair = {}
    for label, geom, batch, cfg in (
            ("planar-4-groups-partial", par, 6, dict(view_block=4, det_block=8, b_block=16,
                                                     group=4, layout="planar")),
            ("planar-2-groups-fan", fan, 8, dict(view_block=4, det_block=8, b_block=8,
                                                 group=4, layout="planar")),
            ("channels-last-transposed", fan, 8, dict(view_block=4, det_block=8, b_block=8,
                                                      group=4, layout="channels_last",
                                                      forward_max_registers=48)),
            ("channels-last-untransposed-masked", par, 5, dict(
                view_block=2, det_block=8, b_block=8, group=4, layout="channels_last",
                transposed=False)),
            ("plain-unframed", fan, 3, dict(b_block=4, group=2, layout="plain", framed=False)),
            ("plain-batch-1", par, 1, dict(view_block=1, det_block=16, b_block=1, group=1,
                                           layout="plain"))):
        table = op.XRayTransform(g_odd, geom, backend="torch").ray_table.to(device)
        x = torch.rand(batch, *g_odd.shape, generator=gen).to(device)
        v4, v5 = (TritonBackend(g_odd, geom, KernelConfig(**cfg, pair_offset=flag)).forward(
            x, table).cpu() for flag in (False, True))
        ref = ReferenceBackend(g_odd).forward(x.double().cpu(), table.cpu())
        pair[label] = dict(equal=bool(torch.equal(v4, v5)),
                           rel=float((v5.double() - ref).norm() / ref.norm()))
        # v6: the same tiles in another order (longest loop first), so the same values.
        ordered = TritonBackend(g_odd, geom, KernelConfig(**cfg, tile_order="longest_first"))
        v6 = ordered.forward(x, table).cpu()
        order = ordered.order(ordered.tables(table), ordered.config.view_block,
                              ordered.config.det_block).cpu()
        pair[label].update(ordered_equal=bool(torch.equal(v4, v6)),
                           permuted=bool((order != torch.arange(order.numel())).any()))
        if label == "planar-4-groups-partial":  # the kernel reads the order: a wrong one shows
            ordered.tables(table)["orders"][(4, 8)] = torch.zeros_like(order).to(device)
            ordered._launches.clear()
            ordered._ready.clear()
            pair[label]["wrong_order_differs"] = not torch.equal(
                v4, ordered.forward(x, table).cpu())
    results["pair_offset"] = pair

    # Through the operator: auto-selection on CUDA, autograd and double backward.
    grid = op.ImageGrid(shape=(6, 7), spacing=(1.0, 1.0))
    geom = op.FanGeometry.full_scan(5, 11, 2.0, 15.0, 30.0, "flat")
    a = op.XRayTransform(grid, geom, backend="triton").to(device)
    x = torch.rand(2, 6, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    y = torch.rand(2, 5, 11, generator=gen, dtype=torch.float64).to(device)
    v = torch.rand(2, 6, 7, generator=gen, dtype=torch.float64).to(device)
    (g,) = torch.autograd.grad((a(x) * y).sum(), x)
    explicit = a.T(y)
    # Double backward: the Hessian of 0.5 |A x|^2 applied to v is A^T A v.
    (hv,) = torch.autograd.grad(0.5 * a(x).pow(2).sum(), x, create_graph=True)
    (hvv,) = torch.autograd.grad((hv * v).sum(), x)
    normal_v = a.T(a(v))
    results["autograd"] = dict(
        grad_rel=float((g - explicit).norm() / explicit.norm()),
        double_backward_rel=float((hvv - normal_v).norm() / normal_v.norm()),
        auto_backend=op.XRayTransform(grid, geom).backend_name(torch.device(device)),
    )

    # A user's torch.set_default_device (here "meta", which holds no data) must not reach the
    # tensors the backend makes for itself: they follow the data's device.
    try:
        with torch.device("meta"):
            moved = (a(x.detach()), a.T(y))
        results["default_device"] = dict(
            error="", devices=sorted({str(t.device) for t in moved}), data=str(x.device))
    except Exception as exc:
        results["default_device"] = dict(error=f"{type(exc).__name__}: {exc}", devices=[],
                                         data=str(x.device))

    # Errors name the argument.
    kern = TritonBackend(grid, geom)
    table = a.ray_table
    errors = {}
    for label, call in (
            ("integer", lambda: kern.forward(torch.zeros(1, 6, 7, dtype=torch.int32,
                                                         device=device), table)),
            ("shape", lambda: kern.adjoint(torch.zeros(1, 5, 10, device=device), table))):
        try:
            call()
            errors[label] = ""
        except (TypeError, ValueError) as exc:
            errors[label] = f"{type(exc).__name__}: {exc}"
    results["errors"] = errors
    return results


@pytest.fixture(scope="module")
def results():
    if torch.cuda.is_available():
        return run_checks("cuda")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, "--worker", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"interpreter worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASE_NAMES = [case[0] for case in _cases()]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_matches_reference_and_is_adjoint(results, case):
    r = results[case]
    tol = F64_TOL if r["dtype"] == "float64" else HALF_TOL.get(r["dtype"], F32_TOL)
    dot_tol = F64_TOL if r["dtype"] == "float64" else HALF_TOL.get(r["dtype"], DOT_TOL)
    assert r["shapes_ok"]
    assert r["out_dtype"] == r["dtype"], "the result keeps the storage dtype"
    assert r["forward_rel"] < tol, r
    assert r["adjoint_rel"] < tol, r
    assert r["dot_rel"] < dot_tol, r
    assert r["deterministic"], "the gather adjoint must be bitwise reproducible"


def test_pair_offset_gives_the_same_forward_bit_for_bit(results):
    """v5's addressing of each ray's second neighbour (its first plus a fixed distance) reads
    what v1-v4's computed address read: the forward is unchanged bit for bit, and exact."""
    pair = results["pair_offset"]
    assert len(pair) == 6
    for label, r in pair.items():
        assert r["equal"], label
        assert r["rel"] < F32_TOL, (label, r)


def test_tiles_longest_first_give_the_same_forward_bit_for_bit(results):
    """v6 (``tile_order="longest_first"``): the programs take the ray tiles in the host's
    order, and every tile computes what it computed in the grid's order, in every layout;
    the order is read (an all-zero one changes the result) and is not the identity in half
    of these launches (in the others the few tiles of these small sinograms tie)."""
    pair = results["pair_offset"]
    for label, r in pair.items():
        assert r["ordered_equal"], label
    assert sum(r["permuted"] for r in pair.values()) >= 3, pair
    assert pair["planar-4-groups-partial"]["permuted"]
    assert pair["planar-4-groups-partial"]["wrong_order_differs"]


def test_autograd_and_double_backward(results):
    r = results["autograd"]
    assert r["grad_rel"] < 1e-12
    assert r["double_backward_rel"] < 1e-12


def test_auto_selection_on_cuda(results):
    expected = "triton" if torch.cuda.is_available() else results["autograd"]["auto_backend"]
    assert results["autograd"]["auto_backend"] == expected
    if torch.cuda.is_available():
        assert expected == "triton"


def test_the_default_device_does_not_reach_the_kernels(results):
    r = results["default_device"]
    assert r["error"] == "" and r["devices"] == [r["data"]], r


def test_bad_input_errors_name_the_argument(results):
    errors = results["errors"]
    assert errors["integer"].startswith("TypeError") and "x must be float32" in errors["integer"]
    assert errors["shape"].startswith("ValueError") and "y must have shape" in errors["shape"]


def _framed_forward_rows(grid, geom, cfg, clamp_steps=True):
    """Emulate the framed forward's unmasked addresses (numpy): for every ray of every tile and
    every step of the tile's union, the (half, row, column) it reads, as the kernel computes
    them. Returns ``(max row index - rows of its half, min column, max column - row length)``:
    all must be < 0, >= 0 and < 0 for every read to fall inside its half."""
    import numpy as np
    from operators._joseph import ray_table
    from operators.backends.triton_backend import _step_ranges
    h, w = grid.shape
    t = torch.from_numpy(ray_table(*geom.lines(), grid)).reshape(4, -1)
    slope, icpt, vert = t[0].numpy(), t[1].numpy(), (t[3] > 0.5).numpy()
    kmin, kmax = (a.numpy() for a in _step_ranges(t[0], t[1], t[3] > 0.5, grid))
    n_views, n_det = geom.sinogram_shape
    over_rows, min_col, over_cols = -np.inf, np.inf, -np.inf
    for v0 in range(0, n_views, cfg.view_block):
        for j0 in range(0, n_det, cfg.det_block):
            rays = np.array([v * n_det + j for v in range(v0, min(v0 + cfg.view_block, n_views))
                             for j in range(j0, min(j0 + cfg.det_block, n_det))])
            k = np.arange(kmin[rays].min(), kmax[rays].max())[None, :]
            n_other = np.where(vert[rays], w, h)[:, None]
            rows = np.where(vert[rays], h, w)[:, None]  # rows of the half this ray reads
            i0 = np.floor(slope[rays, None] * k + icpt[rays, None]).astype(np.int64)
            i0 = np.clip(i0, -1, n_other - 1)
            ka = np.minimum(k, rows - 1) if clamp_steps else k
            over_rows = max(over_rows, float((ka - rows).max()))
            min_col = min(min_col, float((i0 + 1).min()))           # framed column of i0
            over_cols = max(over_cols, float((i0 + 2 - (n_other + 2)).max()))  # of i0 + 1
    return over_rows, min_col, over_cols


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_framed_forward_reads_stay_inside_their_half(batch):
    """The framed forward loads without masks, so every address it forms must be valid: on a
    tall grid whose tiles mix rays stepping over rows (13 steps) and over columns (6 steps),
    the steps past a ray's last row must be clamped (the emulation is sharp: without the clamp
    the reads leave the half)."""
    import math

    import operators as op
    from operators.backends.triton_backend import KernelConfig
    grid = op.ImageGrid(shape=(13, 6), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry(
        angles=tuple(math.pi / 4 + d for d in (-0.1, -0.02, 0.02, 0.1, 1.0, 2.0)),
        detector_count=21, detector_spacing=1.0)
    cfg = KernelConfig.default(batch)
    assert cfg.framed and cfg.transposed
    over_rows, min_col, over_cols = _framed_forward_rows(grid, geom, cfg)
    assert over_rows < 0 and min_col >= 0 and over_cols < 0
    assert _framed_forward_rows(grid, geom, cfg, clamp_steps=False)[0] >= 0


def test_parallel_view_table_is_the_rays_affine_form():
    """The parallel adjoint's per-view parameters reproduce the ray table: ray ``j`` crosses
    pixel ``(r, c)``'s row (or column) at ``(j - j*) delta`` from its centre, with
    ``j* = a_c c + a_r r + a_0``, for every ray and pixel; the step is the ray's; the
    candidate count is ceil(2 / |delta|); and a table that is not affine in the detector index
    (or has one detector) falls back to the generic kernel (``None``)."""
    import math
    import warnings

    import operators as op
    from operators.backends.triton_backend import parallel_view_table
    grid = op.ImageGrid(shape=(9, 12), spacing=(0.8, 1.1))
    geom = op.ParallelGeometry(angles=(0.0, 0.3, math.pi / 4, 2.0, 4.0), detector_count=17,
                               detector_spacing=0.6, detector_offset=0.45)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table
    pview, count = parallel_view_table(table)
    r = torch.arange(9, dtype=torch.float64)[:, None, None]
    c = torch.arange(12, dtype=torch.float64)[None, :, None]
    j = torch.arange(17, dtype=torch.float64)
    for v in range(5):
        slope, icpt, step, vert = table[:, v]
        k, i = (r, c) if vert[0] > 0.5 else (c, r)
        crossing = slope[0] * k + icpt - i  # (r, c, j): where ray j passes pixel (r, c)
        a_c, a_r, a_0, delta = pview[v, :4].tolist()
        jstar = a_c * c + a_r * r + a_0
        assert torch.allclose(crossing, (j - jstar) * delta, rtol=0, atol=1e-11)
        assert torch.allclose(pview[v, 4], step[0])
    assert count.tolist() == [math.ceil(2 / abs(d)) for d in pview[:, 3].tolist()]
    bent = table.clone()
    bent[1, 2, 5] += 1e-6
    assert parallel_view_table(bent) is None
    assert parallel_view_table(table[:, :, :1]) is None


@pytest.mark.parametrize("pitch, affine", [(1.0, True), (0.2, True), (0.05, False)])
def test_a_fine_detector_pitch_takes_the_generic_parallel_adjoint(monkeypatch, pitch, affine):
    """The affine adjoint loops over ~2 / pitch candidates per pixel and view: beyond
    PARALLEL_AFFINE_MAX_CANDIDATES the backend sends the parallel adjoint to the generic kernel
    and pads no frame."""
    import warnings

    import operators as op
    from operators.backends.triton_backend import PARALLEL_AFFINE_MAX_CANDIDATES, TritonBackend
    if not torch.cuda.is_available():  # builds tables only, launches nothing
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    grid = op.ImageGrid(shape=(8, 8))
    geom = op.ParallelGeometry.full_scan(4, int(16 / pitch), pitch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table
    tabs = TritonBackend(grid, geom).tables(table)
    most = int(tabs["parallel"][1].max())
    assert tabs["parallel_affine"] is affine and (most <= PARALLEL_AFFINE_MAX_CANDIDATES) is affine
    assert tabs["parallel_frame"] == (most if affine else 0)


def test_unavailable_without_cuda_or_interpreter(monkeypatch):
    from operators.backends import BackendUnavailableError, make_backend
    from operators.backends.triton_backend import triton_available
    import operators as op
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = triton_available()
    assert not ok and "CUDA" in why and "TRITON_INTERPRET" in why
    grid = op.ImageGrid(shape=(4, 4), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry.full_scan(3, 7, 1.0)
    with pytest.raises(BackendUnavailableError, match="backend='triton'"):
        make_backend("triton", grid, geom)


@pytest.fixture(scope="module")
def static():
    """``benchmarks/kernel_static.py``: compile for sm_90 ahead of time, no GPU needed."""
    pytest.importorskip("triton.backends.nvidia")
    try:
        from benchmarks import kernel_static
    except ImportError as exc:  # pragma: no cover - other triton versions
        pytest.skip(f"this triton has no ahead-of-time compile API: {exc}")
    return kernel_static


@pytest.mark.parametrize("launch", ["default", "v3"])
@pytest.mark.parametrize("geom_code", [0, 1, 2], ids=["parallel", "fan-flat", "fan-curved"])
@pytest.mark.parametrize("batch", [1, 8, 32])
def test_kernels_compile_for_the_gpu(static, geom_code, batch, launch):
    """The interpreter does not type-check like the compiler: build the float32 kernels for
    sm_90 as the runtime specialises them (planar or channels-last, aligned strides), with the
    default (v4) and v3 launches of ``batch``: vector loads of 4 images, no atomics, and no
    barrier or shared-memory traffic in the innermost loops (no per-step layout conversion
    between threads)."""
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.default(batch) if launch == "default" else KernelConfig.v3(batch)
    kernels = [static.adjoint_kernel(cfg, geom_code=geom_code)]
    if geom_code == 0:
        kernels.append(static.forward_kernel(cfg))
    for kern in kernels:
        assert "cubin" in kern.asm
        ptx = kern.asm["ptx"]
        if batch > 1:
            assert "ld.global.v4" in ptx, "the batch tile must be read with 128-bit loads"
        assert "atom" not in ptx, "both kernels must be gathers, without atomics"
        r = static.report(kern, 1.0)
        assert r["loop instr"] > 0
        assert r["barriers in loop"] == 0 and r["shared in loop"] == 0, r
        # The approximate instructions whose error bounds the fan interval's budget covers
        # (``_fan_kernel_intervals``); another one (div.approx, rcp.approx, a transcendental)
        # needs that budget revisited.
        approx = set(re.findall(r"\b(?:div|sqrt|rsqrt|rcp|sin|cos|lg2|ex2|tanh)"
                                r"\.(?:approx|full)[.\w]*", ptx))
        assert approx <= {"div.full.f32", "sqrt.approx.f32", "sqrt.approx.ftz.f32"}, approx


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_planar_launch_issues_fewer_instructions_per_image_than_v3(static, dtype):
    """v4's reason to exist, checked on the compiled code: at batch 32 a thread computes each
    ray's (pixel's) coefficients once for 16 (float32) or 32 (half) images instead of 4 or 8,
    so both loops issue fewer instructions per gathered image than v3's launch, still with
    128-bit loads and without barriers or shared memory."""
    from operators.backends.triton_backend import KernelConfig
    v4, v3 = KernelConfig.default(32, dtype), KernelConfig.v3(32, dtype)
    assert v4.layout == "planar"
    for build, lanes in ((static.forward_kernel, lambda c: c.view_block * c.det_block),
                         (static.adjoint_kernel, lambda c: c.tile_h * c.tile_w)):
        new, old = (static.report(build(c, dtype), static.images_per_thread(c, lanes(c)))
                    for c in (v4, v3))
        assert new["instr / image"] < 0.8 * old["instr / image"], (new, old)
        assert new["ld.v4 in loop"] > 0
        assert new["barriers in loop"] == 0 and new["shared in loop"] == 0, new


@pytest.mark.parametrize("batch, dtype", [(2, torch.float32), (8, torch.float32),
                                          (32, torch.float32), (16, torch.bfloat16)])
def test_pair_offset_saves_instructions_in_the_compiled_step(static, batch, dtype):
    """v5 (``pair_offset``), checked on the machine code ptxas makes for sm_90: the second
    neighbour's loads take an immediate offset, so a forward step issues at least 4 fewer
    instructions than v4's, and at batch 8 (P512) waits for memory once instead of twice
    (Triton 3.6 and 3.8). With Triton 3.8, for which the default was chosen, also no more load
    rounds anywhere and, where the default takes it (at most 2 groups per thread), no more
    registers; Triton 3.6 (the GPU image's, 2026-11-27) gives batch 8 48 registers instead of
    44 (the same occupancy) and bfloat16 batch 16 a second load round."""
    import triton
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.planar(batch, dtype)
    v4, v5 = (cfg.replace(pair_offset=flag) for flag in (False, True))
    (m4, r4), (m5, r5) = ((static.sass_report(k), static.registers(k))
                          for k in (static.forward_kernel(c, dtype) for c in (v4, v5)))
    if m4 is None:
        pytest.skip("this triton ships no nvdisasm")
    assert m5["sass instr / step"] <= m4["sass instr / step"] - 4, (m4, m5)
    assert cfg.pair_offset == (cfg.groups <= 2)
    if (batch, dtype) == (8, torch.float32):
        assert (m4["load rounds / step"], m5["load rounds / step"]) == (2, 1), (m4, m5)
    triton_3_8 = tuple(int(p) for p in re.findall(r"\d+", triton.__version__)[:2]) >= (3, 8)
    if triton_3_8:
        assert m5["load rounds / step"] <= m4["load rounds / step"], (m4, m5)
        if cfg.pair_offset:
            assert r5 <= r4, (r4, r5)
    if cfg.groups == 4 and dtype == torch.float32:
        # Capped at v4's 64 registers (``forward_max_registers``), v5 keeps most of its saving and
        # spills nothing.
        capped = static.forward_kernel(v5.replace(forward_max_registers=r4), dtype)
        loop = static.sass_loop(static.sass(capped))
        assert static.registers(capped) <= r4
        assert not any(re.search(r"\b(LDL|STL)\b", ins) for ins in loop), loop
        assert len(loop) < m4["sass instr / step"], (len(loop), m4)


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_tiles_longest_first_cost_nothing_in_the_loop(static, batch):
    """v6 reads one table entry per program before the loop: compiled for sm_90 the step has
    as many instructions (ptxas picks a few others) and load rounds, and the kernel as many
    registers."""
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.default(batch)
    grid, ordered = (static.forward_kernel(c) for c in
                     (cfg, cfg.replace(tile_order="longest_first")))
    if static.sass_report(grid) is None:
        pytest.skip("this triton ships no nvdisasm")
    assert static.sass_report(ordered) == static.sass_report(grid)
    assert static.registers(ordered) == static.registers(grid)
    loads = [static.sass(k).count("LDG") for k in (grid, ordered)]
    assert loads[1] == loads[0] + 1, loads  # and it is read: one global load more


def test_load_rounds_count_the_waits_between_loads(static):
    """``kernel_static.load_rounds`` on hand-written SASS: loads issued back to back are one
    round; a load after an instruction that reads an earlier load's registers starts the
    next; reading other registers does not."""
    S = static
    one = ["LDG.E.128 R8, desc[UR4][R2.64]", "IMAD R3, R4, R5, RZ",
           "LDG.E.128 R12, desc[UR4][R2.64+0x10]", "FFMA R20, R8, R9, R20"]
    two = ["LDG.E.128 R8, desc[UR4][R2.64]", "FFMA R20, R11, R4, R20",
           "LDG.E.128 R12, desc[UR4][R2.64+0x10]", "FFMA R20, R12, R4, R20"]
    assert S.load_rounds(one) == 1
    assert S.load_rounds(two) == 2
    assert S.load_rounds(["@P1 LDG.E R8, desc[UR4][R2.64]", "FADD R9, R8, R8",
                          "@!P1 LDG.E.64 R10, desc[UR4][R2.64]", "FADD R9, R12, R12"]) == 2


@pytest.fixture
def recorded_launches(monkeypatch):
    """The kernels replaced by recorders of their launch grid and tensor sizes, for meta
    tensors (no values): what the host code would launch, at any size, in milliseconds."""
    from operators.backends import triton_backend as TB
    from operators.backends import triton_kernels as K
    launches = []

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                sizes = [a.numel() for a in args if isinstance(a, torch.Tensor)]
                launches.append({"grid": grid, "images": args[1].shape[0],
                                 "largest": max(sizes)})
            return launch

    for name in ("joseph_forward_kernel", "joseph_adjoint_kernel",
                 "joseph_adjoint_parallel_kernel"):
        monkeypatch.setattr(K, name, Recorder())
    monkeypatch.setattr(TB, "_interpreting", lambda: True)  # meta tensors pass the device check
    # Nothing is interpreted (launches are recorded), so the GPU's Triton floor applies.
    monkeypatch.setattr(TB, "MIN_TRITON_INTERPRETER", TB.MIN_TRITON_COMPILED)
    return launches


def _launch(grid_shape, geometry, batch, direction, dtype=torch.float32):
    import operators as op
    from operators.backends.triton_backend import TritonBackend
    grid = op.ImageGrid(grid_shape)
    table = op.XRayTransform(grid, geometry, backend="torch").ray_table
    shape = grid_shape if direction == "forward" else geometry.sinogram_shape
    t = torch.empty(batch, *shape, dtype=dtype, device="meta")
    return getattr(TritonBackend(grid, geometry), direction)(t, table)


@pytest.mark.parametrize("direction", ["forward", "adjoint"])
def test_launches_stay_within_int32_offsets_and_the_grid_limit(recorded_launches, direction):
    """Every launch's tensors, the batch padded to its tiles, stay below 2**31 elements; the
    batch axis of the launch grid stays within CUDA's 65535; large images still go 40 to a
    launch (the chunks used to reserve 64 images of padding: 40 launches of one 4096^2 image)."""
    import operators as op
    P = op.ParallelGeometry
    cases = [((4096, 4096), P.full_scan(720, 5793), 40, torch.float32),
             ((3800, 3800), P.full_scan(720, 5400), 130, torch.float32),
             ((2048, 2048), P.full_scan(720, 2897), 300, torch.float16),
             ((8, 8), P.full_scan(4, 12), 1_100_000, torch.float32),
             ((8, 8), P.full_scan(4, 12), 2_200_001, torch.float16)]
    for shape, geometry, batch, dtype in cases:
        recorded_launches.clear()
        _launch(shape, geometry, batch, direction, dtype)
        images = [launch["images"] for launch in recorded_launches]
        assert sum(images) == batch
        assert all(launch["largest"] <= 2**31 - 1 for launch in recorded_launches)
        assert all(launch["grid"][1] <= 65535 for launch in recorded_launches)
        if shape == (4096, 4096):
            assert images == [40], images


def test_an_image_beyond_the_int32_offsets_is_refused_and_auto_takes_torch(recorded_launches):
    import operators as op
    from operators.backends import select_backend
    grid, geometry = (32768, 32768), op.ParallelGeometry.full_scan(4, 46341)
    with pytest.raises(ValueError, match="int32 offsets reach .* use backend='torch'"):
        _launch(grid, geometry, 1, "forward")
    assert not recorded_launches
    assert select_backend(torch.device("cuda"), op.ImageGrid(grid), geometry) != "triton"


def test_v1_batch_8_launch_synchronises_in_every_step(static):
    """v1's batch-8 launch (the P512 case that failed on the GPU) moved every step's
    coefficients between threads through shared memory, with barriers: the check above is
    sharp, and v2 removed exactly this."""
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.v1(8)
    for kern in (static.forward_kernel(cfg), static.adjoint_kernel(cfg)):
        r = static.report(kern, 1.0)
        assert r["barriers in loop"] > 0 and r["shared in loop"] > 0, r


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_kernels_read_8_images_per_load(static, dtype):
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.default(32, dtype)
    for kern in (static.forward_kernel(cfg, dtype), static.adjoint_kernel(cfg, dtype)):
        assert "ld.global.v4.b32" in kern.asm["ptx"] or "ld.global.v4" in kern.asm["ptx"]
        r = static.report(kern, 1.0)
        assert r["barriers in loop"] == 0 and r["shared in loop"] == 0, r


def test_p512_launch_case_uses_the_p512_tiles():
    """``parallel-p512-launch-batch-8`` stands for the P512 benchmark launch only while batch 8
    picks these tiles (v4), and ``parallel-p512-v3-launch-batch-8`` for v3's."""
    from operators.backends.triton_backend import KernelConfig
    cfg = KernelConfig.default(8)
    assert (cfg.tile_h, cfg.tile_w, cfg.b_block, cfg.group, cfg.layout) == (
        16, 16, 8, 4, "planar")
    cfg = KernelConfig.v3(8)
    assert (cfg.tile_h, cfg.tile_w, cfg.b_block, cfg.group, cfg.layout) == (
        8, 16, 8, 4, "channels_last")


def _parallel_interval_coverage(grid, geom, pad):
    """Emulate the parallel-beam candidate interval of ``joseph_adjoint_kernel`` in float32
    (view table, ``centre +- h``, ``ceil(lo - pad)``, ``floor(hi + pad)``) for every (ray,
    pixel) pair with a non-zero Joseph weight of the reference model.

    Returns ``(pairs, missed, overshoot)``: the number of such pairs, how many fall outside
    the kernel's interval, and the largest distance (detectors) by which a ray lies outside the
    unpadded float32 interval (negative: all strictly inside).
    """
    import numpy as np
    from operators._joseph import ray_table
    from operators.backends.triton_backend import _view_table
    h, w = grid.shape
    n_det = geom.detector_count
    table = ray_table(*geom.lines(), grid)
    views = _view_table(grid, geom)[0]
    pad32 = np.float32(pad)
    k = np.arange(max(h, w), dtype=np.float64)
    pairs = missed = 0
    overshoot = -np.inf
    for v in range(geom.angle_array().size):
        slope, icpt, step, vert = table[:, v, :]
        vert = vert[0] > 0.5  # one angle per view
        n_steps, n_other = (h, w) if vert else (w, h)
        t = slope[:, None] * k[None, :n_steps] + icpt[:, None]  # (detectors, steps)
        f = np.floor(t)
        frac = t - f
        i0 = f.astype(np.int64)
        jj, kk = np.broadcast_arrays(np.arange(n_det)[:, None], np.arange(n_steps)[None, :])
        for i, wt in ((i0, (1.0 - frac) * step[:, None]), (i0 + 1, frac * step[:, None])):
            live = (i >= 0) & (i < n_other) & (wt != 0.0)
            other, kl, j = i[live], kk[live], jj[live]
            r, c = (kl, other) if vert else (other, kl)
            a_c, a_r, a_0, half = views[v, :4]
            centre = a_c * c.astype(np.float32) + a_r * r.astype(np.float32) + a_0
            lo, hi = centre - half, centre + half
            first = np.maximum(-np.floor(pad32 - lo), np.float32(0.0)).astype(np.int64)
            last = np.minimum(np.floor(hi + pad32), np.float32(n_det - 1)).astype(np.int64)
            pairs += int(j.size)
            missed += int(((j < first) | (j > last)).sum())
            gap = np.maximum(lo.astype(np.float64) - j, j - hi.astype(np.float64))
            overshoot = max(overshoot, float(gap.max()))
    return pairs, missed, overshoot


def test_candidate_interval_covers_every_weight_at_p512_size():
    """The adjoint's float32 candidate interval contains every ray with a non-zero weight on the
    pixel, at the full P512 geometry (512x512, 512 views, 725 detectors), with the margin
    ``CANDIDATE_PAD`` at least 100 times the float32 error of the interval ends. Pure numpy
    (no Triton): the kernel's interval arithmetic, emulated."""
    import operators as op
    from operators.backends.triton_kernels import CANDIDATE_PAD
    grid = op.ImageGrid(shape=(512, 512), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry.full_scan(512, 725, 1.0)
    pairs, missed, overshoot = _parallel_interval_coverage(grid, geom, CANDIDATE_PAD)
    assert pairs > 100_000_000
    assert missed == 0, f"{missed} (ray, pixel) pairs with a non-zero weight are never visited"
    assert overshoot < CANDIDATE_PAD / 100, overshoot


def test_interval_coverage_check_detects_a_missing_pad():
    """The emulation above is sharp: without the pad, rays through the diamond's corners (weight
    ~1e-5) fall outside the float32 interval (a small geometry with the same property)."""
    import operators as op
    grid = op.ImageGrid(shape=(128, 128), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry.full_scan(128, 183, 1.0)
    _, missed_pad, _ = _parallel_interval_coverage(grid, geom, 0.02)
    _, missed_none, overshoot = _parallel_interval_coverage(grid, geom, 0.0)
    assert missed_pad == 0 and missed_none > 0 and 0.0 < overshoot < 1e-3


#: Relative error of PTX's ``div.full.f32`` (2 ulp, PTX ISA), which the compiled fan adjoint
#: uses for every ``/`` (``test_kernels_compile_for_the_gpu`` checks the instruction set).
_DIV_FULL = 2.0 ** -22


def _fan_kernel_intervals(grid, geom, gpu_budget=False):
    """Emulate ``joseph_adjoint_kernel``'s float32 candidate interval for every pixel and view of
    a fan geometry (numpy float32, ``arctan`` for the kernel's series; pixels whose diamond is
    not in front of the source try every detector).

    Returns ``(j_lo, j_hi, budget_lo, budget_hi)``, each ``(V, H, W)``: the unpadded interval
    ends (fractional detector indices) and, with ``gpu_budget``, how far the GPU's approximate
    arithmetic can move each end beyond numpy's correctly rounded float32. The budget takes
    twice the PTX ISA bounds: ``div.full.f32`` 2 ulp (flat: one division per tangent);
    curved: that, plus three half-angle reductions of the kernel's ``atan`` (one
    ``div.full.f32``, one ``sqrt.approx.f32`` of relative error 2^-23 and two rounded additions
    each, none amplified: ``d ln atan_step / d ln z <= 1``), plus the series' 1e-7 rad; and 8
    float32 ulp of the detector index for the final scale and shift (fused or not).
    """
    import numpy as np
    from operators.backends.triton_backend import _view_table
    views, code, det_scale, det_shift, sdd = _view_table(grid, geom)
    f = np.float32
    h, w = grid.shape
    rf = np.arange(h, dtype=f)[:, None]
    cf = np.arange(w, dtype=f)[None, :]
    n_det = geom.detector_count
    if code == 2:
        rel, absolute = 2 * (_DIV_FULL + 3 * 2.0 ** -21 + 8 * 2.0 ** -24), 2e-7
    else:
        rel, absolute = 2 * _DIV_FULL, 0.0
    j_round = 8 * float(np.spacing(f(n_det)))
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for p0, p1, p2, p3, p4, p5 in views[:, :6].astype(f):
            along = p0 * cf + p1 * rf + p2
            across = p3 * cf + p4 * rf + p5
            tans = np.stack([(across + p3) / (along + p0), (across - p3) / (along - p0),
                             (across + p4) / (along + p1), (across - p4) / (along - p1)])
            u_min, u_max = tans.min(0), tans.max(0)
            if code == 2:
                u_min, u_max = np.arctan(u_min), np.arctan(u_max)
            front = (along - abs(p0) - abs(p1)) > 0
            ends = []
            for u, fallback in ((u_min, f(-1.0)), (u_max, f(n_det))):
                j = f(sdd) * u * f(det_scale) + f(det_shift)
                budget = sdd * det_scale * (rel * np.abs(u.astype(np.float64)) + absolute) \
                    + j_round if gpu_budget else np.zeros(u.shape)
                ends.append((np.where(front, j, fallback), np.where(front, budget, 0.0)))
            (j_lo, b_lo), (j_hi, b_hi) = ends
            out.append((j_lo, j_hi, b_lo, b_hi))
    return [np.stack(a) for a in zip(*out)]  # each (V, H, W)


def _kernel_interval_lengths(grid, geom):
    """``j_last - j_first + 1`` of :func:`_fan_kernel_intervals` with ``CANDIDATE_PAD``."""
    import numpy as np
    from operators.backends.triton_kernels import CANDIDATE_PAD
    j_lo, j_hi, _, _ = _fan_kernel_intervals(grid, geom)
    pad = np.float32(CANDIDATE_PAD)
    first = np.maximum(-np.floor(pad - j_lo), np.float32(0)).astype(np.int64)
    last = np.minimum(np.floor(j_hi + pad), np.float32(geom.detector_count - 1)).astype(np.int64)
    return last - first + 1


def _fan_interval_coverage(grid, geom, pad, gpu_budget):
    """For every (ray, pixel) pair with a non-zero Joseph weight of the reference model of a fan
    geometry: is the ray inside the kernel's candidate interval of the pixel, with every end
    moved inwards by the GPU budget of :func:`_fan_kernel_intervals`?

    Returns ``(pairs, missed, worst)``: the number of such pairs, how many fall outside the
    padded interval, and the largest distance (detectors) by which a ray lies outside the
    unpadded, budget-shrunk interval (negative: all strictly inside).
    """
    import numpy as np
    from operators._joseph import ray_table
    h, w = grid.shape
    n_det = geom.detector_count
    table = ray_table(*geom.lines(), grid)
    j_lo, j_hi, b_lo, b_hi = _fan_kernel_intervals(grid, geom, gpu_budget)
    k = np.arange(max(h, w), dtype=np.float64)
    pairs = missed = 0
    worst = -np.inf
    for v in range(geom.angle_array().size):
        slope, icpt, step, vert = table[:, v, :]
        lo = j_lo[v].astype(np.float64) + b_lo[v]
        hi = j_hi[v].astype(np.float64) - b_hi[v]
        first = np.maximum(np.ceil(lo - pad), 0)
        last = np.minimum(np.floor(hi + pad), n_det - 1)
        for rows in (True, False):  # rays stepping over rows (vertical) or columns
            sel = np.nonzero((vert > 0.5) == rows)[0]
            n_steps, n_other = (h, w) if rows else (w, h)
            t = slope[sel, None] * k[None, :n_steps] + icpt[sel, None]
            fl = np.floor(t)
            frac = t - fl
            i0 = fl.astype(np.int64)
            jj, kk = np.broadcast_arrays(sel[:, None], np.arange(n_steps)[None, :])
            for i, wt in ((i0, (1.0 - frac) * step[sel, None]), (i0 + 1, frac * step[sel, None])):
                live = (i >= 0) & (i < n_other) & (wt != 0.0)
                other, kl, j = i[live], kk[live], jj[live]
                if j.size == 0:
                    continue
                r, c = (kl, other) if rows else (other, kl)
                pairs += int(j.size)
                missed += int(((j < first[r, c]) | (j > last[r, c])).sum())
                worst = max(worst, float(np.maximum(lo[r, c] - j, j - hi[r, c]).max()))
    return pairs, missed, worst


@pytest.mark.parametrize("detector", ["flat", "curved"])
def test_fan_candidate_interval_covers_every_weight_under_gpu_arithmetic(detector):
    """The fan adjoint's candidate interval is computed with approximate float32 division (and,
    curved, square roots) on the GPU, which the interpreter does not reproduce. At the
    benchmark's full F256 geometry (256x256, 360 views, 392 detectors, magnification 2), every
    ray with a non-zero weight on a pixel still lies inside the pixel's interval when each end
    is moved inwards by twice the PTX error bounds, with ``CANDIDATE_PAD`` at least 10 times the
    largest such distance; without the pad the emulation misses rays (it is sharp)."""
    import operators as op
    from operators.backends.triton_kernels import CANDIDATE_PAD
    grid = op.ImageGrid(shape=(256, 256), spacing=(1.0, 1.0))
    geom = op.FanGeometry.full_scan(360, 392, 2.0, 512.0, 1024.0, detector)
    pairs, missed, worst = _fan_interval_coverage(grid, geom, CANDIDATE_PAD, gpu_budget=True)
    assert pairs > 40_000_000
    assert missed == 0, f"{missed} (ray, pixel) pairs with a non-zero weight are never visited"
    assert worst < CANDIDATE_PAD / 10, worst
    _, missed_unpadded, _ = _fan_interval_coverage(grid, geom, 0.0, gpu_budget=False)
    assert missed_unpadded > 0


@pytest.mark.parametrize("seed", range(6))
def test_fan_candidate_counts_bound_every_pixels_interval(seed):
    """The count table of the adjoint (v2) is at least every pixel's candidate interval, for
    random fan geometries (flat / curved, magnification, offsets, sources close to the image,
    odd tiles); pure numpy, so CI checks it at sizes the interpreter cannot run."""
    import numpy as np
    import operators as op
    from operators.backends.triton_backend import candidate_counts
    from operators.backends.triton_kernels import CANDIDATE_PAD
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(20, 70, size=2))
    grid = op.ImageGrid(shape=(h, w), spacing=tuple(float(v) for v in rng.uniform(0.5, 1.5, 2)))
    r = grid.radius * float(rng.uniform(1.05, 3.0))
    geom = op.FanGeometry.full_scan(
        int(rng.integers(20, 90)), int(rng.integers(40, 200)), float(rng.uniform(0.3, 3.0)), r,
        r * float(rng.uniform(1.2, 3.0)), ["flat", "curved"][seed % 2],
        detector_offset=float(rng.uniform(-5, 5)))
    tile_h, tile_w = [(4, 8), (8, 16), (16, 16)][seed % 3]
    counts = candidate_counts(grid, geom, tile_h, tile_w, CANDIDATE_PAD).numpy()
    need = _kernel_interval_lengths(grid, geom)
    th, tw = -(-h // tile_h), -(-w // tile_w)
    padded = np.zeros((need.shape[0], th * tile_h, tw * tile_w), dtype=np.int64)
    padded[:, :h, :w] = need
    per_tile = padded.reshape(-1, th, tile_h, tw, tile_w).max(axis=(2, 4)).reshape(-1, th * tw)
    assert (counts >= per_tile).all(), int((per_tile - counts).max())
    # ... and not loose: it exceeds the need by at most one candidate on most tiles.
    assert np.mean(counts - np.maximum(per_tile, 0) <= 1) > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size P512 check needs a GPU")
def test_p512_full_size_on_gpu():
    """The benchmark case that failed on an H200 (2026-11-26: adjoint 8.1e-5 relative error,
    dot-product mismatch 1.5e-7): P512, batch 8, default launch, against the float64 reference."""
    import warnings

    import operators as op
    from operators.backends.reference import ReferenceBackend
    from operators.backends.triton_backend import KernelConfig, TritonBackend
    grid = op.ImageGrid(shape=(512, 512), spacing=(1.0, 1.0))
    geom = op.ParallelGeometry.full_scan(512, 725, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table.cuda()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 512, 512, generator=gen).cuda()
    y = torch.rand(8, 512, 725, generator=gen).cuda()
    kern, ref = TritonBackend(grid, geom), ReferenceBackend(grid)
    yk, xk = kern.forward(x, table).double(), kern.adjoint(y, table).double()
    yr, xr = ref.forward(x.double(), table), ref.adjoint(y.double(), table)
    err = (xk - xr).abs()
    where = [int(i) for i in (err == err.max()).nonzero()[0]]
    # Diagnostics for the failure message (one GPU run tells which launch is at fault): v1's
    # batch-8 launch (in-loop layout conversions through shared memory, candidate count by
    # reduction), v1 with the count table, and the images inside a batch of 32.
    v1 = KernelConfig.v1(8)
    v1_table = KernelConfig(**{**v1.as_dict(), "adjoint_count": "table"})
    x_b32 = kern.adjoint(y.repeat(4, 1, 1), table)[:8].double()
    rel = {name: float((xa - xr).norm() / xr.norm()) for name, xa in (
        ("default (v4)", xk),
        ("v3", TritonBackend(grid, geom, KernelConfig.v3(8)).adjoint(y, table).double()),
        ("v1", TritonBackend(grid, geom, v1).adjoint(y, table).double()),
        ("v1 + count table", TritonBackend(grid, geom, v1_table).adjoint(y, table).double()),
        ("inside batch 32", x_b32))}
    print("P512 adjoint relative errors:", rel)
    assert float((yk - yr).norm() / yr.norm()) < F32_TOL
    assert rel["default (v4)"] < F32_TOL and rel["v3"] < F32_TOL, (
        f"adjoint off; largest error {float(err.max()):.3g} at (b, r, c) = {where}, "
        f"{int((err > 1e-3).sum())} values off by > 1e-3; relative errors {rel}")
    lhs, rhs = float((yk * y.double()).sum()), float((x.double() * xk).sum())
    assert abs(lhs - rhs) / abs(lhs) < DOT_TOL


def random_checks(device: str, seed: int, n: int) -> list:
    """``n`` random draws of a geometry (parallel / flat / curved fan, odd shapes, offsets, 1-12
    views; impossible fan geometries are skipped), a batch size and a storage dtype, each run
    with the default launch (v4), v3's and v1's against the float64 reference of the stored
    input.
    Returns the failures (empty when all agree)."""
    import warnings

    import numpy as np

    import operators as op
    from operators.backends.reference import ReferenceBackend
    from operators.backends.triton_backend import KernelConfig, TritonBackend
    rng = np.random.default_rng(seed)
    tolerance = {torch.float32: F32_TOL, torch.float64: F64_TOL,
                 torch.float16: HALF_TOL["float16"], torch.bfloat16: HALF_TOL["bfloat16"]}
    failures = []
    for case in range(n):
        h, w = (int(v) for v in rng.integers(3, 24, 2))
        grid = op.ImageGrid(shape=(h, w), spacing=tuple(float(v) for v in rng.uniform(0.5, 1.5, 2)))
        angles = tuple(float(a) for a in rng.uniform(-4, 7, int(rng.integers(1, 12))))
        n_det, spacing = int(rng.integers(2, 40)), float(rng.uniform(0.3, 3.0))
        offset, kind = float(rng.uniform(-3, 3)), int(rng.integers(0, 3))
        if kind == 0:
            geom = op.ParallelGeometry(angles=angles, detector_count=n_det,
                                       detector_spacing=spacing, detector_offset=offset)
        else:
            r = grid.radius * float(rng.uniform(1.05, 3))
            try:
                geom = op.FanGeometry(angles=angles, detector_count=n_det,
                                      detector_spacing=spacing, source_to_isocenter=r,
                                      source_to_detector=r * rng.uniform(1.1, 3),
                                      detector=("flat", "curved")[kind - 1],
                                      detector_offset=offset)
            except ValueError:  # e.g. a curved detector spanning pi or more: not a scanner
                continue
        batch = int(rng.choice([1, 2, 3, 5, 8, 9, 16, 33]))
        dtype = (torch.float32, torch.float16, torch.bfloat16, torch.float64)[int(rng.integers(4))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = op.XRayTransform(grid, geom, backend="torch").ray_table
        gen = torch.Generator().manual_seed(seed * 1000 + case)
        x = torch.rand(batch, h, w, generator=gen, dtype=torch.float64).to(dtype)
        y = torch.rand(batch, *geom.sinogram_shape, generator=gen, dtype=torch.float64).to(dtype)
        ref = ReferenceBackend(grid)
        yr, xr = ref.forward(x.double(), table), ref.adjoint(y.double(), table)
        for name, cfg in (("default", None), ("v3", KernelConfig.v3(batch, dtype)),
                          ("v1", KernelConfig.v1(batch))):
            kern = TritonBackend(grid, geom, cfg)
            dev_table = table.to(device)
            yk = kern.forward(x.to(device), dev_table).double().cpu()
            xk = kern.adjoint(y.to(device), dev_table).double().cpu()
            errors = (float((yk - yr).norm() / yr.norm().clamp_min(1e-300)),
                      float((xk - xr).norm() / xr.norm().clamp_min(1e-300)))
            if not (max(errors) < tolerance[dtype] and torch.isfinite(yk).all()
                    and torch.isfinite(xk).all()):
                failures.append(dict(case=case, launch=name, geometry=repr(geom),
                                     grid=[h, w], batch=batch, dtype=str(dtype),
                                     errors=errors))
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_geometries_batches_and_dtypes(seed):
    """40 random cases per seed (about 4 minutes in the interpreter; 61-86 s on an H200, most
    of it compiling a launch for each random batch and dtype)."""
    if torch.cuda.is_available():
        failures = random_checks("cuda", seed, 40)
    else:
        env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, __file__, "--random", "cpu", str(seed), "40"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-5000:]
        failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert failures == []


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    print(json.dumps(run_checks(sys.argv[2])))
if __name__ == "__main__" and sys.argv[1:2] == ["--random"]:
    print(json.dumps(random_checks(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
