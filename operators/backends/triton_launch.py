"""Prepared launches of the Triton kernels: the layout copy and the kernel's arguments, worked
out once per direction, batch size, dtype and :class:`~.triton_backend.KernelConfig`.

A projector call on the GPU is short (0.05-0.6 ms of kernel time in the benchmark cases), so
the host's work per call decides much of an eager call's time: every PyTorch operation costs
microseconds of dispatch and every CUDA launch more. :class:`PreparedLaunch` reduces a call to
one allocation, one ``copy_`` per destination (a strided view of the buffer, written with
``as_strided``, so that the planar, channels-last and transposed layouts need no ``movedim``,
``permute`` or slicing chains) and the kernel launch with arguments computed beforehand.

The layouts (see :class:`~.triton_backend.KernelConfig` for why each exists):

* forward, ``planar`` (v4): ``(halves, G, pixels, group)``: image ``b = g group + l`` at plane
  ``g``, lane ``l``; half 0 holds the ``(H, W + f)`` image, half 1 its ``(W, H + f)``
  transpose, with ``f / 2`` zero columns on each side when framed;
* forward, ``channels_last`` (v1-v3): ``(halves, pixels, Bp)``, the batch innermost;
* forward, ``plain``: ``(halves, B, pixels)``;
* adjoint: the same three with ``(V, D + 2 frame)`` sinograms, ``frame`` zero rays on each side
  of a view for the framed parallel-beam kernel; a plain, unframed adjoint reads its input as it
  is (no copy).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch

__all__ = ["PreparedLaunch", "forward_launch", "adjoint_launch", "padded_batch",
           "vector_width"]

#: One destination of the layout copy: ``(size, stride, storage_offset, start, stop)``; the
#: images ``start:stop`` of the input, viewed as ``size``, are copied to
#: ``buffer.as_strided(size, stride, storage_offset)``.
Copy = Tuple[Tuple[int, ...], Tuple[int, ...], int, int, int]


def vector_width(dtype: torch.dtype) -> int:
    """Images per 16-byte vector load: 8 half-precision images, 4 otherwise (16 bytes of
    float32, 32 of float64)."""
    return 8 if dtype in (torch.float16, torch.bfloat16) else 4


def padded_batch(batch: int, b_block: int, vec: int = 4) -> int:
    """Padded batch of the channels-last and planar copies: a multiple of ``vec`` (the
    channels-last rows' 16-byte vectors, or the planar layout's plane width) and, when the
    batch spans several tiles, of the tile."""
    multiple = max(vec, b_block) if batch > b_block else vec  # both powers of two
    return -(-batch // multiple) * multiple


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _accumulator(dtype: torch.dtype):
    import triton.language as tl
    return tl.float64 if dtype == torch.float64 else tl.float32


def _batch_layout(b: int, dtype: torch.dtype, cfg) -> Tuple[str, int, int, bool]:
    """``(layout, vec, bp, even)`` of a ``b``-image launch, the same in both directions: the
    layout (``plain`` for one image), images per vector load (1 when plain), the padded batch
    (a multiple of the planes' width or of the vector, and of the tile when the batch spans
    several) and whether it fills every batch tile (``EVEN_B``: loads without a batch mask)."""
    layout = cfg.layout if b > 1 else "plain"
    if layout == "planar":
        vec, bp = min(vector_width(dtype), cfg.group), padded_batch(b, cfg.b_block, cfg.group)
    elif layout == "channels_last":
        vec = vector_width(dtype)
        bp = padded_batch(b, cfg.b_block, vec)
    else:
        vec, bp = 1, b
    return layout, vec, bp, bp % cfg.b_block == 0


def _forward_options(cfg) -> dict:
    """The forward's Triton compile options beyond ``num_warps``: ``maxnreg`` where ``cfg``
    caps its registers (omitted otherwise, so that the launch's cache key is as before)."""
    cap = cfg.forward_max_registers
    return {} if cap is None else {"maxnreg": cap}


class PreparedLaunch:
    """One call's work on the host: allocate the layout buffer, copy the input into it, launch.

    ``launch(t, out)`` reads ``t`` ``(B, a, b)`` (contiguous, the batch, dtype and device the
    launch was prepared for) and writes the kernel's result into ``out`` (contiguous).

    Attributes
    ----------
    config : KernelConfig
        The launch's tiles.
    buffer_shape : tuple of int or None
        Shape of the layout buffer; ``None`` when the kernel reads ``t`` itself.
    zero : bool
        Whether the buffer must start as zeros (frames, padded batch planes).
    copies : list of Copy
        Where the input goes in the buffer.
    grid : (int, int)
        The launch grid.
    """

    __slots__ = ("config", "buffer_shape", "zero", "copies", "grid", "kernel", "args",
                 "kwargs", "_launch")

    def __init__(self, config, buffer_shape: Optional[Tuple[int, ...]], zero: bool,
                 copies: List[Copy], kernel, grid: Tuple[int, int], args: tuple,
                 kwargs: dict):
        self.config = config
        self.buffer_shape = buffer_shape
        self.zero = zero
        self.copies = copies
        self.kernel = kernel
        self.grid = grid
        self.args = args
        self.kwargs = kwargs
        self._launch = kernel[grid]

    def layout(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the kernel's layout (a new buffer, or ``t`` itself)."""
        if self.buffer_shape is None:
            return t
        buf = (t.new_zeros if self.zero else t.new_empty)(self.buffer_shape)
        for size, stride, offset, start, stop in self.copies:
            src = t if start == 0 and stop == t.shape[0] else t[start:stop]
            buf.as_strided(size, stride, offset).copy_(src.view(size))
        return buf

    def __call__(self, t: torch.Tensor, out: torch.Tensor) -> None:
        self._launch(self.layout(t), out, *self.args, **self.kwargs)


def _planar_copies(b: int, group: int, plane: int, spatial: Tuple[int, int],
                   strides: Tuple[int, int], offset: int) -> List[Copy]:
    """Copies of ``b`` images ``(b, *spatial)`` into planes of ``group`` lanes: image
    ``p group + l`` at ``offset + p plane + l`` plus the spatial ``strides`` (in elements)."""
    out = []
    full, rem = divmod(b, group)
    if full:
        out.append(((full, group) + spatial, (plane, 1) + strides, offset, 0, full * group))
    if rem:
        out.append(((rem,) + spatial, (1,) + strides, offset + full * plane, full * group, b))
    return out


def forward_launch(kernel, b: int, dtype: torch.dtype, cfg, image: Tuple[int, int],
                   rays: Tuple[int, int], tables: dict,
                   order: Optional[torch.Tensor] = None) -> PreparedLaunch:
    """The forward projection of ``b`` images ``image = (H, W)`` to ``rays = (V, D)``.

    ``kernel``: :func:`~.triton_kernels.joseph_forward_kernel`; ``tables``: the backend's
    per-ray tables (``slope``, ``icpt``, ``step``, ``kmin``, ``kmax``); ``order``: the tiles
    in the order the programs take them (int32, one per ray tile of ``cfg``;
    :func:`~.triton_backend.tile_order`), needed where ``cfg.tile_order`` is not ``"grid"``.
    """
    h, w = image
    v, d = rays
    tiles = _cdiv(v, cfg.view_block) * _cdiv(d, cfg.det_block)
    ordered = cfg.tile_order != "grid"
    if ordered and (order is None or tuple(order.shape) != (tiles,)
                    or order.dtype != torch.int32):
        got = None if order is None else f"{tuple(order.shape)} {order.dtype}"
        raise ValueError(f"order: tile_order={cfg.tile_order!r} needs the int32 order of the "
                         f"{tiles} ray tiles, got {got}")
    layout, vec, bp, even = _batch_layout(b, dtype, cfg)
    halves = 2 if cfg.transposed else 1
    framed = cfg.framed and cfg.transposed
    f = 2 if framed else 0  # zero columns around each row of the cross axis
    lead = f // 2
    size = max(h * (w + f), w * (h + f))  # pixels of each half (the larger, transposed)
    x_plane_q = 1
    if layout == "planar":
        group = cfg.group
        planes = bp // group
        plane = size * group
        shape = (halves, planes, size, group)
        zero = framed or bp != b
        copies = _planar_copies(b, group, plane, (h, w), ((w + f) * group, group),
                                lead * group)
        if cfg.transposed:
            copies += _planar_copies(b, group, plane, (h, w), (group, (h + f) * group),
                                     planes * plane + lead * group)
        x_pix_q, x_b = group // vec, 1
        x_plane_q = size * x_pix_q
        x_half_q = planes * x_plane_q
    elif layout == "channels_last":
        shape = (halves, size, bp)
        zero = framed or bp != b
        copies = [((b, h, w), (1, (w + f) * bp, bp), lead * bp, 0, b)]
        if cfg.transposed:
            copies.append(((b, h, w), (1, bp, (h + f) * bp), size * bp + lead * bp, 0, b))
        x_pix_q, x_b, x_half_q = bp // vec, 1, size * bp // vec
    else:
        shape = (halves, b, size)
        zero = framed
        copies = [((b, h, w), (size, w + f, 1), lead, 0, b)]
        if cfg.transposed:
            copies.append(((b, h, w), (size, 1, h + f), b * size + lead, 0, b))
        x_pix_q, x_b, x_half_q = 1, size, b * size
    grid = (tiles, _cdiv(b, cfg.b_block))
    # Unordered, the kernel never reads order_ptr: any int32 tensor stands in.
    args = (tables["slope"], tables["icpt"], tables["step"], tables["kmin"], tables["kmax"],
            v, d, b, w, h, x_pix_q, x_b, x_half_q, x_plane_q, 1, v * d,
            order if ordered else tables["kmin"])
    kwargs = dict(VIEW_BLOCK=cfg.view_block, DET_BLOCK=cfg.det_block, GROUP=cfg.group,
                  GROUPS=cfg.groups, TRANSPOSED=cfg.transposed, VEC=vec, EVEN_B=even,
                  DTYPE=_accumulator(dtype), FRAMED=framed, PLANAR=layout == "planar",
                  PAIR_OFFSET=cfg.pair_offset, ORDERED=ordered, num_warps=cfg.num_warps,
                  **_forward_options(cfg))
    return PreparedLaunch(cfg, shape, zero, copies, kernel, grid, args, kwargs)


def adjoint_launch(kernels, b: int, dtype: torch.dtype, cfg, image: Tuple[int, int],
                   rays: Tuple[int, int], tables: dict,
                   counts: Callable[[int, int], torch.Tensor]) -> PreparedLaunch:
    """The back-projection of ``b`` sinograms ``rays = (V, D)`` to ``image = (H, W)``.

    ``kernels``: the module :mod:`~.triton_kernels` (the parallel-beam kernel or the generic
    one is chosen here); ``tables``: the backend's tables; ``counts(tile_h, tile_w)``: the
    candidate-count table of the generic kernel.
    """
    K = kernels
    h, w = image
    v, d = rays
    layout, vec, bp, even = _batch_layout(b, dtype, cfg)
    affine = (cfg.parallel_adjoint == "affine" and tables["parallel_affine"]
              and dtype != torch.float64)
    # v4: zero rays around every view for the parallel kernel's unmasked loads.
    frame = tables["parallel_frame"] if affine and cfg.adjoint_frame else 0
    row = d + 2 * frame  # rays per view in the copy
    y_plane_q = 1
    if layout == "planar":
        group = cfg.group
        planes = bp // group
        shape = (planes, v, row, group)
        zero = bp != b or frame > 0
        copies = _planar_copies(b, group, v * row * group, (v, d), (row * group, group),
                                frame * group)
        y_ray_q, y_b = group // vec, 1
        y_plane_q = v * row * y_ray_q
    elif layout == "channels_last":
        shape = (v, row, bp)
        zero = bp != b or frame > 0
        copies = [((b, v, d), (1, row * bp, bp), frame * bp, 0, b)]
        y_ray_q, y_b = bp // vec, 1
    else:
        if frame:
            shape, zero = (b, v, row), True
            copies = [((b, v, d), (v * row, row, 1), frame, 0, b)]
        else:
            shape, zero, copies = None, False, []  # the kernel reads the input as it is
        y_ray_q, y_b = 1, v * row
    grid = (_cdiv(h, cfg.tile_h) * _cdiv(w, cfg.tile_w), _cdiv(b, cfg.b_block))
    acc = _accumulator(dtype)
    if affine:
        pview, count = tables["parallel"]
        args = (pview, count, v, d, b, h, w, y_ray_q, y_b, y_plane_q, 1, h * w, frame)
        kwargs = dict(TILE_H=cfg.tile_h, TILE_W=cfg.tile_w, GROUP=cfg.group,
                      GROUPS=cfg.groups, VEC=vec, EVEN_B=even, DTYPE=acc,
                      PLANAR=layout == "planar", FRAMED=frame > 0, num_warps=cfg.num_warps)
        return PreparedLaunch(cfg, shape, zero, copies, K.joseph_adjoint_parallel_kernel, grid,
                              args, kwargs)
    from_table = cfg.adjoint_count == "table"
    count_table = counts(cfg.tile_h, cfg.tile_w) if from_table else tables["kmin"]
    per_tile = from_table and count_table.dim() == 2  # fan beam: (V, tiles); parallel: (V,)
    count_v_stride, count_t_stride = (count_table.shape[1], 1) if per_tile else (1, 0)
    args = (tables["slope"], tables["icpt"], tables["step"], tables["views"], count_table,
            count_v_stride, count_t_stride, v, d, b, h, w, y_ray_q, y_b, y_plane_q, 1, h * w,
            tables["det_scale"], tables["det_shift"], tables["sdd"])
    kwargs = dict(TILE_H=cfg.tile_h, TILE_W=cfg.tile_w, GROUP=cfg.group, GROUPS=cfg.groups,
                  GEOM=tables["geom"], PAD=K.CANDIDATE_PAD, VEC=vec, EVEN_B=even, DTYPE=acc,
                  COUNT_FROM_TABLE=from_table, PLANAR=layout == "planar",
                  CLAMPED=cfg.adjoint_frame, num_warps=cfg.num_warps)
    return PreparedLaunch(cfg, shape, zero, copies, K.joseph_adjoint_kernel, grid, args,
                          kwargs)
