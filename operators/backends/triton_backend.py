"""Triton backend: the Joseph pair as two batched, deterministic GPU kernels.

The kernels live in :mod:`.triton_kernels` (design notes there and in ``KERNELS.md``). Both
directions are gathers (the adjoint is pixel-driven: no atomics), so results are bitwise
reproducible; the coefficients are those of :func:`operators._joseph.joseph_coefficients`,
computed in float64 and cast to the data dtype, so the pair is matched to float32 rounding and
agrees with the ``torch`` and ``sparse`` backends to float32 rounding.

Supported dtypes: float32 (the fast path), float64 (same kernels, float64 accumulation), and
half-precision storage, float16 or bfloat16: the kernels read half-precision inputs, accumulate
in float32 with the float64-derived weights, and round the result once to the input dtype
(measured errors in ``KERNELS.md``). Runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1`` (Triton's interpreter, used by the tests).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .._graph_pools import build_outside_graph_pools
from ..geometry import FanGeometry, ImageGrid, ParallelGeometry
from .triton_launch import PreparedLaunch, adjoint_launch, forward_launch
from .triton_launch import padded_batch as _padded_batch
from .triton_launch import vector_width as _vector_width

__all__ = ["TritonBackend", "triton_available", "KernelConfig", "AUTOTUNE_ENV"]

_INT32_LIMIT = 2**31 - 1
#: The largest batch tile of a launch (8 planes of 8 half-precision images).
_MAX_B_BLOCK = 64
#: The most images of one launch: the batch tiles lie on the launch grid's second axis, which
#: CUDA limits to 65535 programs.
_MAX_LAUNCH_IMAGES = 32768

#: Storage dtypes the kernels read and write (accumulation is float32, or float64 for float64).
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


#: The most candidate rays per pixel and view for which the parallel adjoint uses its affine
#: kernel (a detector pitch down to about 1/8 pixel); finer pitches take the generic kernel.
PARALLEL_AFFINE_MAX_CANDIDATES = 16

#: The oldest Triton release the kernels are tested with in Triton's interpreter
#: (``TRITON_INTERPRET=1``, CI's CPU runs): older ones fail there (3.0-3.1: ``arange``'s
#: arguments; 3.2-3.6: loops over tensor-valued bounds).
MIN_TRITON_INTERPRETER = (3, 7)
#: The oldest Triton release the kernels are tested with compiled for a GPU: 3.6.0, the release
#: CUDA builds of torch 2.11 ship, ran v1 on an H200 (2026-11-26) and passed the GPU tests and
#: benchmarks of v4 on an H100 (2026-11-27; KERNELS.md). Older ones are untested there.
MIN_TRITON_COMPILED = (3, 6)


def min_triton(interpreting: Optional[bool] = None) -> Tuple[int, ...]:
    """The oldest supported Triton release, ``(major, minor)``: :data:`MIN_TRITON_INTERPRETER`
    when the kernels run in Triton's interpreter (``interpreting``; by default read from
    ``TRITON_INTERPRET``), else :data:`MIN_TRITON_COMPILED`."""
    if interpreting is None:
        interpreting = _interpreting()
    return MIN_TRITON_INTERPRETER if interpreting else MIN_TRITON_COMPILED


def triton_version_problem(version: str, interpreting: Optional[bool] = None) -> str:
    """Why Triton ``version`` cannot run the kernels (``""`` when it can); see :func:`min_triton`."""
    if interpreting is None:
        interpreting = _interpreting()
    floor = min_triton(interpreting)
    if _version_tuple(version) >= floor:
        return ""
    where = "in Triton's interpreter" if interpreting else "compiled for a GPU"
    floor_text = ".".join(map(str, floor))
    return (f"triton {version} is older than {floor_text}, the oldest release these kernels "
            f"are tested with {where}; `pip install \"triton>={floor_text}\"` (with a matching "
            "torch), or use backend='torch'")


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> Tuple[bool, str]:
    """Whether the Triton kernels can run here, and why not.

    Returns
    -------
    ok : bool
        True when ``triton`` imports and either a CUDA device is present or
        ``TRITON_INTERPRET=1`` is set (CPU interpreter).
    why : str
        The reason when ``ok`` is False (empty otherwise).
    """
    try:
        import triton
    except Exception as exc:  # ImportError, or a broken triton install
        return False, (f"triton cannot be imported ({type(exc).__name__}: {exc}); install it "
                       "with `pip install triton` (CUDA builds of PyTorch ship it)")
    problem = triton_version_problem(getattr(triton, "__version__", "0"))
    if problem:
        return False, problem
    try:
        from . import triton_kernels  # noqa: F401
    except Exception as exc:
        return False, f"the Triton kernels cannot be loaded ({type(exc).__name__}: {exc})"

    if torch.cuda.is_available() or _interpreting():
        return True, ""
    return False, ("no CUDA device is available (set TRITON_INTERPRET=1 to run the kernels on "
                   "the CPU with Triton's interpreter, slowly)")


class KernelConfig:
    """Tile sizes of one launch (all powers of two); an immutable value (:meth:`replace` makes
    a changed copy), equal to another with the same fields and usable as a dict key.

    Parameters
    ----------
    view_block, det_block : int
        Forward tile: rays of ``view_block`` neighbouring views times ``det_block``
        neighbouring detectors.
    tile_h, tile_w : int
        Adjoint tile: pixels.
    b_block : int
        Images per program (the batch tile of both kernels).
    group : int
        Images per accumulator: ``b_block / group`` (1, 2, 4 or 8) accumulators per program.
        v2 (default): ``group`` = one 128-bit load (4 float32, 8 half), so that a thread owns
        one ray / pixel and evaluates its coefficients once for up to 4 loads. v1:
        ``group = b_block``, one accumulator whose images the compiler spreads over threads.
    layout : {"channels_last", "planar", "plain"}
        How images / sinograms are copied before the gathers (batches of one image always use
        ``"plain"``). ``"channels_last"`` (v1-v3): ``(H, W, B)`` / ``(V, D, B)``, the batch
        innermost, so that one gather reads ``group`` contiguous images and a pixel's images
        are one contiguous row. ``"planar"`` (v4): planes of ``group`` images,
        ``(B / group, H, W, group)`` / ``(B / group, V, D, group)``, so that neighbouring rays
        (pixels) of a warp, which read neighbouring pixels (rays), read neighbouring 16-byte
        vectors of one plane. ``"plain"``: the ``(B, H, W)`` / ``(B, V, D)`` input as it is.
    transposed : bool
        Forward only: also copy the transposed image, read by the rays that step over columns,
        so that every ray's two neighbours (and neighbouring rays) are adjacent in memory.
    num_warps : int
    adjoint_count : {"table", "reduce"}
        Adjoint only: where the number of candidate rays per pixel and view comes from.
        ``"table"`` (v2, default): a bound precomputed on the host (per view, or per view and
        tile in fan beam), loaded as a scalar. ``"reduce"`` (v1): the maximum over the tile's
        pixels, a reduction in every view. Both give the same result.
    framed : bool
        Forward only (with ``transposed``): zero frame around the cross axis of both copies,
        so that the gathers need no masks (v3, default); v1 masked every load.
    adjoint_frame : bool
        Adjoint loads without masks (v4, default; v1 and v3 masked every load). Parallel beam
        (``"affine"``): the sinogram is copied with ``max(count)`` zero rays on both sides of
        every view, so that the candidate loop needs no mask and no compare. Generic kernel
        (fan beams): a candidate past its pixel's interval reads a clamped, valid ray and gets
        weight zero.
    pair_offset : bool
        Forward only (v5): address each ray's second neighbour as its first plus a fixed
        distance (the next pixel of the row: in the planar layout one 128-bit vector further, an
        immediate offset of the load instruction), instead of computing both addresses
        (v1-v4). The same loads and sums, so the same results bit for bit; compiled for sm_90 a
        step of the planar launch at 8 images per thread is 49 instructions instead of 57 and
        all its loads are issued before the first is used (``KERNELS.md``, twelfth session).
    forward_max_registers : int or None
        Forward only: a cap on its registers per thread (``maxnreg`` of Triton's launch,
        16-255), or None (default): the compiler's choice. Compiled for sm_90, v5's forward with
        4 groups per thread takes 66 registers (28 warps per SM); capped at 64 it keeps v4's
        32 warps with 75 instructions per step and no spill (``KERNELS.md``, twelfth session).
        (Not offered for the adjoint: under a cap of 64 ptxas gave it 64 registers instead of
        43.) Triton's interpreter ignores it.
    tile_order : {"grid", "longest_first"}
        Forward only: the order in which the programs take the ray tiles. ``"grid"``
        (default): tile ``p`` for program ``p``. ``"longest_first"`` (v6): the tiles sorted by
        the number of steps their loop runs, longest first (:func:`tile_order`), so that the
        grid ends with short tiles and its last wave does not leave multiprocessors idle while
        a few long tiles finish. The same values either way; ``KERNELS.md``, thirteenth
        session, has the dispatch model that predicts its effect.
    parallel_adjoint : {"affine", "generic"}
        Adjoint of parallel beams in float32 / half precision: ``"affine"`` (v3, default) uses
        :func:`~.triton_kernels.joseph_adjoint_parallel_kernel` (per-view parameters, float32
        candidate arithmetic, no per-ray table loads); ``"generic"`` the kernel every geometry
        can use. float64 data always uses the generic kernel.
    """

    LAYOUTS = ("channels_last", "planar", "plain")
    TILE_ORDERS = ("grid", "longest_first")

    def __init__(self, view_block=4, det_block=32, tile_h=8, tile_w=16, b_block=16, group=4,
                 layout="channels_last", transposed=True, num_warps=4, adjoint_count="table",
                 parallel_adjoint="affine", framed=True, adjoint_frame=True,
                 pair_offset=False, forward_max_registers=None, tile_order="grid"):
        for name, value in (("view_block", view_block), ("det_block", det_block),
                            ("tile_h", tile_h), ("tile_w", tile_w), ("b_block", b_block),
                            ("group", group), ("num_warps", num_warps)):
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a positive power of two, got {value}")
        if b_block % group or b_block // group > 8:
            raise ValueError(f"b_block ({b_block}) must be 1, 2, 4 or 8 times group ({group})")
        if b_block > _MAX_B_BLOCK:
            raise ValueError(f"b_block must be at most {_MAX_B_BLOCK}, got {b_block}")
        if layout not in self.LAYOUTS:
            raise ValueError(f"layout must be one of {self.LAYOUTS}, got {layout!r}")
        if adjoint_count not in ("table", "reduce"):
            raise ValueError(f"adjoint_count must be 'table' or 'reduce', got {adjoint_count!r}")
        cap = forward_max_registers
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, numbers.Integral):
                raise TypeError(f"forward_max_registers must be an integer or None, got {cap!r}")
            if not 16 <= cap <= 255:
                raise ValueError(f"forward_max_registers must be between 16 and 255, got {cap}")
            forward_max_registers = int(cap)
        if tile_order not in self.TILE_ORDERS:
            raise ValueError(f"tile_order must be one of {self.TILE_ORDERS}, got {tile_order!r}")
        if parallel_adjoint not in ("affine", "generic"):
            raise ValueError(f"parallel_adjoint must be 'affine' or 'generic', got "
                             f"{parallel_adjoint!r}")
        fields = dict(view_block=int(view_block), det_block=int(det_block),
                      tile_h=int(tile_h), tile_w=int(tile_w), b_block=int(b_block),
                      group=int(group), layout=layout, transposed=bool(transposed),
                      num_warps=int(num_warps), adjoint_count=adjoint_count,
                      parallel_adjoint=parallel_adjoint, framed=bool(framed),
                      adjoint_frame=bool(adjoint_frame), pair_offset=bool(pair_offset),
                      forward_max_registers=forward_max_registers, tile_order=tile_order)
        self.__dict__.update(fields)
        self.__dict__["_key"] = tuple(fields[name] for name in self._FIELDS)
        self.__dict__["_hash"] = hash(self._key)

    def __setattr__(self, name, value):
        raise AttributeError(f"KernelConfig is immutable; use config.replace({name}=...)")

    def __delattr__(self, name):
        raise AttributeError("KernelConfig is immutable")

    def __eq__(self, other):
        return isinstance(other, KernelConfig) and self._key == other._key

    def __hash__(self):
        return self._hash

    def replace(self, **changes) -> "KernelConfig":
        """A copy with ``changes`` (field names as in the constructor), checked as there."""
        unknown = set(changes) - set(self.as_dict())
        if unknown:
            raise TypeError(f"KernelConfig has no field(s) {sorted(unknown)}")
        return KernelConfig(**{**self.as_dict(), **changes})

    @property
    def groups(self) -> int:
        """Accumulators per program (``b_block / group``)."""
        return self.b_block // self.group

    @classmethod
    def default(cls, batch: int, dtype: torch.dtype = torch.float32) -> "KernelConfig":
        """The launch used when no config is given: :meth:`planar` (v4) for batches of two
        or more images; for a single image v3's launch (:meth:`v3`, the plain layout) with
        v4's framed parallel-beam adjoint."""
        if batch <= 1:
            return cls.v3(batch, dtype).replace(adjoint_frame=True)
        return cls.planar(batch, dtype)

    @classmethod
    def planar(cls, batch: int, dtype: torch.dtype = torch.float32) -> "KernelConfig":
        """v4: planar layout, one ray / pixel per thread, up to 4 planes of one 128-bit load
        (4 float32 or 8 half-precision images) per thread.

        Tiles (chosen with ``benchmarks/kernel_model.py``, ``KERNELS.md``): the forward's 128
        rays are 16 views x 8 detectors, so a warp's 32 rays are 4 neighbouring views x 8
        neighbouring detectors and read a compact patch of each image row; the adjoint's
        pixels are 16 x 8 (a warp: 4 rows x 8 columns), or 16 x 16 (two per thread, sharing the
        per-view work) when a thread serves at most 8 images.

        v5 (``pair_offset``) where a thread serves at most 2 groups (float32 batches of 2-8,
        half-precision 2-16): compiled for sm_90 by Triton 3.8 its step issues 4-8 fewer
        instructions and no more load rounds, with the same registers; with 4 groups it saves
        12 instructions but needs 66 registers instead of 64 (``KERNELS.md``, twelfth
        session), so v4's addressing stays there. Measured on an H200 (Triton 3.6, thirteenth
        session) the two addressings run within 3 % of each other at P256 and P512: the
        forward is bound by L1/TEX throughput, not by its instructions.
        """
        vec = _vector_width(dtype)
        group = min(vec, 1 << max(0, math.ceil(math.log2(max(1, batch)))))
        groups = min(4, 1 << max(0, math.ceil(math.log2(-(-max(1, batch) // group)))))
        b_block = group * groups
        return cls(view_block=16, det_block=8, tile_h=16, tile_w=16 if b_block <= 8 else 8,
                   b_block=b_block, group=group, layout="planar", pair_offset=groups <= 2)

    @classmethod
    def v3(cls, batch: int, dtype: torch.dtype = torch.float32) -> "KernelConfig":
        """v3's default launch (channels-last): v1's tiles (:meth:`v1`) with the candidate
        count from the table, the parallel-beam adjoint and framed copies, except where v1's
        batch tile is 8 images: there v1's compiler output moved every step's coefficients
        between threads through shared memory, with barriers (``benchmarks/kernel_static.py``),
        so v2 and v3 use :meth:`one_per_thread`."""
        if cls.v1(batch).b_block == 8:
            return cls.one_per_thread(batch, dtype).replace(adjoint_frame=False)
        return cls.v1(batch).replace(adjoint_count="table", parallel_adjoint="affine",
                                     framed=True)

    @classmethod
    def v1(cls, batch: int) -> "KernelConfig":
        """The first version's heuristic (measured on an H200, ``KERNELS.md``): ~1024 (ray or
        pixel) x image pairs per program in one accumulator, candidate count by reduction.

        Kept as the benchmark's baseline only: compiled by Triton 3.6, its batch-8 launch gives
        a parallel-beam adjoint 8e-5 (relative L2) off the reference at P512 on the GPU (H200
        and H100, 2026-11-26/27; no race found), where v3 and v4 agree to 4e-7."""
        b_block = min(32, 1 << max(0, math.ceil(math.log2(max(1, batch)))))
        lanes = max(32, min(256, 1024 // b_block))  # rays / pixels per program
        view_block = 4 if lanes >= 32 else 1
        tile_w = 1 << math.ceil(0.5 * math.log2(lanes))  # square-ish pixel tile, w >= h
        return cls(view_block=view_block, det_block=lanes // view_block, tile_h=lanes // tile_w,
                   tile_w=tile_w, b_block=b_block, group=b_block,
                   layout="channels_last" if batch > 1 else "plain", adjoint_frame=False,
                   transposed=True, num_warps=4, adjoint_count="reduce",
                   parallel_adjoint="generic", framed=False)

    @classmethod
    def one_per_thread(cls, batch: int, dtype: torch.dtype = torch.float32) -> "KernelConfig":
        """One ray / pixel per thread at any batch, channels-last: 128 per program, groups of
        one 128-bit load (4 float32 or 8 half images), up to 4 groups (v2 and v3 at batch
        5-8)."""
        vec = _vector_width(dtype)
        groups = min(4, 1 << max(0, math.ceil(math.log2(-(-max(1, batch) // vec)))))
        return cls(view_block=4, det_block=32, tile_h=8, tile_w=16, b_block=vec * groups,
                   group=vec)

    @classmethod
    def candidates(cls, batch: int, dtype: torch.dtype = torch.float32) -> list:
        """The launches :class:`TritonBackend` times when it autotunes (default first).

        The default, the cost model's runner-up tiles (forward 4 views x 32 detectors,
        adjoint 8 x 16 pixels), eight warps instead of four, the forward's tiles longest
        first (``tile_order``), the forward's other pair
        addressing (``pair_offset``), and where they apply: with 4 groups of float32 images per
        thread v5's addressing capped at 64 registers (v4's occupancy), 2 planes per thread with
        ``pair_offset`` (at least 16 float32 / 32 half-precision images: twice the warps, one
        load round per step), 8 planes per thread (at least 32 float32 / 64 half-precision
        images), 4 pixels per thread in the adjoint (at most 8 images per thread), and v3's
        channels-last launch. Distinct configs only; the forward and the adjoint are tuned
        separately.
        """
        base = cls.default(batch, dtype)
        out = [base]

        def add(cfg):
            if cfg not in out:
                out.append(cfg)

        def variant(**kw):
            add(base.replace(**kw))

        variant(view_block=4, det_block=32, tile_h=8, tile_w=16)
        variant(num_warps=8)
        variant(tile_order="longest_first")
        if batch > 1:
            variant(pair_offset=not base.pair_offset)
            vec = _vector_width(dtype)
            if base.layout == "planar" and base.groups == 4 and dtype == torch.float32:
                variant(pair_offset=True, forward_max_registers=64)  # v5 at v4's occupancy
                variant(b_block=2 * base.group, tile_w=16, pair_offset=True)
            if batch >= 8 * vec and base.group == vec:
                variant(b_block=8 * vec)
            if base.b_block <= 8:
                variant(tile_h=32, tile_w=16)
            add(cls.v3(batch, dtype))
        return out

    _FIELDS = ("view_block", "det_block", "tile_h", "tile_w", "b_block", "group", "layout",
               "transposed", "num_warps", "adjoint_count", "parallel_adjoint", "framed",
               "adjoint_frame", "pair_offset", "forward_max_registers", "tile_order")

    def as_dict(self) -> dict:
        return dict(zip(self._FIELDS, self._key))

    def __repr__(self) -> str:
        return "KernelConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"


def _step_ranges(slope, icpt, vertical, grid: ImageGrid):
    """Per ray, ``[kmin, kmax)``: a superset of the steps where ``t`` lies in ``(-1, n_other)``."""
    h, w = grid.shape
    n_steps = torch.where(vertical, h, w).to(torch.float64)
    n_other = torch.where(vertical, w, h).to(torch.float64)
    flat = slope == 0
    safe = torch.where(flat, torch.ones_like(slope), slope)
    k1 = (-1.0 - icpt) / safe
    k2 = (n_other - icpt) / safe
    lo = torch.minimum(k1, k2)
    hi = torch.maximum(k1, k2)
    flat_inside = (icpt > -1.0) & (icpt < n_other)
    lo = torch.where(flat, torch.where(flat_inside, 0.0, n_steps), lo)
    hi = torch.where(flat, torch.where(flat_inside, n_steps, 0.0), hi)
    kmin = torch.clamp(torch.floor(lo) - 1.0, min=0.0)
    kmin = torch.minimum(kmin, n_steps)
    kmax = torch.minimum(torch.clamp(torch.ceil(hi) + 2.0, min=0.0), n_steps)
    kmax = torch.maximum(kmax, kmin)
    return kmin.to(torch.int32), kmax.to(torch.int32)


def tile_steps(kmin: torch.Tensor, kmax: torch.Tensor, views: int, dets: int,
               view_block: int, det_block: int) -> torch.Tensor:
    """Per forward ray tile, the number of steps its loop runs: ``max(kmax) - min(kmin)``
    over the tile's rays (every ray on the sinogram counts, an empty one too, as in
    :func:`~.triton_kernels.joseph_forward_kernel`), at least 0. ``kmin, kmax``: the
    ``views x dets`` rays' step ranges (:func:`_step_ranges`, flat, int32); tiles in the
    kernel's order, ``views // view_block`` rounded up times ``dets // det_block`` rounded up,
    detector tiles fastest. Returns int64."""
    vt, dt = -(-views // view_block), -(-dets // det_block)
    big = torch.iinfo(torch.int32).max
    lo = torch.full((vt * view_block, dt * det_block), big, dtype=torch.int64, device=kmin.device)
    hi = torch.zeros_like(lo)
    lo[:views, :dets] = kmin.reshape(views, dets)
    hi[:views, :dets] = kmax.reshape(views, dets)
    lo = lo.reshape(vt, view_block, dt, det_block).amin(dim=(1, 3))
    hi = hi.reshape(vt, view_block, dt, det_block).amax(dim=(1, 3))
    return (hi - lo).clamp_min(0).reshape(-1)


def tile_order(kmin: torch.Tensor, kmax: torch.Tensor, views: int, dets: int,
               view_block: int, det_block: int) -> torch.Tensor:
    """The forward's ray tiles, longest loop first (:func:`tile_steps`; ties keep the grid's
    order): the ``order_ptr`` table of ``KernelConfig(tile_order="longest_first")``, int32.

    The GPU starts blocks about in the order of their program ids, so the grid's last
    programs run while the others have finished: with the tiles in the grid's order that last wave holds long tiles
    and leaves multiprocessors idle (Nsight Compute on the H200: the forward's
    multiprocessors are active 82-89 % of its time, the adjoint's 94-100 %). Longest first is
    the classic list-scheduling remedy (Graham's LPT rule)."""
    steps = tile_steps(kmin, kmax, views, dets, view_block, det_block)
    return longest_first(steps).to(torch.int32)


def longest_first(steps: torch.Tensor) -> torch.Tensor:
    """Indices of ``steps`` (1-D) from the largest value to the smallest, ties in index order:
    the order of :func:`tile_order` (and of ``benchmarks/tail_model.py``'s model of it)."""
    return torch.sort(-steps, stable=True).indices


def _view_table(grid: ImageGrid, geometry) -> Tuple[np.ndarray, int, float, float, float]:
    """Per-view parameters of the adjoint's candidate search (see ``joseph_adjoint_kernel``).

    Returns ``(table (V, 8) float32, geom_code, det_scale, det_shift, sdd)``.
    """
    from .triton_kernels import (GEOM_FAN_CURVED, GEOM_FAN_FLAT, GEOM_PARALLEL,
                                 VIEW_PARAMS)
    h, w = grid.shape
    dy, dx = grid.spacing
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    n = geometry.detector_count
    ds = geometry.detector_spacing
    det_scale = 1.0 / ds
    det_shift = -geometry.detector_offset / ds + 0.5 * (n - 1)
    a = geometry.angle_array()
    ca, sa = np.cos(a), np.sin(a)
    table = np.zeros((a.size, VIEW_PARAMS), dtype=np.float64)
    if isinstance(geometry, ParallelGeometry):
        # j = (x cos + y sin - offset) / ds + (n-1)/2, x = (c - cx) dx, y = (cy - r) dy.
        a_c = dx * ca / ds
        a_r = -dy * sa / ds
        a_0 = (-cx * dx * ca + cy * dy * sa) * det_scale + det_shift
        table[:, 0], table[:, 1], table[:, 2] = a_c, a_r, a_0
        table[:, 3] = np.maximum(np.abs(a_c), np.abs(a_r))
        return table.astype(np.float32), GEOM_PARALLEL, det_scale, det_shift, 0.0
    if isinstance(geometry, FanGeometry):
        rr = geometry.source_to_isocenter
        # along = (P - S).(sin b, -cos b) = x sin b - y cos b + R; across = x cos b + y sin b.
        table[:, 0] = dx * sa
        table[:, 1] = dy * ca
        table[:, 2] = rr - cx * dx * sa - cy * dy * ca
        table[:, 3] = dx * ca
        table[:, 4] = -dy * sa
        table[:, 5] = -cx * dx * ca + cy * dy * sa
        code = GEOM_FAN_FLAT if geometry.detector == "flat" else GEOM_FAN_CURVED
        return (table.astype(np.float32), code, det_scale, det_shift,
                float(geometry.source_to_detector))
    raise TypeError(f"geometry must be a ParallelGeometry or FanGeometry, got "
                    f"{type(geometry).__name__}")


def parallel_view_table(table: torch.Tensor):
    """Per-view parameters of :func:`~.triton_kernels.joseph_adjoint_parallel_kernel`.

    ``table`` is the operator's ray table ``(4, V, D)`` (float64). A parallel view's rays share
    slope, step and dominant axis, and their intercepts are affine in the detector index; this
    is checked (to 1e-9 detectors' worth of intercept), and ``None`` is returned when it does
    not hold (or ``D < 2``), so that the generic kernel is used.

    Returns
    -------
    (pview, count) or None
        ``pview`` ``(V, 6)`` float64: ``a_c, a_r, a_0, delta, step, 1/|delta|``, where
        ``j* = a_c c + a_r r + a_0`` is the fractional index of the ray through pixel
        ``(r, c)``'s centre (the ray ``j`` crosses the pixel's row, or column, at ``(j - j*)
        delta`` pixels from its centre) and ``step`` the length of a ray per step;
        ``count`` ``(V,)`` int32: candidates per pixel, ``ceil(2 / |delta|)``.
    """
    from .triton_kernels import PARALLEL_VIEW_PARAMS
    slope, icpt, step, vert = table.to(torch.float64)
    n_det = icpt.shape[1]
    if n_det < 2:
        return None
    delta = (icpt[:, -1] - icpt[:, 0]) / (n_det - 1)
    j = torch.arange(n_det, dtype=torch.float64, device=table.device)
    affine = icpt[:, :1] + j * delta[:, None]
    same = lambda a: bool(((a - a[:, :1]).abs() <= 1e-12 * a.abs().clamp_min(1.0)).all())
    if (delta == 0).any() or not (same(slope) and same(step) and same(vert)):
        return None
    if float((icpt - affine).abs().max()) > 1e-9 * float(delta.abs().min()):
        return None
    reach = 1.0 / delta.abs()
    # Ray j at step k crosses the other axis at t = slope k + icpt_0 + j delta; pixel (r, c)
    # is (k, i) = (r, c) in a view stepping over rows, (c, r) otherwise; t = i at
    # j* = (i - slope k - icpt_0) / delta.
    rows = vert[:, 0] > 0.5
    inv = 1.0 / delta
    a_k, a_i, a_0 = -slope[:, 0] * inv, inv, -icpt[:, 0] * inv
    pview = torch.stack([torch.where(rows, a_i, a_k), torch.where(rows, a_k, a_i), a_0, delta,
                         step[:, 0], reach], 1)
    assert pview.shape[1] == PARALLEL_VIEW_PARAMS
    count = torch.clamp(torch.ceil(2.0 * reach - 1e-9), min=1).to(torch.int32)
    return pview.contiguous(), count.contiguous()


def _on_device(device: torch.device):
    """Launch on the tensors' GPU, not on the current one."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def forward_elements_per_image(h: int, w: int, v: int, d: int) -> int:
    """Elements per image of the forward's largest tensor: the image and its transpose, each
    with a zero frame at most (see :func:`.triton_launch.forward_launch`), or the ``(V, D)``
    output."""
    return max(2 * max(h * (w + 2), w * (h + 2)), v * d)


def adjoint_elements_per_image(h: int, w: int, v: int, d: int, frame: int) -> int:
    """Elements per image of the adjoint's largest tensor: the output, or the sinogram with
    ``frame`` zero rays on both sides of every view."""
    return max(h * w, v * (d + 2 * frame))


def one_image_fits(grid: ImageGrid, geometry) -> bool:
    """Whether one image's copies stay within the kernels' int32 offsets in both directions
    (with the widest frame the parallel adjoint uses); beyond, ``auto`` takes ``torch``."""
    (h, w), (v, d) = grid.shape, geometry.sinogram_shape
    return max(forward_elements_per_image(h, w, v, d),
               adjoint_elements_per_image(h, w, v, d, PARALLEL_AFFINE_MAX_CANDIDATES)) \
        <= _INT32_LIMIT


#: Environment variable that switches autotuning on for backends built without ``autotune``.
AUTOTUNE_ENV = "KNOWN_OPERATORS_AUTOTUNE"


def median_ms(fn, device: torch.device, reps: int) -> float:
    """Median milliseconds of ``reps`` calls of ``fn()`` (no warm-up): CUDA events on the GPU,
    the wall clock elsewhere. Shared by the autotuner and ``benchmarks/gpu_bench.py``."""
    import statistics
    import time
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _time_ms(fn, device: torch.device, reps: int) -> float:
    """:func:`median_ms` after one warm-up call (which compiles the kernels)."""
    fn()
    return median_ms(fn, device, reps)


def _cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive ints (``triton.cdiv`` costs microseconds per call)."""
    return -(-a // b)


#: Extra detectors (on top of ``2 CANDIDATE_PAD``) in the host's bound of the number of
#: candidates per pixel and view: it covers the float32 rounding of the kernel's interval ends
#: (a few 1e-4 detectors in the benchmark geometries) and the fan kernel's float32 ``atan``.
_COUNT_MARGIN = 0.05


def candidate_counts(grid: ImageGrid, geometry, tile_h: int, tile_w: int, pad: float,
                     device=None) -> torch.Tensor:
    """Upper bounds of the adjoint's candidate rays per pixel and view (``COUNT_FROM_TABLE``),
    on ``device``.

    From the kernel's float32 view table (:func:`_view_table`). In the kernel, pixel ``p``
    visits detectors ``ceil(lo_p - pad) .. floor(hi_p + pad)`` clipped to the detector, so at
    most ``floor(hi_p - lo_p + 2 pad) + 1``; this bound is evaluated here in float64 from the
    same float32 parameters, widened by :data:`_COUNT_MARGIN` and a relative ``2**-18 |j|`` for
    the float32 rounding of the ends (fan beam: with the ends clipped as the kernel clips them).

    Returns
    -------
    torch.Tensor
        int32: ``(V,)`` for parallel beam (every pixel's interval has the width ``2 h`` of its
        view), ``(V, tiles)`` for fan beam (the maximum over each ``tile_h x tile_w`` tile,
        tiles in the kernel's row-major order; a pixel whose diamond is not safely in front of
        the source counts every detector, as the kernel then does).
    """
    from .triton_kernels import GEOM_PARALLEL
    h, w = grid.shape
    n_det = geometry.detector_count
    views, code, det_scale, det_shift, sdd = _view_table(grid, geometry)
    t = torch.from_numpy(views).to(device=device, dtype=torch.float64)
    if code == GEOM_PARALLEL:
        a_c, a_r, a_0, half = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
        j_max = a_c.abs() * w + a_r.abs() * h + a_0.abs() + half
        bound = 2 * half + 2 * pad + _COUNT_MARGIN + 2.0**-18 * j_max
        return torch.clamp(torch.floor(bound) + 1, max=n_det).to(torch.int32).contiguous()
    th, tw = -(-h // tile_h), -(-w // tile_w)
    rows = torch.arange(th * tile_h, device=t.device, dtype=torch.float64)
    cols = torch.arange(tw * tile_w, device=t.device, dtype=torch.float64)
    inside = (rows[:, None] < h) & (cols[None, :] < w)
    rf, cf = rows[:, None], cols[None, :]
    out = torch.empty(t.shape[0], th * tw, dtype=torch.int32, device=t.device)
    chunk = max(1, (1 << 20) // (th * tile_h * tw * tile_w))
    for v0 in range(0, t.shape[0], chunk):
        p = t[v0:v0 + chunk, :, None, None]  # (c, 8, 1, 1)
        p0, p1, p2, p3, p4, p5 = (p[:, i] for i in range(6))
        along = p0 * cf + p1 * rf + p2
        across = p3 * cf + p4 * rf + p5
        tans = torch.stack([(across + p3) / (along + p0), (across - p3) / (along - p0),
                            (across + p4) / (along + p1), (across - p4) / (along - p1)])
        t_min, t_max = tans.amin(0), tans.amax(0)
        if code == 2:  # curved
            t_min, t_max = torch.atan(t_min), torch.atan(t_max)
        j_lo = sdd * t_min * det_scale + det_shift
        j_hi = sdd * t_max * det_scale + det_shift
        # The kernel visits max(ceil(lo - pad), 0) .. min(floor(hi + pad), n_det - 1), with its
        # float32 lo / hi within `slop` of these float64 values.
        slop = 0.5 * _COUNT_MARGIN + 2.0**-18 * (j_lo.abs() + j_hi.abs())
        first = torch.clamp(j_lo - pad - slop, min=0.0)
        last = torch.clamp(j_hi + pad + slop, max=n_det - 1.0)
        count = torch.clamp(torch.floor(last - first) + 1, min=0.0)
        slack = 1e-4 * (along.abs() + p0.abs() + p1.abs())
        front = (along - p0.abs() - p1.abs()) > slack
        count = torch.where(front & torch.isfinite(count), count, float(n_det))
        count = torch.clamp(count, max=n_det) * inside
        tiles = count.reshape(-1, th, tile_h, tw, tile_w).amax(dim=(2, 4))
        out[v0:v0 + chunk] = tiles.reshape(-1, th * tw).to(torch.int32)
    return out.contiguous()


class TritonBackend:
    """Joseph projector pair as Triton kernels (see :mod:`.triton_kernels`).

    Parameters
    ----------
    grid : ImageGrid
    geometry : ParallelGeometry or FanGeometry
        Needed for the adjoint's candidate search; the weights come from the ray table.
    config : KernelConfig, optional
        Tile sizes; default :meth:`KernelConfig.default` for the batch size of each call.

    autotune : bool, optional
        Time :meth:`KernelConfig.candidates` on the first call of each direction, batch size,
        dtype and device and keep the fastest (``tuned`` records the times); ``None`` (default)
        reads the environment variable ``KNOWN_OPERATORS_AUTOTUNE`` (``1``: on). Ignored when
        ``config`` is given. The first call then costs the compilation of every candidate
        (seconds); every launch computes the same Joseph weights, but results of different
        launches may differ in the last float32 bit (each launch alone is deterministic).
    autotune_reps : int
        Timed calls per candidate (median; after one warm-up call).

    Methods take ``x`` ``(B, H, W)`` / ``y`` ``(B, V, D)`` tensors (float32, float64, float16
    or bfloat16; the result has the same dtype) and the operator's ray table ``(4, V, D)``
    float64 on the same device. Derived tables (float64 slope / intercept / signed step, int32
    step ranges, float32 view table, int32 candidate counts per tile shape) are cached per
    device, and so is each call's prepared launch (:mod:`.triton_launch`: the layout copy and
    kernel arguments for a batch shape, dtype and device, so that a repeated call does no
    planning on the host); :meth:`clear` drops them, and so does setting ``config`` or
    ``autotune``.
    """

    name = "triton"
    supports_half = True  # float16 / bfloat16 storage, float32 accumulation

    def __init__(self, grid: ImageGrid, geometry, config: Optional[KernelConfig] = None,
                 autotune: Optional[bool] = None, autotune_reps: int = 5):
        ok, why = triton_available()
        if not ok:
            from . import BackendUnavailableError
            raise BackendUnavailableError(f"backend='triton' cannot run here: {why}")
        if config is not None and not isinstance(config, KernelConfig):
            raise TypeError(f"config must be a KernelConfig or None, got {type(config).__name__}")
        self.grid = grid
        self.geometry = geometry
        self._image = tuple(grid.shape)
        self._rays = tuple(geometry.sinogram_shape)
        self._cache: Dict[str, dict] = {}
        self._defaults: Dict[tuple, KernelConfig] = {}
        #: ``(direction, batch, dtype, config, device) -> PreparedLaunch``
        self._launches: Dict[tuple, PreparedLaunch] = {}
        #: ``(direction, shape, dtype, device) -> PreparedLaunch`` of calls that take one launch
        self._ready: Dict[tuple, PreparedLaunch] = {}
        self.config = config
        if autotune is None:
            autotune = os.environ.get(AUTOTUNE_ENV, "0") not in ("", "0")
        self.autotune = bool(autotune)
        if int(autotune_reps) < 1:
            raise ValueError(f"autotune_reps must be a positive integer, got {autotune_reps!r}")
        self.autotune_reps = int(autotune_reps)
        #: ``(direction, batch, dtype, device) -> {"config": KernelConfig, "times_ms": [...]}``
        self.tuned: Dict[tuple, dict] = {}

    @property
    def config(self) -> Optional[KernelConfig]:
        """The explicit launch config (``None``: the default, or autotuned, per call)."""
        return self._config_given

    @config.setter
    def config(self, value: Optional[KernelConfig]) -> None:
        if value is not None and not isinstance(value, KernelConfig):
            raise TypeError(f"config must be a KernelConfig or None, got {type(value).__name__}")
        self._config_given = value
        self._ready.clear()

    @property
    def autotune(self) -> bool:
        return self._autotune

    @autotune.setter
    def autotune(self, value: bool) -> None:
        self._autotune = bool(value)
        self._ready.clear()

    def clear(self) -> None:
        self._cache.clear()
        self._launches.clear()
        self._ready.clear()

    # -- tables ---------------------------------------------------------------------------------
    def tables(self, table: torch.Tensor) -> dict:
        """Derived per-ray and per-view tables for ``table``'s device (cached)."""
        key = str(table.device)
        cached = self._cache.get(key)
        if cached is not None and cached["shape"] == tuple(table.shape):
            return cached
        if table.dim() != 3 or table.shape[0] != 4:
            raise ValueError(f"table must have shape (4, views, detectors), got "
                             f"{tuple(table.shape)}")
        _, v, d = table.shape
        if (v, d) != tuple(self.geometry.sinogram_shape):
            raise ValueError(f"table covers {(v, d)} rays but the geometry has "
                             f"{self.geometry.sinogram_shape}")
        cached = build_outside_graph_pools(lambda: self._build_tables(table), table.device)
        self._cache[key] = cached
        return cached

    def _build_tables(self, table: torch.Tensor) -> dict:
        _, v, d = table.shape
        t = table.to(torch.float64).reshape(4, v * d)
        slope, icpt, step, vertical = t[0], t[1], t[2], t[3] > 0.5
        kmin, kmax = _step_ranges(slope, icpt, vertical, self.grid)
        views, code, det_scale, det_shift, sdd = _view_table(self.grid, self.geometry)
        cached = dict(
            shape=tuple(table.shape), device=str(table.device),
            slope=slope.contiguous(), icpt=icpt.contiguous(),
            step=torch.where(vertical, step, -step).contiguous(),
            kmin=kmin.contiguous(), kmax=kmax.contiguous(),
            views=torch.from_numpy(views).to(table.device), geom=code,
            det_scale=float(det_scale), det_shift=float(det_shift), sdd=float(sdd), counts={},
            orders={},
            parallel=(parallel_view_table(table) if isinstance(self.geometry, ParallelGeometry)
                      else None))
        # Zero rays on each side of a view for the framed parallel adjoint: its most
        # candidates per pixel (read once here, not per call). The affine parallel adjoint
        # steps through ~2 / pitch candidates with u += pitch; for a detector pitch far finer
        # than the pixels that loop (and the float32 drift of u) grows without bound, so
        # beyond PARALLEL_AFFINE_MAX_CANDIDATES the generic kernel (clamped to the detector)
        # runs instead.
        most = int(cached["parallel"][1].max()) if cached["parallel"] is not None else 0
        cached["parallel_affine"] = 0 < most <= PARALLEL_AFFINE_MAX_CANDIDATES
        cached["parallel_frame"] = most if cached["parallel_affine"] else 0
        return cached

    def order(self, tabs: dict, view_block: int, det_block: int) -> torch.Tensor:
        """The forward's tile order for one tile shape (:func:`tile_order`, cached with
        ``tabs``)."""
        key = (view_block, det_block)
        if key not in tabs["orders"]:
            v, d = tabs["shape"][1:]
            tabs["orders"][key] = build_outside_graph_pools(
                lambda: tile_order(tabs["kmin"], tabs["kmax"], v, d, view_block, det_block),
                tabs["kmin"].device)
        return tabs["orders"][key]

    def counts(self, tabs: dict, tile_h: int, tile_w: int) -> torch.Tensor:
        """The adjoint's candidate-count table for one tile shape (cached with ``tabs``)."""
        from .triton_kernels import CANDIDATE_PAD, GEOM_PARALLEL
        key = (tile_h, tile_w) if tabs["geom"] != GEOM_PARALLEL else None
        if key not in tabs["counts"]:
            device = tabs["views"].device
            tabs["counts"][key] = build_outside_graph_pools(
                lambda: candidate_counts(self.grid, self.geometry, tile_h, tile_w,
                                         CANDIDATE_PAD, device), device)
        return tabs["counts"][key]

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _check(name: str, t: torch.Tensor, trailing) -> None:
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must be float32, float64, float16 or bfloat16 for the "
                            f"triton backend, got {t.dtype}")
        if t.dim() != 3 or tuple(t.shape[1:]) != tuple(trailing):
            raise ValueError(f"{name} must have shape (B, {trailing[0]}, {trailing[1]}), got "
                             f"{tuple(t.shape)}")
        if t.device.type != "cuda" and not _interpreting():
            raise RuntimeError(f"{name} is on {t.device}; the triton backend needs CUDA tensors "
                               "(or TRITON_INTERPRET=1 for the CPU interpreter)")

    def _config(self, batch: int, dtype: torch.dtype) -> KernelConfig:
        if self.config is not None:
            return self.config
        key = (batch, dtype)
        cfg = self._defaults.get(key)
        if cfg is None:  # a handful of (batch, dtype) pairs per operator
            cfg = self._defaults[key] = KernelConfig.default(batch, dtype)
        return cfg

    def _choose(self, direction: str, t: torch.Tensor, run,
                fits: int = _INT32_LIMIT) -> KernelConfig:
        """The launch for this call: the explicit config, else the default, else (autotune)
        the fastest of :meth:`KernelConfig.candidates` whose padded batch stays within
        ``fits`` images, timed once per direction, batch, dtype and device by running
        ``run(cfg)`` (which writes the call's output)."""
        b = t.shape[0]
        default = self._config(b, t.dtype)
        if self.config is not None or not self.autotune \
                or self._padded_images(default, b, t.dtype) > fits:
            return default  # (the caller shrinks a batch the default does not fit)
        key = (direction, b, t.dtype, str(t.device))
        if key in self.tuned:
            return self.tuned[key]["config"]
        if not self._can_time(t):
            return default  # untuned, so not kept as the call's prepared launch (_settled)
        times = []
        candidates = [c for c in KernelConfig.candidates(b, t.dtype)
                      if self._padded_images(c, b, t.dtype) <= fits]
        for i, cfg in enumerate(candidates):
            try:
                times.append((cfg, _time_ms(lambda: run(cfg), t.device, self.autotune_reps)))
            except Exception:  # e.g. out of registers / shared memory: not a candidate
                if i == 0:
                    raise  # the default launch itself must run
                times.append((cfg, float("inf")))
        best = min(times, key=lambda item: item[1])[0]
        self.tuned[key] = {"config": best, "times_ms": [(c.as_dict(), ms) for c, ms in times]}
        return best

    @staticmethod
    def _can_time(t: torch.Tensor) -> bool:
        """Whether launches on ``t``'s device can be timed now: not inside a CUDA-graph
        capture."""
        return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())

    @staticmethod
    def _padded_images(cfg: KernelConfig, batch: int, dtype: torch.dtype) -> int:
        """Images in the copies of a ``batch``-image launch with ``cfg`` (an upper bound: the
        planar and channels-last copies pad the batch to whole vectors and tiles)."""
        if batch <= 1 or cfg.layout == "plain":
            return batch
        return _padded_batch(batch, cfg.b_block, max(cfg.group, _vector_width(dtype)))

    def _chunk_size(self, direction: str, part: torch.Tensor, fits: int, run):
        """``(images, config)`` of the next launch on ``part`` (the rest of the batch): as many
        images as fit in ``fits`` once padded to the config's tiles, at most
        ``_MAX_LAUNCH_IMAGES``."""
        n = min(part.shape[0], fits, _MAX_LAUNCH_IMAGES)
        if n == part.shape[0] and n + _MAX_B_BLOCK <= fits:  # the usual case: one launch
            return n, self._choose(direction, part, run(n), fits)
        while True:
            cfg = self._choose(direction, part[:n], run(n), fits)
            padded = self._padded_images(cfg, n, part.dtype)
            if padded <= fits:
                return n, cfg
            tile = max(cfg.b_block, cfg.group, _vector_width(part.dtype))  # powers of two
            n = max(1, min(n - 1, fits // tile * tile))

    # -- operators ------------------------------------------------------------------------------
    #: Prepared launches kept per backend before the caches start over (a few batch sizes
    #: per operator is usual; a loop over many batch sizes must not grow them without bound).
    _MAX_PREPARED = 64

    def _launch(self, direction: str, n: int, dtype: torch.dtype, tabs: dict,
                cfg: KernelConfig) -> PreparedLaunch:
        """The prepared launch of ``n`` images of ``dtype`` with ``cfg`` (cached)."""
        key = (direction, n, dtype, cfg, tabs["device"])
        launch = self._launches.get(key)
        if launch is None:
            from . import triton_kernels as K
            image, rays = self._image, self._rays
            if direction == "forward":
                order = (self.order(tabs, cfg.view_block, cfg.det_block)
                         if cfg.tile_order != "grid" else None)
                launch = forward_launch(K.joseph_forward_kernel, n, dtype, cfg, image, rays,
                                        tabs, order)
            else:
                launch = adjoint_launch(K, n, dtype, cfg, image, rays, tabs,
                                        lambda th, tw: self.counts(tabs, th, tw))
            if len(self._launches) >= self._MAX_PREPARED:
                self._launches.clear()
            self._launches[key] = launch
        return launch

    def _run(self, direction: str, name: str, t: torch.Tensor, trailing, tabs: dict,
             out_shape, per_item: int) -> torch.Tensor:
        """Check ``t``, then launch the kernels of ``direction`` on batch chunks small enough
        that every tensor the kernels index has fewer than ``2**31`` elements (``per_item`` of
        them per image, the batch padded to the launch's tiles) and that the launch grid's
        batch axis stays within CUDA's 65535. A call that takes one launch leaves it in
        ``_ready`` for the next call of the same shape, dtype and device; ``tabs``:
        :meth:`tables` of the call's ray table."""
        self._check(name, t, trailing)
        fits = _INT32_LIMIT // max(1, per_item)
        if fits < 1:
            v, d = tabs["shape"][1:]
            raise ValueError(
                f"{name}: one image needs {per_item} elements in the triton kernels' copies, "
                f"more than the 2**31 - 1 their int32 offsets reach ({self.grid.shape[0]}x"
                f"{self.grid.shape[1]} pixels, {v}x{d} rays); use backend='torch' for this "
                "size")
        out = torch.empty(t.shape[0], *out_shape, dtype=t.dtype, device=t.device)
        with _on_device(t.device):
            start = 0
            while start < t.shape[0]:
                rest = t[start:]

                def run(n, start=start):
                    return lambda c: self._launch(direction, n, t.dtype, tabs, c)(
                        t[start:start + n], out[start:start + n])

                n, cfg = self._chunk_size(direction, rest, fits, run)
                launch = self._launch(direction, n, t.dtype, tabs, cfg)
                launch(t[start:start + n], out[start:start + n])
                if n == t.shape[0] and self._settled(direction, n, t):
                    if len(self._ready) >= self._MAX_PREPARED:
                        self._ready.clear()
                    self._ready[(direction, t.shape, t.dtype, t.device)] = launch
                start += n
        return out

    def _settled(self, direction: str, n: int, t: torch.Tensor) -> bool:
        """Whether the launch for ``n`` images is final (not awaiting an autotune run)."""
        return (self.config is not None or not self.autotune
                or (direction, n, t.dtype, str(t.device)) in self.tuned)

    def _ready_call(self, direction: str, t: torch.Tensor, out_shape) -> Optional[torch.Tensor]:
        """The call through its prepared launch, when an earlier call of the same shape, dtype
        and device left one (``None`` otherwise)."""
        launch = self._ready.get((direction, t.shape, t.dtype, t.device))
        if launch is None:
            return None
        out = torch.empty((t.shape[0],) + out_shape, dtype=t.dtype, device=t.device)
        with _on_device(t.device):
            launch(t, out)
        return out

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Project ``x`` ``(B, H, W)`` to ``(B, V, D)`` (line integrals, Joseph's method)."""
        x = x.contiguous()
        rays = self._rays
        out = self._ready_call("forward", x, rays)
        if out is not None:
            return out
        return self._run("forward", "x", x, self._image, self.tables(table), rays,
                         forward_elements_per_image(*self._image, *rays))

    def adjoint(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Back-project ``y`` ``(B, V, D)`` to ``(B, H, W)`` (exact adjoint of :meth:`forward`)."""
        y = y.contiguous()
        image = self._image
        out = self._ready_call("adjoint", y, image)
        if out is not None:
            return out
        rays = self._rays
        tabs = self.tables(table)
        frame = tabs["parallel_frame"]  # at most this many rays of frame
        return self._run("adjoint", "y", y, rays, tabs, image,
                         adjoint_elements_per_image(*image, *rays, frame))
