"""Triton kernels of the Joseph projector pair (see :mod:`operators._joseph`).

Both kernels evaluate the coefficients of :func:`operators._joseph.joseph_coefficients` from the
same per-ray table, in float64, and cast each weight to the accumulation dtype as the reference
backend does, so the pair is matched to float32 rounding and agrees with the reference. Images
and sinograms may be stored in float32, float64, float16 or bfloat16; accumulation is float32
(float64 for float64) and the result is rounded once to the storage dtype.

``joseph_forward_kernel`` (ray-driven gather)
    One program owns a tile of ``VIEW_BLOCK x DET_BLOCK`` rays (neighbouring views and
    detectors, so that their samples hit the same cache lines) times ``GROUPS`` groups of
    ``GROUP`` images, one accumulator per group. It walks the steps ``k`` that any of its rays
    spends inside the grid, computes ``t = slope k + intercept`` once per ray and step, and
    gathers the two neighbouring pixels of every image of the batch tile. With the image stored
    channels-last ``(H, W, B)`` one gather reads ``GROUP`` contiguous values, whichever axis
    the ray steps over.

``joseph_adjoint_kernel`` (pixel-driven gather, no atomics, deterministic)
    One program owns a ``TILE_H x TILE_W`` block of pixels times the same batch tile. For each
    view it finds, per pixel, the contiguous detector interval of rays that can touch the pixel:
    a ray touches pixel ``(r, c)`` only if it passes through the diamond with vertices
    ``(r, c +- 1)``, ``(r +- 1, c)`` (a vertical ray crosses row ``r`` within ``(c - 1, c + 1)``,
    a horizontal ray crosses column ``c`` within ``(r - 1, r + 1)``), and the rays of one view
    through a convex set not containing the source form a contiguous detector interval (the
    projection of the diamond's vertices: affine in parallel beam, through the source in fan
    beam, flat or curved). Every candidate ray is then re-evaluated with the forward's float64
    ``t`` and dominant axis, so each pixel receives the weights the forward gave it.

Versions, launch heuristics and measured numbers: ``KERNELS.md``. Index arithmetic is int32:
callers keep every tensor below ``2**31`` elements (the backend splits the batch).
"""

from __future__ import annotations

import triton
import triton.language as tl

#: Slack (detector elements) added on both sides of each candidate interval: it only has to
#: exceed the float32 error of the interval ends; every candidate is checked exactly. Parallel
#: beam: the ends ``a_c c + a_r r + a_0 +- h`` are a few float32 roundings of numbers below
#: ~2 n_det, so their error is a few 1e-4 detectors up to ~2,000 detectors; at P512 (512x512,
#: 512 views, 725 detectors) every ray with a non-zero weight lies within 7.7e-5 detectors of
#: the unpadded float32 interval (checked at full size by
#: ``tests/operators/test_triton_backend.py``).
CANDIDATE_PAD = 0.02

#: Geometry codes of ``joseph_adjoint_kernel`` (``GEOM`` constexpr).
GEOM_PARALLEL, GEOM_FAN_FLAT, GEOM_FAN_CURVED = 0, 1, 2

#: Floats per view in the adjoint's view table (see ``TritonBackend._view_table``).
VIEW_PARAMS = 8


@triton.jit
def _batch_groups(pid_b, LANES: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr,
                  DTYPE: tl.constexpr):
    """Image indices of the program's 8 possible groups (only the first ``GROUPS`` are used;
    the others' values are never read) and their zeroed ``(LANES, GROUP)`` accumulators."""
    bs0 = pid_b * (GROUP * GROUPS) + tl.arange(0, GROUP)
    z = tl.zeros([LANES, GROUP], dtype=DTYPE)
    return (bs0, bs0 + GROUP, bs0 + 2 * GROUP, bs0 + 3 * GROUP, bs0 + 4 * GROUP,
            bs0 + 5 * GROUP, bs0 + 6 * GROUP, bs0 + 7 * GROUP, z, z, z, z, z, z, z, z)


@triton.jit
def _group_offsets(pid_b, bs0, b_stride, plane_q, GROUP: tl.constexpr, GROUPS: tl.constexpr,
                   VEC: tl.constexpr, PLANAR: tl.constexpr):
    """Element offsets ``(1, GROUP)`` of the program's 8 possible groups of images (``bs0``:
    the images of its first group) in the data buffer.

    Batch-innermost layouts (channels-last ``(pixels, B)`` or batch-major ``(B, pixels)``):
    image ``b`` at ``b b_stride``. ``PLANAR`` (v4): planes of ``GROUP`` images,
    ``(B / GROUP, pixels, GROUP)``; group ``g`` of the batch starts at ``g plane_q VEC`` (the
    plane stride is passed divided by ``VEC`` so that 16-byte alignment stays provable) and
    its images are contiguous.
    """
    if PLANAR:
        lanes = tl.arange(0, GROUP)[None, :]
        g0 = pid_b * GROUPS
        return ((g0 * plane_q * VEC) + lanes, ((g0 + 1) * plane_q * VEC) + lanes,
                ((g0 + 2) * plane_q * VEC) + lanes, ((g0 + 3) * plane_q * VEC) + lanes,
                ((g0 + 4) * plane_q * VEC) + lanes, ((g0 + 5) * plane_q * VEC) + lanes,
                ((g0 + 6) * plane_q * VEC) + lanes, ((g0 + 7) * plane_q * VEC) + lanes)
    o0 = (bs0 * b_stride)[None, :]
    g = GROUP * b_stride
    return (o0, o0 + g, o0 + 2 * g, o0 + 3 * g, o0 + 4 * g, o0 + 5 * g, o0 + 6 * g, o0 + 7 * g)


@triton.jit
def _gather_group_pair(row0, row1, d1, bs, b_off, ok0, ok1, n_batch, w0, w1, acc,
                       LANES: tl.constexpr, GROUP: tl.constexpr, EVEN_B: tl.constexpr,
                       UNMASKED: tl.constexpr, DTYPE: tl.constexpr):
    """``acc + w0 row0[b_off] + w1 row1[b_off + d1]`` for the images ``bs`` of one group
    (``row0``, ``row1``: each lane's pointers towards its two neighbours; ``b_off``: the
    group's offsets, :func:`_group_offsets`). With ``UNMASKED`` and ``EVEN_B`` every address
    is valid and the loads carry no mask."""
    if UNMASKED and EVEN_B:
        x0 = tl.load(row0 + b_off)
        x1 = tl.load(row1 + b_off + d1)
    else:
        x0 = tl.load(row0 + b_off, other=0.0,
                     mask=_group_masks(ok0, bs, n_batch, LANES, GROUP, EVEN_B))
        x1 = tl.load(row1 + b_off + d1, other=0.0,
                     mask=_group_masks(ok1, bs, n_batch, LANES, GROUP, EVEN_B))
    return acc + w0 * x0.to(DTYPE) + w1 * x1.to(DTYPE)


@triton.jit
def _gather_group_pairs(row0, row1, d1, ok0, ok1, n_batch, w0, w1,
                        bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                        of0, of1, of2, of3, of4, of5, of6, of7,
                        acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
                        LANES: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr,
                        EVEN_B: tl.constexpr, UNMASKED: tl.constexpr, DTYPE: tl.constexpr):
    """:func:`_gather_group_pair` for the first ``GROUPS`` (1, 2, 4 or 8) groups (the forward
    kernel's step); the other accumulators are returned as they are."""
    acc0 = _gather_group_pair(row0, row1, d1, bs0, of0, ok0, ok1, n_batch, w0, w1, acc0,
                              LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
    if GROUPS > 1:
        acc1 = _gather_group_pair(row0, row1, d1, bs1, of1, ok0, ok1, n_batch, w0, w1,
                                  acc1, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
    if GROUPS > 2:
        acc2 = _gather_group_pair(row0, row1, d1, bs2, of2, ok0, ok1, n_batch, w0, w1,
                                  acc2, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
        acc3 = _gather_group_pair(row0, row1, d1, bs3, of3, ok0, ok1, n_batch, w0, w1,
                                  acc3, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
    if GROUPS > 4:
        acc4 = _gather_group_pair(row0, row1, d1, bs4, of4, ok0, ok1, n_batch, w0, w1,
                                  acc4, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
        acc5 = _gather_group_pair(row0, row1, d1, bs5, of5, ok0, ok1, n_batch, w0, w1,
                                  acc5, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
        acc6 = _gather_group_pair(row0, row1, d1, bs6, of6, ok0, ok1, n_batch, w0, w1,
                                  acc6, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
        acc7 = _gather_group_pair(row0, row1, d1, bs7, of7, ok0, ok1, n_batch, w0, w1,
                                  acc7, LANES, GROUP, EVEN_B, UNMASKED, DTYPE)
    return acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7


@triton.jit
def _group_masks(ok, bs, n_batch, LANES: tl.constexpr, GROUP: tl.constexpr,
                 EVEN_B: tl.constexpr):
    """The ``(LANES, GROUP)`` load mask of one group: ``ok`` per lane, and the batch bound
    unless the padded batch fills every tile (then the loads stay unsplit vectors)."""
    if EVEN_B:
        return tl.broadcast_to(ok[:, None], [LANES, GROUP])
    return ok[:, None] & (bs < n_batch)[None, :]


@triton.jit
def joseph_forward_kernel(
        x_ptr, out_ptr, slope_ptr, icpt_ptr, step_ptr, kmin_ptr, kmax_ptr,
        n_views, n_det, n_batch, width, height,
        x_pix_q, x_b_stride, x_half_q, x_plane_q, out_ray_stride, out_b_stride, order_ptr,
        VIEW_BLOCK: tl.constexpr, DET_BLOCK: tl.constexpr, GROUP: tl.constexpr,
        GROUPS: tl.constexpr, TRANSPOSED: tl.constexpr, VEC: tl.constexpr,
        EVEN_B: tl.constexpr, DTYPE: tl.constexpr, FRAMED: tl.constexpr,
        PLANAR: tl.constexpr, PAIR_OFFSET: tl.constexpr, ORDERED: tl.constexpr):
    """``out[b, v, j] = sum_k w0 x[b, p0] + w1 x[b, p1]`` for a tile of rays and images.

    One program: ``VIEW_BLOCK x DET_BLOCK`` rays times ``GROUPS`` groups of ``GROUP`` images
    (``B_BLOCK = GROUPS GROUP``; ``GROUPS`` 1, 2, 4 or 8). Each group has its own accumulator
    ``(rays, GROUP)``: with ``GROUP`` one vector load wide (4 float32, 8 half) and 32
    ``num_warps`` rays per program, a thread owns one ray and computes its coefficients once
    for all its groups (v2); with one group of ``B_BLOCK`` images the compiler spreads a ray's
    images over several threads, each repeating the coefficient arithmetic (v1).

    Ray ``(v, j)`` has table index ``v * n_det + j``. ``step`` is signed: positive for rays that
    step over rows (vertical), negative for rays that step over columns. ``kmin, kmax`` bound
    the steps where ``t`` can fall in ``(-1, n_other)`` (a superset; exactness comes from the
    masks). Pixel ``p = r W + c`` of image ``b`` is at ``x_ptr + VEC p x_pix_q + b x_b_stride``
    (``PLANAR``: image ``b = g GROUP + l`` at ``x_ptr + VEC (p x_pix_q + g x_plane_q) + l``, see
    :func:`_group_offsets`). With ``TRANSPOSED`` the buffer also holds the transposed image at
    ``x_ptr + VEC x_half_q``, pixel ``c H + r``, and rays that step over columns read it, so
    that for every ray the two neighbours ``i0, i0 + 1`` and the neighbouring rays of the tile
    are adjacent in memory. Strides are passed divided by ``VEC`` (the channels-last batch is
    padded to a multiple of it) so that the compiler can prove 16-byte alignment and read
    ``VEC`` images per 128-bit load; ``EVEN_B`` (the padded batch is a multiple of ``B_BLOCK``)
    drops the batch mask from the loads, which would otherwise split them.

    ``FRAMED`` (v3, needs ``TRANSPOSED``): both halves carry a zero frame along the cross axis
    (rows of ``W + 2`` / ``H + 2`` pixels, pixel ``i`` at ``i + 1``). A sample whose
    neighbours ``i0, i0 + 1`` are not both outside the grid then reads two valid addresses,
    the others get zero weights and clamped addresses (step and cross index), so (with
    ``EVEN_B``) the loads need no mask, and no register zeroing for masked-off lanes. A zero
    weight times a non-finite pixel is NaN, so non-finite inputs can spread to other rays of
    the same tile; ``XRayTransform`` rejects them unless ``check_inputs=False``.

    ``PAIR_OFFSET`` (v5): each ray's pointer is formed once per step and its second neighbour
    read at a fixed distance from it (``x_pix_q VEC`` elements along the row: an immediate
    offset of the load where ``x_pix_q`` is the constant 1, as in the planar layout);
    otherwise (v1-v4) both addresses are computed as 32-bit indices. The same loads and sums
    either way.

    ``ORDERED`` (v6): program ``p`` of the ray axis computes tile ``order_ptr[p]`` instead of
    tile ``p``; the host orders the tiles by their step range, longest first, so that the
    short tiles end the grid and fill the last wave (:func:`~.triton_backend.tile_order`).
    Each tile computes the same values either way.
    """
    LANES: tl.constexpr = VIEW_BLOCK * DET_BLOCK
    if ORDERED:
        pid_r = tl.load(order_ptr + tl.program_id(0))
    else:
        pid_r = tl.program_id(0)
    pid_b = tl.program_id(1)
    det_tiles = tl.cdiv(n_det, DET_BLOCK)
    v0 = (pid_r // det_tiles) * VIEW_BLOCK
    j0 = (pid_r % det_tiles) * DET_BLOCK
    lane = tl.arange(0, LANES)
    v = v0 + lane // DET_BLOCK
    j = j0 + lane % DET_BLOCK
    rmask = (v < n_views) & (j < n_det)
    ray = v * n_det + j

    slope = tl.load(slope_ptr + ray, mask=rmask, other=0.0)
    icpt = tl.load(icpt_ptr + ray, mask=rmask, other=0.0)
    stepv = tl.load(step_ptr + ray, mask=rmask, other=0.0)
    kmin = tl.load(kmin_ptr + ray, mask=rmask, other=1 << 30)
    kmax = tl.load(kmax_ptr + ray, mask=rmask, other=0)
    vert = stepv > 0
    step = tl.abs(stepv)
    n_other = tl.where(vert, width, height)
    # Flat pixel index p = k * stride_k + i * stride_i (+ the transposed half).
    if TRANSPOSED:  # pixel (k, i) of the image (vertical rays) or of its transpose
        stride_k = n_other + 2 if FRAMED else n_other
        stride_i = 1
        half = (1 - vert.to(tl.int32)) * x_half_q + (x_pix_q if FRAMED else 0)  # + 1 pixel
    else:
        stride_k = tl.where(vert, width, 1)
        stride_i = tl.where(vert, 1, width)
        half = 0
    if not PAIR_OFFSET:
        d1 = 0
    elif TRANSPOSED:  # the next pixel of the same row: a constant where x_pix_q is one
        d1 = x_pix_q * VEC
    else:
        d1 = (stride_i * x_pix_q * VEC)[:, None]
    k_lo = tl.min(kmin, axis=0)
    k_hi = tl.max(kmax, axis=0)

    (bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
     acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) = _batch_groups(
        pid_b, LANES, GROUP, GROUPS, DTYPE)
    of0, of1, of2, of3, of4, of5, of6, of7 = _group_offsets(
        pid_b, bs0, x_b_stride, x_plane_q, GROUP, GROUPS, VEC, PLANAR)
    n_live = kmax - kmin
    last_step = tl.where(vert, height, width) - 1  # framed: steps past the ray's last are clamped
    if DTYPE != tl.float64:
        step32 = step.to(DTYPE)
    for k in range(k_lo, k_hi):
        t = slope * k + icpt
        f = tl.floor(t)
        frac = t - f
        i0 = f.to(tl.int32)
        # 0 <= x < n as one unsigned compare: live step, and each neighbour on the grid.
        live = (k - kmin).to(tl.uint32) < n_live
        if FRAMED:  # both neighbours in the framed row: i0 in [-1, n_other - 1]
            ok0 = live & ((i0 + 1).to(tl.uint32) <= n_other)
            ok1 = ok0
            # Every address valid: a tile's step range is the union of its rays' (rays of
            # both orientations can share a tile), so clamp the step as well as i0.
            i0 = tl.minimum(tl.maximum(i0, -1), n_other - 1)
            ka = tl.minimum(k, last_step)
        else:
            ok0 = live & (i0.to(tl.uint32) < n_other)
            ok1 = live & ((i0 + 1).to(tl.uint32) < n_other)
            ka = k
        if DTYPE == tl.float64:
            w0 = (1.0 - frac) * step
            w1 = frac * step
        else:  # the float64 fraction, then float32 (v3): within 2 ulp of the reference's weights
            frac32 = frac.to(DTYPE)
            w1 = frac32 * step32
            w0 = step32 - frac32 * step32
        if FRAMED:
            w0 = tl.where(ok0, w0, 0.0)
            w1 = tl.where(ok1, w1, 0.0)
        w0 = w0[:, None]
        w1 = w1[:, None]
        p0 = ka * stride_k + i0 * stride_i
        row0 = x_ptr + ((half + p0 * x_pix_q) * VEC)[:, None]
        if PAIR_OFFSET:  # v5: the second neighbour at a fixed distance from the first
            row1 = row0
        else:  # v1-v4: its address computed as the first's
            row1 = x_ptr + ((half + (p0 + stride_i) * x_pix_q) * VEC)[:, None]
        acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = _gather_group_pairs(
            row0, row1, d1, ok0, ok1, n_batch, w0, w1, bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
            of0, of1, of2, of3, of4, of5, of6, of7, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
            LANES, GROUP, GROUPS, EVEN_B, FRAMED, DTYPE)

    _store_groups(out_ptr, ray * out_ray_stride, rmask, out_b_stride, n_batch,
                  bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                  acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, GROUPS)


@triton.jit
def _store_group(out_ptr, lane_off, lane_mask, bs, b_stride, n_batch, acc):
    """Store one group's ``(lanes, GROUP)`` accumulator, rounded to the output dtype."""
    off = lane_off[:, None] + (bs * b_stride)[None, :]
    mask = lane_mask[:, None] & (bs < n_batch)[None, :]
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_groups(out_ptr, lane_off, lane_mask, b_stride, n_batch,
                  bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                  acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, GROUPS: tl.constexpr):
    """Store the first ``GROUPS`` (1, 2, 4 or 8) groups' accumulators."""
    _store_group(out_ptr, lane_off, lane_mask, bs0, b_stride, n_batch, acc0)
    if GROUPS > 1:
        _store_group(out_ptr, lane_off, lane_mask, bs1, b_stride, n_batch, acc1)
    if GROUPS > 2:
        _store_group(out_ptr, lane_off, lane_mask, bs2, b_stride, n_batch, acc2)
        _store_group(out_ptr, lane_off, lane_mask, bs3, b_stride, n_batch, acc3)
    if GROUPS > 4:
        _store_group(out_ptr, lane_off, lane_mask, bs4, b_stride, n_batch, acc4)
        _store_group(out_ptr, lane_off, lane_mask, bs5, b_stride, n_batch, acc5)
        _store_group(out_ptr, lane_off, lane_mask, bs6, b_stride, n_batch, acc6)
        _store_group(out_ptr, lane_off, lane_mask, bs7, b_stride, n_batch, acc7)


@triton.jit
def _pixel_tile(pid_p, height, width, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    """Row, column and in-image mask of the ``TILE_H x TILE_W`` pixels of program ``pid_p``
    (tiles in row-major order)."""
    tiles_w = tl.cdiv(width, TILE_W)
    lane = tl.arange(0, TILE_H * TILE_W)
    r = (pid_p // tiles_w) * TILE_H + lane // TILE_W
    c = (pid_p % tiles_w) * TILE_W + lane % TILE_W
    return r, c, (r < height) & (c < width)


@triton.jit
def _atan(z):
    """``atan(z)`` (float32, |error| < 1e-7 rad): three half-angle reductions and a series."""
    for _ in tl.static_range(3):
        z = z / (1.0 + tl.sqrt(1.0 + z * z))
    z2 = z * z
    # |z| < tan(pi / 16) = 0.199: the series to z^13 is exact to ~1e-11.
    p = 1.0 / 13.0
    p = p * z2 - 1.0 / 11.0
    p = p * z2 + 1.0 / 9.0
    p = p * z2 - 1.0 / 7.0
    p = p * z2 + 1.0 / 5.0
    p = p * z2 - 1.0 / 3.0
    p = p * z2 + 1.0
    return 8.0 * z * p


@triton.jit
def joseph_adjoint_kernel(
        y_ptr, out_ptr, slope_ptr, icpt_ptr, step_ptr, view_ptr,
        count_ptr, count_v_stride, count_t_stride,
        n_views, n_det, n_batch, height, width,
        y_ray_q, y_b_stride, y_plane_q, out_pix_stride, out_b_stride,
        det_scale, det_shift, sdd,
        TILE_H: tl.constexpr, TILE_W: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr,
        GEOM: tl.constexpr, PAD: tl.constexpr, VEC: tl.constexpr, EVEN_B: tl.constexpr,
        DTYPE: tl.constexpr, COUNT_FROM_TABLE: tl.constexpr, PLANAR: tl.constexpr,
        CLAMPED: tl.constexpr = False):
    """``out[b, p] = sum over rays of weight(ray, p) * y[b, ray]`` for a tile of pixels.

    One program: ``TILE_H x TILE_W`` pixels times ``GROUPS`` groups of ``GROUP`` images, one
    accumulator per group, as in :func:`joseph_forward_kernel` (v2: a thread owns a pixel and
    evaluates each candidate ray's coefficients once for all its groups).

    View table row ``v`` (``VIEW_PARAMS`` float32):

    * parallel: ``a_c, a_r, a_0, h``: the fractional detector index of pixel centre ``(r, c)``
      is ``a_c c + a_r r + a_0`` and the diamond spans ``+- h``;
    * fan: ``l_c, l_r, l_0, q_c, q_r, q_0``: distance along the central ray from the source,
      ``l = l_c c + l_r r + l_0``, and across it, ``q = q_c c + q_r r + q_0`` (mm); the fan
      angle is ``atan(q / l)``, the detector coordinate ``u = sdd tan(gamma)`` (flat) or
      ``sdd gamma`` (curved), the index ``u det_scale + det_shift``.

    Ray ``ray`` of image ``b`` is at ``y_ptr + VEC ray y_ray_q + b y_b_stride`` (``PLANAR``:
    image ``b = g GROUP + l`` at ``y_ptr + VEC (ray y_ray_q + g y_plane_q) + l``; ``VEC``,
    ``EVEN_B`` as in the forward kernel).

    Candidates per pixel and view: with ``COUNT_FROM_TABLE`` (v2, the default) the loop runs
    ``count[v * count_v_stride + tile * count_t_stride]`` times, an upper bound of every pixel's
    interval length precomputed on the host (per view in parallel beam, stride 0 over tiles;
    per view and tile in fan beam), so the loop bound is a scalar load; without it (v1) it is
    the maximum over the tile's pixels, a reduction across the program's warps in every view.
    Lanes past their own interval are masked either way, so both give the same sums.

    ``CLAMPED`` (v4): lanes past their interval read a valid ray (the candidate index clamped
    to the detector) and get weight zero instead of a masked load, so the loads need no mask
    (no zeroing of the registers of masked-off lanes: 4 moves per 128-bit load).
    """
    LANES: tl.constexpr = TILE_H * TILE_W
    pid_p = tl.program_id(0)
    r, c, pmask = _pixel_tile(pid_p, height, width, TILE_H, TILE_W)
    rf = r.to(tl.float32)
    cf = c.to(tl.float32)
    rd = r.to(tl.float64)
    cd = c.to(tl.float64)
    (bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
     acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) = _batch_groups(
        tl.program_id(1), LANES, GROUP, GROUPS, DTYPE)
    of0, of1, of2, of3, of4, of5, of6, of7 = _group_offsets(
        tl.program_id(1), bs0, y_b_stride, y_plane_q, GROUP, GROUPS, VEC, PLANAR)

    for v in range(0, n_views):
        row = view_ptr + v * 8
        p0 = tl.load(row)
        p1 = tl.load(row + 1)
        p2 = tl.load(row + 2)
        p3 = tl.load(row + 3)
        if GEOM == 0:
            centre = p0 * cf + p1 * rf + p2
            j_lo = centre - p3
            j_hi = centre + p3
            usable = pmask
        else:
            p4 = tl.load(row + 4)
            p5 = tl.load(row + 5)
            along = p0 * cf + p1 * rf + p2
            across = p3 * cf + p4 * rf + p5
            # Diamond vertices (c +- 1, r) and (c, r +- 1).
            ta = (across + p3) / (along + p0)
            tb = (across - p3) / (along - p0)
            tc = (across + p4) / (along + p1)
            td = (across - p4) / (along - p1)
            t_min = tl.minimum(tl.minimum(ta, tb), tl.minimum(tc, td))
            t_max = tl.maximum(tl.maximum(ta, tb), tl.maximum(tc, td))
            if GEOM == 2:
                u_min = sdd * _atan(t_min)
                u_max = sdd * _atan(t_max)
            else:
                u_min = sdd * t_min
                u_max = sdd * t_max
            j_lo = u_min * det_scale + det_shift
            j_hi = u_max * det_scale + det_shift
            # The source must be in front of the whole diamond; otherwise try every ray.
            front = (along - tl.abs(p0) - tl.abs(p1)) > 0
            j_lo = tl.where(front, j_lo, -1.0)
            j_hi = tl.where(front, j_hi, n_det * 1.0)
            usable = pmask
        j_first = tl.maximum(-tl.floor(PAD - j_lo), 0.0).to(tl.int32)  # ceil(j_lo - PAD)
        j_last = tl.minimum(tl.floor(j_hi + PAD), n_det - 1.0).to(tl.int32)
        j_last = tl.where(usable, j_last, j_first - 1)
        if COUNT_FROM_TABLE:
            count = tl.load(count_ptr + v * count_v_stride + pid_p * count_t_stride)
        else:
            count = tl.max(j_last - j_first + 1, axis=0)
        for cand in range(0, count):  # (not ``m``: the body's mask must not shadow it)
            j = j_first + cand
            ok = j <= j_last
            if CLAMPED:  # a valid ray for every lane; the weight of the others is zeroed below
                ray = v * n_det + tl.minimum(tl.maximum(j, 0), n_det - 1)
                slope = tl.load(slope_ptr + ray)
                icpt = tl.load(icpt_ptr + ray)
                stepv = tl.load(step_ptr + ray)
            else:
                ray = v * n_det + j
                slope = tl.load(slope_ptr + ray, mask=ok, other=0.0)
                icpt = tl.load(icpt_ptr + ray, mask=ok, other=0.0)
                stepv = tl.load(step_ptr + ray, mask=ok, other=0.0)
            vert = stepv > 0
            step = tl.abs(stepv)
            kk = tl.where(vert, rd, cd)
            other = tl.where(vert, cd, rd)
            # Joseph's two weights as one tent, (1 - |t - other|) step: with i0 = floor(t),
            # (1 - frac) step when i0 = other, frac step when i0 + 1 = other (both
            # subtractions are exact there, so the weights are the reference's bit for bit
            # except when t is within an ulp of 0 or 1), and <= 0 otherwise.
            t = slope * kk + icpt
            w = (1.0 - tl.abs(t - other)) * step
            hit = ok & (w > 0.0)
            w = tl.where(hit, w, 0.0).to(DTYPE)[:, None]
            base = (ray * y_ray_q * VEC)[:, None]
            acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = _gather_groups(
                y_ptr, base, hit, w, n_batch, bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                of0, of1, of2, of3, of4, of5, of6, of7,
                acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
                LANES, GROUP, GROUPS, EVEN_B, DTYPE, CLAMPED)

    pix = r * width + c
    _store_groups(out_ptr, pix * out_pix_stride, pmask, out_b_stride, n_batch,
                  bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                  acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, GROUPS)


@triton.jit
def _gather_one(y_ptr, base, b_off, mask, w, acc, DTYPE: tl.constexpr,
                UNMASKED: tl.constexpr = False):
    """``acc + w y[base + b_off]`` for one group of images (``UNMASKED``: every address is
    valid, no mask)."""
    if UNMASKED:
        yv = tl.load(y_ptr + base + b_off)
    else:
        yv = tl.load(y_ptr + base + b_off, mask=mask, other=0.0)
    return acc + w * yv.to(DTYPE)


@triton.jit
def _gather_groups(y_ptr, base, hit, w, n_batch, bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                   of0, of1, of2, of3, of4, of5, of6, of7,
                   acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
                   LANES: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr,
                   EVEN_B: tl.constexpr, DTYPE: tl.constexpr, UNMASKED: tl.constexpr = False):
    """``acc_g + w y[base + of_g]`` for the images ``bs_g`` of the first ``GROUPS`` (1, 2, 4 or
    8) groups (the adjoint kernels' candidate step; ``of_g``: :func:`_group_offsets`); lanes
    without ``hit`` read nothing. ``UNMASKED`` (every lane's address valid) with ``EVEN_B``:
    loads without masks. The other accumulators are returned as they are."""
    NOMASK: tl.constexpr = UNMASKED and EVEN_B
    acc0 = _gather_one(y_ptr, base, of0, _group_masks(hit, bs0, n_batch, LANES, GROUP, EVEN_B),
                       w, acc0, DTYPE, NOMASK)
    if GROUPS > 1:
        acc1 = _gather_one(y_ptr, base, of1,
                           _group_masks(hit, bs1, n_batch, LANES, GROUP, EVEN_B), w, acc1,
                           DTYPE, NOMASK)
    if GROUPS > 2:
        acc2 = _gather_one(y_ptr, base, of2,
                           _group_masks(hit, bs2, n_batch, LANES, GROUP, EVEN_B), w, acc2,
                           DTYPE, NOMASK)
        acc3 = _gather_one(y_ptr, base, of3,
                           _group_masks(hit, bs3, n_batch, LANES, GROUP, EVEN_B), w, acc3,
                           DTYPE, NOMASK)
    if GROUPS > 4:
        acc4 = _gather_one(y_ptr, base, of4,
                           _group_masks(hit, bs4, n_batch, LANES, GROUP, EVEN_B), w, acc4,
                           DTYPE, NOMASK)
        acc5 = _gather_one(y_ptr, base, of5,
                           _group_masks(hit, bs5, n_batch, LANES, GROUP, EVEN_B), w, acc5,
                           DTYPE, NOMASK)
        acc6 = _gather_one(y_ptr, base, of6,
                           _group_masks(hit, bs6, n_batch, LANES, GROUP, EVEN_B), w, acc6,
                           DTYPE, NOMASK)
        acc7 = _gather_one(y_ptr, base, of7,
                           _group_masks(hit, bs7, n_batch, LANES, GROUP, EVEN_B), w, acc7,
                           DTYPE, NOMASK)
    return acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7


#: Float64 values per view in the table of :func:`joseph_adjoint_parallel_kernel`.
PARALLEL_VIEW_PARAMS = 6


@triton.jit
def joseph_adjoint_parallel_kernel(
        y_ptr, out_ptr, pview_ptr, count_ptr,
        n_views, n_det, n_batch, height, width,
        y_ray_q, y_b_stride, y_plane_q, out_pix_stride, out_b_stride, frame,
        TILE_H: tl.constexpr, TILE_W: tl.constexpr, GROUP: tl.constexpr, GROUPS: tl.constexpr,
        VEC: tl.constexpr, EVEN_B: tl.constexpr, DTYPE: tl.constexpr, PLANAR: tl.constexpr,
        FRAMED: tl.constexpr):
    """The adjoint for parallel beams (v3): the same Joseph weights, with no per-ray table.

    In a parallel view every ray has the same slope, step and dominant axis, and the intercept
    is affine in the detector index: ``t_j(k) = slope k + icpt_0 + j delta``. Pixel ``(r, c)``
    (step ``k`` and cross index ``i``: ``(r, c)`` for rows-stepping views, ``(c, r)`` otherwise)
    receives ``(1 - |t_j(k) - i|) step`` from every ray ``j`` with ``|t_j(k) - i| < 1``, i.e.
    ``|j - j*| < 1 / |delta|`` around ``j* = (i - slope k - icpt_0) / delta``, which is affine
    in ``(r, c)``: ``j* = a_c c + a_r r + a_0``. Per pixel and view: ``j*`` in float64, split
    into ``floor(j*)`` and a float32 fraction ``phi``; per candidate ``j = floor(j*) + m``:
    ``t_j - i = (m - phi) delta`` in float32, so the weights equal the forward's to float32
    rounding (a few 1e-8 relative) and the loop needs no table load and no float64. ``count[v]``
    candidates per view (``ceil(2 / |delta|)``).

    ``FRAMED`` (v4): every view of the sinogram carries ``frame`` >= ``max(count)`` zero rays
    on both sides (rows of ``n_det + 2 frame``, ray ``j`` at ``j + frame``). The first
    candidate ``j_first = floor(j*) + m_lo`` is clamped to ``[-frame, n_det]``: that moves only
    pixels whose ``count`` candidates all miss the detector, which then read zeros of the
    frame, and every other candidate lies within ``count - 1`` rays of the detector; so every
    address is valid, the reads off the detector are zeros, and the loads need no mask. The weight is then
    ``max(0, (1 - |u|) step)`` with ``u = (m_lo - phi) delta`` for the first candidate and
    ``u += delta`` for the next: per candidate one addition, no integer-to-float conversion and
    no compare (within a few float32 ulp of the unframed weight: at most ``count`` additions).

    View table row ``v`` (``PARALLEL_VIEW_PARAMS`` float64, ``parallel_view_table``): ``a_c,
    a_r, a_0`` (``j* = a_c c + a_r r + a_0``), ``delta, step, 1/|delta|``. Data layout,
    ``VEC``, ``EVEN_B`` and the groups as in :func:`joseph_adjoint_kernel`.
    """
    LANES: tl.constexpr = TILE_H * TILE_W
    pid_p = tl.program_id(0)
    r, c, pmask = _pixel_tile(pid_p, height, width, TILE_H, TILE_W)
    rd = r.to(tl.float64)
    cd = c.to(tl.float64)
    (bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
     acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) = _batch_groups(
        tl.program_id(1), LANES, GROUP, GROUPS, DTYPE)
    of0, of1, of2, of3, of4, of5, of6, of7 = _group_offsets(
        tl.program_id(1), bs0, y_b_stride, y_plane_q, GROUP, GROUPS, VEC, PLANAR)
    for v in range(0, n_views):
        row = pview_ptr + v * 6
        a_c = tl.load(row)
        a_r = tl.load(row + 1)
        a_0 = tl.load(row + 2)
        delta = tl.load(row + 3).to(tl.float32)
        # Pixels outside the image get step 0, hence no weight: one test less per candidate.
        step = tl.where(pmask, tl.load(row + 4).to(tl.float32), 0.0)
        reach = tl.load(row + 5).to(tl.float32)
        jstar = a_c * cd + (a_r * rd + a_0)
        jfloor = tl.floor(jstar)
        phi = (jstar - jfloor).to(tl.float32)
        j0 = jfloor.to(tl.int32)
        m_lo = tl.floor(phi - reach).to(tl.int32) + 1
        count = tl.load(count_ptr + v)
        if FRAMED:
            # The clamp moves only pixels whose candidates all miss the detector (count <=
            # frame); they then read zeros of the frame.
            j_first = tl.minimum(tl.maximum(j0 + m_lo, -frame), n_det)
            u = (m_lo.to(tl.float32) - phi) * delta  # t - i of the first candidate
            ray0 = v * (n_det + 2 * frame) + frame + j_first
            for cand in range(0, count):
                w = tl.maximum((1.0 - tl.abs(u)) * step, 0.0).to(DTYPE)[:, None]
                base = ((ray0 + cand) * y_ray_q * VEC)[:, None]
                acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = _gather_groups(
                    y_ptr, base, pmask | True, w, n_batch, bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                    of0, of1, of2, of3, of4, of5, of6, of7,
                    acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
                    LANES, GROUP, GROUPS, EVEN_B, DTYPE, True)
                u += delta
        else:
            ray0 = v * n_det + j0
            for cand in range(0, count):
                m = m_lo + cand
                w = (1.0 - tl.abs((m.to(tl.float32) - phi) * delta)) * step
                j = j0 + m
                hit = (w > 0.0) & (j.to(tl.uint32) < n_det)  # 0 <= j < n_det
                w = tl.where(hit, w, 0.0).to(DTYPE)[:, None]
                base = ((ray0 + m) * y_ray_q * VEC)[:, None]
                acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = _gather_groups(
                    y_ptr, base, hit, w, n_batch, bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                    of0, of1, of2, of3, of4, of5, of6, of7,
                    acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7,
                    LANES, GROUP, GROUPS, EVEN_B, DTYPE)

    pix = r * width + c
    _store_groups(out_ptr, pix * out_pix_stride, pmask, out_b_stride, n_batch,
                  bs0, bs1, bs2, bs3, bs4, bs5, bs6, bs7,
                  acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, GROUPS)
