"""GPU benchmark of our projector kernels against peers, correctness first, in one run.

Run on the GPU machine (H100/H200)::

    python benchmarks/gpu_bench.py --out DIR

and on a CPU, as a dry run of every code path at tiny sizes (our Triton kernels run in Triton's
interpreter; CUDA-only peers are reported as skipped)::

    python benchmarks/gpu_bench.py --out DIR --device cpu --tiny

Cases (``../shared/ANCHORS.md``; float32, pixel 1 mm, detector pitch 1 mm unless stated):

* ``P256``  256x256, 256 parallel views over [0, pi), 363 detectors, batch 32;
* ``P512``  512x512, 512 views, 725 detectors, batch 8;
* ``P128s`` 128x128, 30 views, 183 detectors, batch 128;
* ``F256``  256x256 fan beam, flat detector, 360 source angles over [0, 2 pi), 392 detectors of
  2 mm, source-to-isocentre R = 512 mm, source-to-detector D = 1024 mm (magnification 2: the fan
  covers the image's corners, radius 181 mm < R sin(atan(392 / 1024)) = 183 mm), batch 32;
* ``M512``  memory case: P512 with 720 views, batch 32 (peak ``torch.cuda.max_memory_allocated``).

Per case and variant: dot-product test ``|<A x, y> - <x, A^T y>| / |<A x, y>|`` (float64 sums of
float32 results), for our kernels the relative L2 error against the float64 reference backend,
then timing: median of ``--reps`` CUDA-event timings of single calls after warm-up, each waited
for (3 for variants slower than ``--slow-ms`` per call); for the others also ``--reps`` calls
back to back with one synchronisation (the rate of a training loop, where the host issues the
next call while the GPU runs the last); the speed-up over the fastest exact-adjoint peer (dot mismatch below
1e-4 in this run), and achieved interpolations per second. Interpolation count (the same for
every variant of a case): forward = B x views x detectors x N steps x 2 gathers (N = image side),
adjoint likewise; roofline = SMs x clock x 32 gathers per clock (128 B/clk of L1 per SM, 4-byte
gathers, every sector fully used); HBM floor = reading the input and writing the output once at
``--copy-tbs`` TB/s.

Every variant runs inside try/except: a failure is printed and recorded, and the run goes on.
Results are written after every variant to ``DIR/gpu_bench.json`` and ``DIR/gpu_bench.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

REPO = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from _arguments import positive_int  # noqa: E402


#: The parser of the last :func:`parse_args` (``main`` reports unknown case and variant
#: names through it, once the names are defined).
_PARSER: Optional[argparse.ArgumentParser] = None


def parse_args(argv=None):
    global _PARSER
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (dry run)")
    p.add_argument("--dry-run", action="store_true", help="same as --device cpu --tiny")
    p.add_argument("--cases", default="", help="comma-separated subset of case names")
    p.add_argument("--variants", default="", help="comma-separated subset of variant names")
    p.add_argument("--reps", type=positive_int, default=10, help="timed repetitions (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gpu-warmup-s", type=float, default=1.0,
                   help="seconds of matrix products before the first timed variant, so that it "
                        "is not timed on an idle GPU's clocks (0 skips)")
    p.add_argument("--slow-ms", type=float, default=100.0,
                   help="variants slower than this per call get 3 repetitions")
    p.add_argument("--budget-s", type=float, default=220.0,
                   help="after this many seconds only our default kernels still run")
    p.add_argument("--copy-tbs", type=float, default=4.1, help="measured copy bandwidth, TB/s")
    p.add_argument("--clock-ghz", type=float, default=1.98, help="SM clock for the roofline")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    _PARSER = p
    return args


def _subset(flag: str, text: str, valid: List[str], where: str = "") -> set:
    """The names of the comma-separated ``text``; an argparse error (exit 2) naming the valid
    choices when one is not among ``valid``."""
    # Commas inside brackets belong to a name ("ours:triton[v4, tiles 4x32 / 8x16]").
    names = [n.strip() for n in re.split(r",(?![^\[]*\])", text) if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        parser = _PARSER or argparse.ArgumentParser(prog=Path(__file__).name)
        what = (f"unknown name(s) {', '.join(map(repr, unknown))}" if unknown
                else "no name given")
        parser.error(f"argument {flag}: {what}{where} (choose from "
                     f"{', '.join(map(repr, valid))})")
    return set(names)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device == "cpu":
    # Triton reads this when the kernels are decorated: set it before anything imports them.
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import operators as op  # noqa: E402
from operators.backends.triton_backend import median_ms  # noqa: E402


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    n: int
    views: int
    dets: int
    batch: int
    fan: bool = False
    det_spacing: float = 1.0
    r: float = 0.0  # source to isocentre (mm)
    d: float = 0.0  # source to detector (mm)
    memory: bool = False
    note: str = ""

    def geometry(self):
        if self.fan:
            return op.FanGeometry.full_scan(self.views, self.dets, self.det_spacing, self.r,
                                            self.d, "flat")
        return op.ParallelGeometry.full_scan(self.views, self.dets, self.det_spacing)

    def grid(self):
        return op.ImageGrid(shape=(self.n, self.n), spacing=(1.0, 1.0))

    @property
    def interpolations(self) -> int:
        """Nominal gathers of one forward (or adjoint) call: B V D N 2."""
        return 2 * self.batch * self.views * self.dets * self.n


FULL_CASES = [
    Case("P256", 256, 256, 363, 32),
    Case("P512", 512, 512, 725, 8),
    Case("P128s", 128, 30, 183, 128),
    Case("F256", 256, 360, 392, 32, fan=True, det_spacing=2.0, r=512.0, d=1024.0,
         note="flat detector, R=512 mm, D=1024 mm, 392 x 2 mm"),
    Case("M512", 512, 720, 725, 32, memory=True, note="memory case"),
]
TINY_CASES = [
    Case("P256", 24, 16, 35, 4),
    Case("P128s", 16, 5, 23, 8),
    Case("F256", 24, 18, 41, 4, fan=True, det_spacing=2.0, r=48.0, d=96.0),
    Case("M512", 24, 30, 35, 4, memory=True),
]

#: A variant is exact when its dot-product mismatch in this run is below this.
EXACT_DOT = 1e-4


# --------------------------------------------------------------------------------------------
# variants: each factory returns (forward, adjoint, info); forward takes (B, H, W) float32
# --------------------------------------------------------------------------------------------
class Skip(Exception):
    """A variant that does not apply here (reason in the message)."""


@dataclass
class Variant:
    name: str
    kind: str  # "ours" or "peer"
    factory: Callable
    always: bool = False  # runs even after the time budget
    applies: Callable = lambda case, dev: True
    priority: int = 1
    dtype: str = "float32"  # storage dtype of the data this variant reads and writes


def _ours_operator(case, dev, backend):
    with _quiet():
        a = op.XRayTransform(case.grid(), case.geometry(), backend=backend, check_inputs=False)
    return a.to(dev)


def ours_triton(case, dev):
    a = _ours_operator(case, dev, "triton")
    a._backend_for(dev)  # build now: fail here, not inside the timing
    return a.forward, a.adjoint, dict(matched=True)


def ours_triton_config(version="default", **kw):
    """Our kernels with an explicit launch: ``version`` "default" (planar: v4, or v5 where a
    thread serves at most 2 groups, ``KernelConfig.planar``), "v3" (v3's channels-last
    launch, ``KernelConfig.v3``) or "v1" (the first version's launch, masks and candidate
    count, ``KernelConfig.v1``; the arithmetic is the current one), then ``kw`` overrides."""
    def factory(case, dev):
        from operators.backends.triton_backend import KernelConfig, TritonBackend
        if version == "v1":
            base = KernelConfig.v1(case.batch).as_dict()
        elif version == "v3":
            base = KernelConfig.v3(case.batch).as_dict()
        else:
            base = KernelConfig.default(case.batch).as_dict()
        base.update(kw)
        be = TritonBackend(case.grid(), case.geometry(), KernelConfig(**base))
        a = _ours_operator(case, dev, "torch")
        table = a.ray_table
        return (lambda x: be.forward(x, table), lambda y: be.adjoint(y, table),
                dict(matched=True, config=base))
    return factory


def ours_triton_cuda_graph(case, dev):
    """Our default kernels replayed from a CUDA graph: the host's per-call work (checks,
    autograd, layout copies, launches) is paid once at capture, so what remains is the GPU's.
    The graph is captured on the first input of each shape (after two warm-up calls that build
    the cached tables) and replayed on that tensor's memory; another tensor is copied in first.
    What ``torch.compile(mode="reduce-overhead")`` gives a model that contains the operators."""
    if dev.type != "cuda":
        raise Skip("CUDA graphs need a GPU")
    a = _ours_operator(case, dev, "triton")
    return _graphed(a.forward), _graphed(a.adjoint), dict(matched=True)


def _graphed(fn):
    """``fn`` captured in a CUDA graph on its first input of each shape and dtype (after two
    warm-up calls on a side stream), then replayed; another input tensor is copied into the
    captured one first."""
    graphs = {}

    def call(t):
        key = (tuple(t.shape), t.dtype)
        if key not in graphs:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn(t)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn(t)
            graphs[key] = (graph, t, out)
        graph, static_in, out = graphs[key]
        if t.data_ptr() != static_in.data_ptr():
            static_in.copy_(t)
        graph.replay()
        return out
    return call


def ours_triton_graph_tuned(case, dev):
    """Every autotuner candidate (``KernelConfig.candidates``) timed from CUDA-graph replays,
    the GPU's time alone (the autotuner's own timing of eager calls adds the host's, whose
    spread hid the candidates' differences on the H100, ``KERNELS.md``): the fastest per
    direction is this row's launch, replayed from a graph too (compare with
    ``ours:triton [CUDA graph]``), and every candidate's replay time goes into the report."""
    if dev.type != "cuda":
        raise Skip("CUDA graphs need a GPU")
    return tune_candidates(case, dev, _graphed, "CUDA-graph replay")


def tune_candidates(case, dev, wrap, how: str, reps: int = 20):
    """Time every ``KernelConfig.candidates`` launch per direction as ``wrap(call)`` (median
    of ``reps``), keep the fastest; returns a variant's ``(forward, adjoint, info)``."""
    from operators.backends.triton_backend import KernelConfig, TritonBackend, median_ms
    a = _ours_operator(case, dev, "torch")
    table = a.ray_table
    inputs = {"forward": torch.rand(case.batch, case.n, case.n, device=dev),
              "adjoint": torch.rand(case.batch, case.views, case.dets, device=dev)}
    chosen, tuned = {}, {}
    for direction, t in inputs.items():
        times = []
        for cfg in KernelConfig.candidates(case.batch):
            be = TritonBackend(case.grid(), case.geometry(), cfg)
            call = wrap(lambda u, be=be, d=direction: getattr(be, d)(u, table))
            try:
                with torch.no_grad():
                    call(t)
                    ms = median_ms(lambda: call(t), dev, reps)
            except Exception:  # a candidate that does not compile or capture is no candidate
                call, ms = None, float("inf")
            times.append((cfg, ms, call))
        best = min(times, key=lambda item: item[1])
        if best[2] is None:
            raise RuntimeError(f"no candidate launch could be captured for the {direction}")
        chosen[direction] = best[2]
        tuned[direction] = {"chosen": best[0].as_dict(),
                            "times_ms": [(c.as_dict(), ms) for c, ms, _ in times]}
    return chosen["forward"], chosen["adjoint"], dict(matched=True, tuned=tuned, tuned_by=how)


def ours_triton_autotuned(case, dev):
    """Our kernels with ``autotune=True``: the first call of each direction times
    ``KernelConfig.candidates`` and keeps the fastest (done here, before the timing); the
    chosen launches and every candidate's time go into the row's info."""
    from operators.backends.triton_backend import TritonBackend
    a = _ours_operator(case, dev, "torch")
    be = TritonBackend(case.grid(), case.geometry(), autotune=True)
    table = a.ray_table
    with torch.no_grad():
        be.forward(torch.rand(case.batch, case.n, case.n, device=dev), table)
        be.adjoint(torch.rand(case.batch, case.views, case.dets, device=dev), table)
    info = {k[0]: {"chosen": v["config"].as_dict(), "times_ms": v["times_ms"]}
            for k, v in be.tuned.items()}
    return (lambda x: be.forward(x, table), lambda y: be.adjoint(y, table),
            dict(matched=True, tuned=info))


def ours_backend(name):
    def factory(case, dev):
        a = _ours_operator(case, dev, name)
        return a.forward, a.adjoint, dict(matched=True)
    return factory


def _tt_shape_adapters(proj, n):
    def fwd(x):
        return proj.forward(x.unsqueeze(1))

    def adj(y):
        return proj.adjoint(y).reshape(-1, n, n)
    return fwd, adj


def torchtomo_variant(backend, approximate=False):
    def factory(case, dev):
        import torchtomo
        if backend in ("cuda", "triton") and dev.type != "cuda":
            raise Skip(f"torchtomo backend={backend!r} needs CUDA")
        if case.fan:
            if backend == "triton":
                raise Skip("torchtomo FanBeam has no triton backend")
            # torchtomo measures in pixels; det_dist is isocentre to detector.
            proj = torchtomo.FanBeam(img_size=case.n, n_angles=case.views, n_det=case.dets,
                                     src_dist=case.r, det_dist=case.d - case.r,
                                     det_spacing=case.det_spacing, circle=False,
                                     backend=backend, approximate=approximate)
        else:
            proj = torchtomo.ParallelBeam(img_size=case.n, n_angles=case.views, n_det=case.dets,
                                          circle=False, backend=backend, approximate=approximate)
        proj = proj.to(dev)
        fwd, adj = _tt_shape_adapters(proj, case.n)
        return fwd, adj, dict(matched=not approximate, backend=getattr(proj, "backend", None))
    return factory


def diffct_variant(case, dev):
    if dev.type != "cuda":
        raise Skip("diffct needs CUDA (numba-cuda)")
    # diffct 2.5.0: Siddon ray tracing (cell-constant pixels, physical line integrals) in numba-cuda
    # kernels; the backprojector is the matched adjoint (float32 atomics). Its autograd Functions
    # take one (H, W) image / (views, dets) sinogram per call (diffct.Projector's batch path
    # loops in Python too), so we loop over the batch. Image centred, pixel pitch voxel_spacing;
    # detector bin i at (i + 1/2 - dets/2) * det_spacing along det_u, flat, centred. Parallel:
    # angles k pi / views; fan: source at sid, flat detector at sdd, angles 2 k pi / views.
    if not hasattr(np, "row_stack"):
        # numba-cuda (diffct's kernels) still imports numpy.row_stack, an alias of vstack that
        # NumPy 2.5 removed (diffct asks for numpy<2.5; the GPU machine has 2.5).
        np.row_stack = np.vstack
    import diffct
    n, dets, du, vox = case.n, int(case.dets), float(case.det_spacing), 1.0
    if case.fan:
        if case.d <= case.r:
            raise Skip("diffct fan beam: the detector must lie beyond the isocentre")
        geo = diffct.circular_trajectory_2d_fan(case.views, sid=float(case.r), sdd=float(case.d),
                                                start_angle=0.0, end_angle=2 * np.pi,
                                                device=dev, dtype=torch.float32)
        pf, bf = diffct.FanProjectorFunction, diffct.FanBackprojectorFunction
    else:
        geo = diffct.circular_trajectory_2d_parallel(case.views, start_angle=0.0, end_angle=np.pi,
                                                     device=dev, dtype=torch.float32)
        pf, bf = diffct.ParallelProjectorFunction, diffct.ParallelBackprojectorFunction

    # apply(image, *geometry, num_detectors, detector_spacing, voxel_spacing) -> (views, dets);
    # apply(sinogram, *geometry, detector_spacing, H, W, voxel_spacing) -> (H, W).
    def fwd(x):
        return torch.stack([pf.apply(img, *geo, dets, du, vox) for img in x])

    def adj(y):
        return torch.stack([bf.apply(s, *geo, du, n, n, vox) for s in y])
    return fwd, adj, dict(matched=True, api=f"diffct.{pf.__name__} / {bf.__name__}",
                          batch="Python loop, one image per call")


def deepinv_variant(case, dev):
    # deepinv 0.5.0 Tomography (pure PyTorch): the image is zero-padded to G = ceil(sqrt(2) n)
    # pixels and each ray is G bilinear grid_sample taps one pixel apart, summed (1 mm units
    # here). A returns (B, 1, detectors, views); angles are in degrees. adjoint_via_backprop=True
    # makes A_adjoint the autograd VJP of A, the exact adjoint. Parallel beam: G detector bins
    # of one pixel, fixed by deepinv. Fan beam: flat detector, fan_parameters in the units of
    # pixel_spacing (1 mm), detector_radius = isocentre to detector. See benchmarks/PEERS.md.
    from deepinv.physics import Tomography
    n = case.n
    kw = dict(img_width=n, circle=False, normalize=False, adjoint_via_backprop=True,
              parallel_computation=True, device=dev)
    info = dict(matched=True, api="deepinv.physics.Tomography, autograd adjoint")
    if case.fan:
        if case.d <= case.r:
            raise Skip("deepinv fan beam: the detector must lie beyond the isocentre")
        angles = torch.arange(case.views, dtype=torch.float64) * (360.0 / case.views)
        phys = Tomography(angles=angles.float().to(dev), fan_beam=True, fan_parameters=dict(
            pixel_spacing=1.0, source_radius=float(case.r), detector_radius=float(case.d - case.r),
            n_detector_pixels=int(case.dets), detector_spacing=float(case.det_spacing)), **kw)
    else:
        if case.det_spacing != 1.0:
            raise Skip("deepinv parallel beam: the detector pitch is fixed at one pixel")
        angles = torch.arange(case.views, dtype=torch.float64) * (180.0 / case.views)
        phys = Tomography(angles=angles.float().to(dev), **kw)
        dets = int((2 * torch.ones(1)).sqrt().mul(n).ceil())  # deepinv's own G
        info["dets"] = dets
        if dets != case.dets:
            info["note"] = f"deepinv fixes {dets} detectors (case: {case.dets})"

    def fwd(x):  # (B, n, n) -> (B, views, dets): a transposed view of deepinv's (B, 1, D, V)
        return phys.A(x.unsqueeze(1))[:, 0].transpose(1, 2)

    def adj(y):  # (B, views, dets) -> (B, n, n)
        return phys.A_adjoint(y.transpose(1, 2).unsqueeze(1))[:, 0]
    return fwd, adj, info


def _not_memory(case, dev):
    return not case.memory


#: The cases where the issue sets the speed goal (2x the fastest exact-adjoint peer).
GOAL_CASES = ("P256", "P512")


def _goal_case(case, dev):
    # Kernel-configuration alternatives only where the issue sets the speed goal (and tiny runs).
    return case.name in GOAL_CASES or (dev.type == "cpu" and not case.memory)


def _default_pair_offset(case) -> bool:
    from operators.backends.triton_backend import KernelConfig
    return KernelConfig.default(case.batch).pair_offset


def _sparse_ok(case, dev):
    # The CSR pair is assembled on the CPU: keep it to cases that build in seconds.
    return not case.memory and case.views * case.dets * case.n <= 25_000_000


#: Priority 1 runs for every case first (our default and v1 launches, bfloat16, every peer),
#: priority 2 afterwards, so that the time budget cuts the optional variants, not whole cases.
VARIANTS = [
    # Priority 1, every case: our default (v4), v3's launch and v1's (measured 2026-11-26) in
    # the same run, bfloat16 storage, and every peer the issue names.
    Variant("ours:triton", "ours", ours_triton, always=True),
    Variant("ours:triton[v3]", "ours", ours_triton_config("v3")),
    Variant("ours:triton[v1]", "ours", ours_triton_config("v1"), applies=_not_memory),
    Variant("ours:triton bf16", "ours", ours_triton, applies=_not_memory, dtype="bfloat16"),
    # The forward's other pair addressing in the same run (KERNELS.md, twelfth session): v5's
    # where the default keeps v4's (4 groups per thread: P256), v4's where it takes v5's (P512).
    Variant("ours:triton[v5 pair offset]", "ours", ours_triton_config(pair_offset=True),
            applies=lambda case, dev: _goal_case(case, dev) and not _default_pair_offset(case)),
    Variant("ours:triton[v4 addressing]", "ours", ours_triton_config(pair_offset=False),
            applies=lambda case, dev: _goal_case(case, dev) and _default_pair_offset(case)),
    # v6: the forward's tiles longest first (KERNELS.md, thirteenth session: the last wave of
    # the default's forward leaves multiprocessors idle), where it has several waves of tiles.
    Variant("ours:triton[v6 longest first]", "ours",
            ours_triton_config(tile_order="longest_first"),
            applies=lambda case, dev: _goal_case(case, dev) or case.name == "F256"),
    Variant("torchtomo:cuda", "peer", torchtomo_variant("cuda")),
    Variant("torchtomo:cuda approximate", "peer", torchtomo_variant("cuda", True)),
    Variant("torchtomo:torch", "peer", torchtomo_variant("torch")),
    Variant("deepinv", "peer", deepinv_variant, applies=_not_memory),
    Variant("diffct", "peer", diffct_variant, applies=_not_memory),
    # Priority 2, after every case's first pass (the time budget cuts these first).
    Variant("ours:triton fp16", "ours", ours_triton, applies=_not_memory, dtype="float16",
            priority=2),
    # Every candidate of the autotuner, timed per case (its choice and each candidate's time
    # go into gpu_bench.md); before the explicit alternatives below, which it covers too.
    Variant("ours:triton [autotuned]", "ours", ours_triton_autotuned, applies=_not_memory,
            priority=2),
    # v4's tiles against the alternatives the cost model ranks below them (KERNELS.md): warps
    # of 32 detectors of one view / 2 x 16 pixels.
    Variant("ours:triton[v4, tiles 4x32 / 8x16]", "ours", ours_triton_config(
        view_block=4, det_block=32, tile_h=8, tile_w=16), applies=_goal_case, priority=2),
    # 8 planes of 4 images per thread (fewer instructions per image, twice the registers and
    # half the warps; KERNELS.md): where the batch has 32 images.
    Variant("ours:triton[v4, 8 planes]", "ours", ours_triton_config(b_block=32),
            applies=lambda case, dev: case.batch >= 32 and _goal_case(case, dev), priority=2),
    # v5's addressing capped at v4's 64 registers where the default serves 4 groups (P256):
    # the addressing without the occupancy it costs (KERNELS.md).
    Variant("ours:triton[v5, 64 registers]", "ours", ours_triton_config(
        pair_offset=True, forward_max_registers=64),
        applies=lambda case, dev: _goal_case(case, dev) and not _default_pair_offset(case),
        priority=2),
    # 2 planes per thread with v5's addressing where the default serves 4 (P256): one load
    # round per step and twice the warps, for more instructions per image (KERNELS.md).
    Variant("ours:triton[v5, 2 planes]", "ours", ours_triton_config(
        b_block=8, tile_w=16, pair_offset=True),
        applies=lambda case, dev: case.batch >= 16 and _goal_case(case, dev), priority=2),
    # 4 pixels per thread in the adjoint where a thread serves 8 images (P512): less per-view
    # work per pixel (static: 67 against 78 instructions per pixel and view), half the warps.
    Variant("ours:triton[v4, adjoint tile 32x16]", "ours", ours_triton_config(
        tile_h=32, tile_w=16), applies=lambda case, dev: case.batch <= 8 and _goal_case(case, dev),
        priority=2),
    # v3's two kernel changes off: the generic adjoint on parallel beams, masked loads.
    Variant("ours:triton[generic adjoint, unframed]", "ours", ours_triton_config(
        parallel_adjoint="generic", framed=False), applies=_goal_case, priority=2),
    Variant("ours:triton[v1, count table]", "ours", ours_triton_config(
        "v1", adjoint_count="table"), applies=_goal_case, priority=2),
    Variant("ours:triton[warps=8]", "ours", ours_triton_config(num_warps=8),
            applies=_goal_case, priority=2),
    Variant("torchtomo:triton", "peer", torchtomo_variant("triton"), applies=_not_memory,
            priority=2),
    Variant("ours:torch (reference)", "ours", ours_backend("torch"), applies=_not_memory,
            priority=2),
    Variant("ours:sparse", "ours", ours_backend("sparse"), applies=_sparse_ok, priority=2),
    # Last (a failed capture must not disturb the others): the per-call host cost removed.
    Variant("ours:triton [CUDA graph]", "ours", ours_triton_cuda_graph, applies=_not_memory,
            priority=2),
    # Every autotuner candidate from graph replays, where the goal is judged.
    Variant("ours:triton [graph-tuned, CUDA graph]", "ours", ours_triton_graph_tuned,
            applies=_goal_case, priority=2),
]


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------
class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def warm_up_gpu(dev, seconds: float) -> int:
    """Keep the GPU busy with float32 matrix products for ``seconds`` (then wait for it), so
    that the first variant timed is not timed on the clocks of an idle GPU; returns the number
    of products. Both H100 and H200 runs of 2026-11-27 timed the first variant of the first
    case (our default, eager P256 forward) 0.10-0.14 ms slower than the same kernel timed
    later in the run (``KERNELS.md``, thirteenth session). Nothing to do on a CPU."""
    if dev.type != "cuda" or seconds <= 0:
        return 0
    a = torch.randn(4096, 4096, device=dev)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(8):
            a = torch.mm(a, a).mul_(1 / 64)  # 1/sqrt(4096): entries stay about N(0, 1)
        _sync(dev)
        done += 8
    return done


def back_to_back_ms(fn, arg, dev, calls):
    """Milliseconds per call of ``calls`` calls of ``fn(arg)`` issued back to back with one
    synchronisation at the end (CUDA events around the whole loop; the wall clock elsewhere):
    the rate a training loop sees, where the host issues the next call while the GPU runs the
    last. :func:`time_call` times single calls, each waited for, so host and GPU time add up
    there."""
    with torch.no_grad():
        _sync(dev)
        if dev.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            for _ in range(calls):
                fn(arg)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / calls
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        return (time.perf_counter() - t0) * 1e3 / calls


def time_call(fn, arg, dev, reps, warmup, slow_ms):
    """Median milliseconds of ``fn(arg)`` (CUDA events on GPU), and the repetitions used."""
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):
            fn(arg)
        _sync(dev)
        per_call = (time.perf_counter() - t0) * 1e3 / max(1, warmup)
        n = 3 if per_call > slow_ms else reps
        return median_ms(lambda: fn(arg), dev, n), n


def peak_memory(fn, arg, dev):
    """Peak allocated bytes during ``fn(arg)`` (CUDA), and the bytes allocated before it."""
    if dev.type != "cuda":
        return None, None
    with torch.no_grad():
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        out = fn(arg)
        _sync(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        del out
    return int(peak), int(before)


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@dataclass
class Row:
    case: str
    variant: str
    kind: str
    status: str = "ok"
    error: str = ""
    forward_ms: Optional[float] = None
    adjoint_ms: Optional[float] = None
    reps: Optional[int] = None
    dot_mismatch: Optional[float] = None
    forward_rel_err: Optional[float] = None
    adjoint_rel_err: Optional[float] = None
    sinogram_shape: Optional[list] = None
    peak_forward_mb: Optional[float] = None
    peak_adjoint_mb: Optional[float] = None
    setup_s: Optional[float] = None
    info: dict = field(default_factory=dict)


def run_variant(case: Case, var: Variant, dev, data, ref, args) -> Row:
    row = Row(case.name, var.name, var.kind)
    t0 = time.perf_counter()
    fwd, adj, info = var.factory(case, dev)
    row.info = {k: v for k, v in info.items() if k != "matched"}
    dtype = getattr(torch, var.dtype)
    if dtype != torch.float32:
        row.info["storage"] = var.dtype
    x, y_data, yours = data["x"].to(dtype), data["y"].to(dtype), None
    with torch.no_grad():
        y_out = fwd(x)  # first call: compiles / builds
        _sync(dev)
        row.setup_s = time.perf_counter() - t0
        row.sinogram_shape = list(y_out.shape)
        gen = torch.Generator(device="cpu").manual_seed(1)
        y_rand = torch.rand(y_out.shape, generator=gen).to(dev, dtype)
        x_back = adj(y_rand)
        lhs = float((y_out.double() * y_rand.double()).sum())
        rhs = float((x.double() * x_back.reshape(x.shape).double()).sum())
        row.dot_mismatch = abs(lhs - rhs) / max(abs(lhs), abs(rhs), 1e-300)
        if var.kind == "ours" and ref is not None:
            nb = ref["batch"]
            ref_y, ref_x = ref["y"], ref["x"]
            if dtype != torch.float32:  # the float64 model of the input as stored
                nb = min(nb, 2)
                rb, table = ref["backend"], ref["table"]
                ref_y = rb.forward(x[:nb].double(), table)
                ref_x = rb.adjoint(y_data[:nb].double(), table)
            row.forward_rel_err = rel(y_out[:nb], ref_y[:nb])
            yours = adj(y_data)
            row.adjoint_rel_err = rel(yours[:nb], ref_x[:nb])
        del y_out, x_back, yours
    y_in = y_data if var.kind == "ours" else y_rand
    row.forward_ms, row.reps = time_call(fwd, x, dev, args.reps, args.warmup, args.slow_ms)
    row.adjoint_ms, _ = time_call(adj, y_in, dev, args.reps, args.warmup, args.slow_ms)
    if row.reps == args.reps:  # not for the slow variants
        row.info["back_to_back_ms"] = [back_to_back_ms(fwd, x, dev, args.reps),
                                       back_to_back_ms(adj, y_in, dev, args.reps)]
    pf, before = peak_memory(fwd, x, dev)
    pa, _ = peak_memory(adj, y_in, dev)
    if pf is not None:
        row.peak_forward_mb = pf / 2**20
        row.peak_adjoint_mb = pa / 2**20
        row.info["allocated_before_mb"] = before / 2**20
    return row


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def roofline(dev, clock_ghz):
    if dev.type != "cuda":
        return None
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    return sms * clock_ghz * 1e9 * 32  # gathers / s


def args_reps(rows, case_name) -> str:
    """The repetitions of the case's full-speed rows (the back-to-back loops use as many)."""
    reps = sorted({r.reps for r in rows if r.case == case_name and r.status == "ok"
                   and "back_to_back_ms" in r.info})
    return "/".join(map(str, reps))


def _exact(r) -> bool:
    """The row's pair passed the dot-product test (an exact adjoint)."""
    return r.dot_mismatch is not None and r.dot_mismatch < EXACT_DOT


def _fastest(rows, case, attr, keep):
    """The row with the smallest ``attr`` among the ok rows of ``case`` that ``keep``."""
    cands = [r for r in rows if r.case == case and r.status == "ok" and getattr(r, attr)
             and keep(r)]
    return min(cands, key=lambda r: getattr(r, attr)) if cands else None


def best_exact_peer(rows, case, attr):
    r = _fastest(rows, case, attr, lambda r: r.kind == "peer" and _exact(r))
    return getattr(r, attr) if r else None


def best_peer(rows, case, attr):
    r = _fastest(rows, case, attr, lambda r: r.kind == "peer")
    return getattr(r, attr) if r else None


#: The issue's goal per case: "exact" = at least 2x the fastest exact-adjoint peer on forward
#: and adjoint; "every" = faster than every peer (exact or not) on both.
GOALS = {"P256": ("exact", 2.0), "P512": ("exact", 2.0), "P128s": ("every", 1.0)}


def goal_summary(cases, rows) -> list:
    """Markdown lines: our default against the peers per case, and whether the goal is met."""
    lines = ["## Summary: ours:triton against the peers in this run", "",
             "| case | ours fwd / adj ms | fastest exact peer fwd / adj ms | speed-up fwd / adj "
             "| fastest peer of any kind fwd / adj ms | fastest of our variants fwd / adj | "
             "goal | met |", "|" + "---|" * 8]
    for case in cases:
        b2b = [f"{r.variant} {r.info['back_to_back_ms'][0]:.3f} / "
               f"{r.info['back_to_back_ms'][1]:.3f}" for r in rows
               if r.case == case.name and r.status == "ok" and "back_to_back_ms" in r.info]
        if b2b:
            lines.append("")
            lines.append(f"back to back ({args_reps(rows, case.name)} calls, one synchronisation; "
                         f"fwd / adj ms per call): " + "; ".join(b2b))
        ours = [r for r in rows if r.case == case.name and r.variant == "ours:triton"
                and r.status == "ok"]
        if not ours:
            continue
        o = ours[0]
        kind, factor = GOALS.get(case.name, (None, None))
        cells, met = [], True
        ratios = []
        for attr in ("forward_ms", "adjoint_ms"):
            pe = _fastest(rows, case.name, attr, lambda r: r.kind == "peer" and _exact(r))
            pa = _fastest(rows, case.name, attr, lambda r: r.kind == "peer")
            ov = _fastest(rows, case.name, attr, lambda r: r.kind == "ours" and _exact(r))
            cells.append((pe, pa, ov))
            ratios.append(getattr(pe, attr) / getattr(o, attr) if pe else None)
            if kind == "exact":
                met = met and pe is not None and getattr(pe, attr) >= factor * getattr(o, attr)
            elif kind == "every":
                met = met and pa is not None and getattr(pa, attr) > getattr(o, attr)

        def ms(r, attr):
            return f"{getattr(r, attr):.3f} ({r.variant})" if r else "-"
        goal = ("-" if kind is None else f">= {factor:g}x fastest exact peer" if kind == "exact"
                else "ahead of every peer")
        lines.append(
            f"| {case.name} | {o.forward_ms:.3f} / {o.adjoint_ms:.3f} | "
            f"{ms(cells[0][0], 'forward_ms')} / {ms(cells[1][0], 'adjoint_ms')} | "
            f"{_f(ratios[0], '.2f')}x / {_f(ratios[1], '.2f')}x | "
            f"{ms(cells[0][1], 'forward_ms')} / {ms(cells[1][1], 'adjoint_ms')} | "
            f"{ms(cells[0][2], 'forward_ms')} / {ms(cells[1][2], 'adjoint_ms')} | {goal} | "
            f"{'-' if kind is None else 'yes' if met else 'no'} |")
    return lines + [""]


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _launch_name(cfg: dict) -> str:
    """A launch in a few characters: layout, forward and adjoint tiles, images, warps, and
    the forward's options where set (v5's pair addressing, a register cap, v6's order)."""
    return (f"{cfg['layout']} f{cfg['view_block']}x{cfg['det_block']} "
            f"a{cfg['tile_h']}x{cfg['tile_w']} b{cfg['b_block']}/{cfg['group']} "
            f"w{cfg['num_warps']}" + (" pair" if cfg.get("pair_offset") else "")
            + (f" r{cfg['forward_max_registers']}" if cfg.get("forward_max_registers") else "")
            + (" longest-first" if cfg.get("tile_order", "grid") != "grid" else ""))


def markdown(env, cases, rows, roof, args) -> str:
    lines = [f"# GPU benchmark ({env.get('device_name')}, {env.get('date')})", ""]
    lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()
                                             if k not in ("date",)))
    lines.append("")
    lines.append("Speed-up = (fastest exact-adjoint peer in this run, dot mismatch < "
                 f"{EXACT_DOT:g}) / (this variant); >1 is faster. G/s: nominal interpolations "
                 "(B V D N 2 gathers) per second"
                 + (f"; roofline {roof / 1e12:.2f} T gathers/s" if roof else "") + ".")
    lines.append("")
    lines += goal_summary(cases, rows)
    for case in cases:
        bf = best_exact_peer(rows, case.name, "forward_ms")
        ba = best_exact_peer(rows, case.name, "adjoint_ms")
        hbm = 4 * case.batch * (case.n ** 2 + case.views * case.dets) / (args.copy_tbs * 1e12)
        lines.append(f"## {case.name}: {case.n}x{case.n}, {case.views} views, {case.dets} "
                     f"detectors, batch {case.batch}{', ' + case.note if case.note else ''}")
        lines.append(f"Nominal interpolations per call: {case.interpolations / 1e9:.3f} G; HBM "
                     f"floor (read input + write output once): {hbm * 1e6:.1f} us.")
        lines.append("")
        lines.append("| variant | fwd ms | adj ms | fwd speed-up | adj speed-up | fwd G/s | "
                     "adj G/s | fwd % roof | dot mismatch | fwd err | adj err | peak MB "
                     "(fwd/adj) | reps | status |")
        lines.append("|" + "---|" * 14)
        for r in rows:
            if r.case != case.name:
                continue
            gf = case.interpolations / (r.forward_ms * 1e-3) / 1e9 if r.forward_ms else None
            ga = case.interpolations / (r.adjoint_ms * 1e-3) / 1e9 if r.adjoint_ms else None
            sf = bf / r.forward_ms if (bf and r.forward_ms) else None
            sa = ba / r.adjoint_ms if (ba and r.adjoint_ms) else None
            pr = gf * 1e9 / roof * 100 if (gf and roof) else None
            peak = (f"{r.peak_forward_mb:.0f}/{r.peak_adjoint_mb:.0f}"
                    if r.peak_forward_mb is not None else "-")
            status = r.status if r.status == "ok" else f"{r.status}: {r.error[:80]}"
            lines.append(
                f"| {r.variant} | {_f(r.forward_ms, '.3f')} | {_f(r.adjoint_ms, '.3f')} | "
                f"{_f(sf, '.2f')} | {_f(sa, '.2f')} | {_f(gf, '.0f')} | {_f(ga, '.0f')} | "
                f"{_f(pr, '.1f')} | {_f(r.dot_mismatch, '.1e')} | {_f(r.forward_rel_err, '.1e')} "
                f"| {_f(r.adjoint_rel_err, '.1e')} | {peak} | {_f(r.reps, 'd')} | {status} |")
        for r in rows:
            if r.case == case.name and r.status == "ok" and "tuned" in r.info:
                lines.append("")
                how = r.info.get("tuned_by", "eager calls")
                for direction, t in r.info["tuned"].items():
                    times = ", ".join(f"{_launch_name(c)} {ms:.3f}" for c, ms in t["times_ms"])
                    lines.append(f"autotuned ({how}) {case.name} {direction}: chose "
                                 f"{_launch_name(t['chosen'])} "
                                 f"(ms per candidate: {times})")
        ours = [r for r in rows if r.case == case.name and r.variant == "ours:triton"
                and r.status == "ok"]
        if ours:
            o = ours[0]
            allf = best_peer(rows, case.name, "forward_ms")
            alla = best_peer(rows, case.name, "adjoint_ms")
            lines.append("")
            lines.append(
                f"ours:triton vs fastest exact peer: forward x{_f(bf / o.forward_ms if bf else None, '.2f')}, "
                f"adjoint x{_f(ba / o.adjoint_ms if ba else None, '.2f')}; vs fastest peer of any "
                f"kind: forward x{_f(allf / o.forward_ms if allf else None, '.2f')}, adjoint "
                f"x{_f(alla / o.adjoint_ms if alla else None, '.2f')}.")
        lines.append("")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _git_commit() -> str:
    """The commit of this checkout, with ``+dirty`` when tracked files differ from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


#: Distribution name -> module the run imports, for the packages the environment line reports.
_REPORTED = {"triton": "triton", "torchtomo": "torchtomo", "deepinv": "deepinv",
             "diffct": "diffct", "numba-cuda": "numba.cuda", "numba": "numba"}


def package_version(pkg: str, module: str) -> str:
    """The installed version of distribution ``pkg``; "absent" when it is not installed, and
    "not importable (<reason>)" when it is but ``module`` fails to import (a peer whose import
    fails does not run, whatever its metadata says)."""
    import importlib
    from importlib import metadata
    try:
        version = metadata.version(pkg)
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or broken metadata
        return "absent"
    try:
        importlib.import_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken install raises anything
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        return f"not importable ({reason[:200]})"
    return version


def environment(dev) -> dict:
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": np.__version__}
    for pkg, module in _REPORTED.items():
        env[pkg] = package_version(pkg, module)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env["sms"] = props.multi_processor_count
        env["memory_gb"] = round(props.total_memory / 2**30, 1)
    env["triton_interpret"] = os.environ.get("TRITON_INTERPRET", "0")
    env["git_commit"] = _git_commit()
    return env


def main(args) -> int:
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu --tiny for a dry run", file=sys.stderr)
        return 2
    cases = TINY_CASES if args.tiny else FULL_CASES
    if args.cases:
        wanted = _subset("--cases", args.cases, [c.name for c in cases],
                         " in the tiny cases" if args.tiny else "")
        cases = [c for c in cases if c.name in wanted]
    variants = VARIANTS
    if args.variants:
        wanted = _subset("--variants", args.variants, [v.name for v in variants])
        variants = [v for v in variants if v.name in wanted]
    env = environment(dev)
    print("environment:", json.dumps(env), flush=True)
    roof = roofline(dev, args.clock_ghz)
    rows: List[Row] = []
    start = time.perf_counter()
    out_json, out_md = args.out / "gpu_bench.json", args.out / "gpu_bench.md"

    def save():
        payload = dict(environment=env, args={k: str(v) for k, v in vars(args).items()},
                       roofline_gathers_per_s=roof,
                       cases=[asdict(c) | {"interpolations": c.interpolations} for c in cases],
                       rows=[asdict(r) for r in rows])
        _write_atomic(out_json, json.dumps(payload, indent=1, default=str))
        _write_atomic(out_md, markdown(env, cases, rows, roof, args))

    datas, refs = {}, {}
    for case in cases:
        print(f"\n=== {case.name}: n={case.n} views={case.views} dets={case.dets} "
              f"batch={case.batch} fan={case.fan} ===", flush=True)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(case.batch, case.n, case.n, generator=gen).to(dev)
        y = torch.rand(case.batch, case.views, case.dets, generator=gen).to(dev)
        datas[case.name] = dict(x=x, y=y)
        refs[case.name] = None
        try:  # float64 reference (first 2 images in the memory case)
            t = time.perf_counter()
            nb = min(case.batch, 2) if case.memory else case.batch
            from operators.backends.reference import ReferenceBackend
            with _quiet():
                a = op.XRayTransform(case.grid(), case.geometry(), backend="torch").to(dev)
            rb = ReferenceBackend(case.grid())
            with torch.no_grad():
                refs[case.name] = dict(batch=nb, y=rb.forward(x[:nb].double(), a.ray_table),
                                       x=rb.adjoint(y[:nb].double(), a.ray_table),
                                       backend=rb, table=a.ray_table)
            print(f"  reference (float64, {nb} images): {time.perf_counter() - t:.1f} s",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"  reference FAILED: {type(exc).__name__}: {exc}", flush=True)

    products = warm_up_gpu(dev, args.gpu_warmup_s)
    if products:
        print(f"\nGPU warm-up: {products} matrix products in {args.gpu_warmup_s:g} s", flush=True)
    for priority in (1, 2):
        for case in cases:
            todo = [v for v in variants if v.priority == priority and v.applies(case, dev)]
            if not todo:
                continue
            print(f"\n=== {case.name} (priority {priority}) ===", flush=True)
            for var in todo:
                elapsed = time.perf_counter() - start
                if elapsed > args.budget_s and not var.always:
                    rows.append(Row(case.name, var.name, var.kind, status="skipped",
                                    error=f"time budget ({elapsed:.0f} s > {args.budget_s:.0f} s)"))
                    print(f"  {var.name:32s} skipped (time budget)", flush=True)
                    continue
                try:
                    row = run_variant(case, var, dev, datas[case.name], refs[case.name], args)
                    print(f"  {var.name:32s} fwd {row.forward_ms:9.3f} ms  adj "
                          f"{row.adjoint_ms:9.3f} ms  dot {row.dot_mismatch:.1e}  err "
                          f"{_f(row.forward_rel_err, '.1e')}/{_f(row.adjoint_rel_err, '.1e')}  "
                          f"peak {_f(row.peak_forward_mb, '.0f')}/"
                          f"{_f(row.peak_adjoint_mb, '.0f')} MB  setup {row.setup_s:.1f} s"
                          + ("  back to back {:.3f}/{:.3f} ms".format(*row.info["back_to_back_ms"])
                             if "back_to_back_ms" in row.info else ""),
                          flush=True)
                except Skip as exc:
                    row = Row(case.name, var.name, var.kind, status="skipped", error=str(exc))
                    print(f"  {var.name:32s} skipped: {exc}", flush=True)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    row = Row(case.name, var.name, var.kind, status="failed",
                              error=f"{type(exc).__name__}: {exc}")
                    print(f"  {var.name:32s} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    traceback.print_exc(limit=3, file=sys.stdout)
                rows.append(row)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                try:
                    save()
                except Exception as exc:  # noqa: BLE001
                    print(f"  could not save results: {exc}", flush=True)
    save()
    print("\n" + out_md.read_text(), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s; wrote {out_json} and {out_md}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
