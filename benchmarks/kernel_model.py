"""A cost model of the Triton kernels, without a GPU: issue, L1 and L2 work per call.

For one benchmark case and one ``KernelConfig``, emulate in numpy what every warp of the
launch does (the tiles, loop ranges, masks and addresses of
``operators/backends/triton_kernels.py``) and count:

* **warp instructions**: loop iterations x the instructions of the loop bodies compiled for
  sm_90 (``benchmarks/kernel_static.py``: the innermost loop, plus in the adjoint the per-view
  work around it), times the warps of each program;
* **L1 sectors**: for every warp-wide gather instruction, the distinct 32-byte sectors its
  active lanes touch (what the L1 has to deliver; a request that touches many sectors takes
  several cycles);
* **L2 sectors**: per program and loop iteration, the distinct sectors of all its gathers (a
  lower bound of the L1 misses: no reuse across iterations or programs is assumed, which is
  close for the forward, whose consecutive steps read other rows, and pessimistic for the
  adjoint, whose neighbouring programs read the same sinogram rows).

Each count becomes a time at the card's rate (H200 / H100: 132 SMs; 4 warp instructions, 4
L1 sectors of 32 bytes per SM and clock; ``--l2-tbs`` for L2 -> SM) and the bound is the
largest. v1's measured times (``KERNELS.md``) calibrate how far the kernels stay from their
bound; the same factor then turns the bound of a new version into a prediction.

Usage::

    python benchmarks/kernel_model.py                    # every case, v1 / v3 / v4
    python benchmarks/kernel_model.py --cases P256 --configs v4,v4x8   # 4 or 8 planes

Thread-to-data mapping (Triton's blocked layout of a ``(lanes, GROUP)`` tile with ``vec``
images per thread): one warp-wide load covers ``32 vec / GROUP`` consecutive lanes (rays or
pixels) times the ``GROUP`` images of one group; lanes are ``view * DET_BLOCK + detector``
(forward) and ``row * TILE_W + column`` (adjoint) within a program.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

import operators as op  # noqa: E402
from gpu_bench import FULL_CASES, Case  # noqa: E402
from operators.backends.triton_backend import (KernelConfig, _padded_batch,  # noqa: E402
                                               _step_ranges, _vector_width, _view_table,
                                               candidate_counts, parallel_view_table)

SECTOR = 32  # bytes


#: v1's measured forward / adjoint times (H200, ms; KERNELS.md "v1 measured").
V1_MEASURED_MS = {"P256": (0.557, 1.062), "P512": (1.093, 1.750), "P128s": (0.220, 0.234),
                  "F256": (0.629, 2.127), "M512": (2.975, 9.185)}
#: The cases of ``benchmarks/gpu_bench.py`` with v1's measured times.
CASES = {c.name: (c, V1_MEASURED_MS[c.name]) for c in FULL_CASES}


def configs(batch: int):
    """The versions the model compares: name -> KernelConfig ("v4x8": v4 with 8 planes of 4
    images per thread, where the batch has 32 or more; "v4" and "v5" differ in the forward's
    pair addressing only, which changes its instructions, not its loads)."""
    planar = KernelConfig.planar(batch)
    out = {"v1": KernelConfig.v1(batch), "v3": KernelConfig.v3(batch),
           "v4": planar.replace(pair_offset=False), "v5": planar.replace(pair_offset=True)}
    if batch >= 32:
        out["v4x8"] = KernelConfig(**{**out["v4"].as_dict(), "b_block": 8 * out["v4"].group})
    return out


# --------------------------------------------------------------------------------------------
# address emulation
# --------------------------------------------------------------------------------------------
def _layout(cfg: KernelConfig, batch: int, dtype, pixels: int):
    """(bytes between consecutive pixels / rays, bytes between planes)."""
    esize = torch.finfo(dtype).bits // 8
    if cfg.layout == "planar":
        return cfg.group * esize, pixels * cfg.group * esize
    return _padded_batch(batch, cfg.b_block, _vector_width(dtype)) * esize, 0


def _start(cfg: KernelConfig, group: int, index, stride_bytes: int, plane_bytes: int,
           esize: int):
    """Byte offset of group ``group``'s images of pixel / ray ``index`` in the copy."""
    if cfg.layout == "planar":
        return group * plane_bytes + index * stride_bytes
    return index * stride_bytes + group * cfg.group * esize


def _lanes_per_request(cfg: KernelConfig, vec: int) -> int:
    return max(1, min(32, 32 * vec // cfg.group))


def _distinct(sec: np.ndarray) -> np.ndarray:
    """Distinct non-negative values along the last axis."""
    sec = np.sort(sec, axis=-1)
    return ((np.diff(sec, axis=-1) != 0) & (sec[..., 1:] >= 0)).sum(-1) + (sec[..., 0] >= 0)


def _sectors(loads, nbytes: int, lanes: int):
    """``loads``: the gathers of one loop iteration, ``(start_bytes, active)`` pairs of
    ``(P, LANES)`` arrays (each active lane reads ``nbytes`` from its start). Returns the
    distinct sectors per warp-wide request, summed over requests (L1), and per program (rows)
    the distinct sectors over all the iteration's gathers, summed (L2)."""
    spans = nbytes // SECTOR + (1 if nbytes % SECTOR else 0)
    l1, secs = 0, []
    for start, active in loads:
        p, n = start.shape
        sec = start[..., None] // SECTOR + np.arange(spans)  # (P, LANES, spans)
        sec = np.where(active[..., None], sec, -1)
        l1 += int(_distinct(sec.reshape(p, n // lanes, lanes * spans)).sum())
        secs.append(sec.reshape(p, -1))
    return l1, int(_distinct(np.concatenate(secs, axis=1)).sum())


def forward_counts(case: Case, cfg: KernelConfig, dtype=torch.float32):
    """Loop iterations per program, L1 sectors and L2 sectors of one forward call."""
    grid, geom = case.grid(), case.geometry()
    h, w = grid.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table
    v, d = geom.sinogram_shape
    t = table.to(torch.float64).reshape(4, v * d)
    slope, icpt, vert = t[0], t[1], t[3] > 0.5
    kmin, kmax = (a.numpy() for a in _step_ranges(slope, icpt, vert, grid))
    slope, icpt, vert = slope.numpy(), icpt.numpy(), vert.numpy()
    vb, db = cfg.view_block, cfg.det_block
    vt, dt_ = -(-v // vb), -(-d // db)
    lane = np.arange(vb * db)
    vv = (np.arange(vt)[:, None, None] * vb + lane // db).repeat(dt_, 1)  # (vt, dt, L)
    jj = np.arange(dt_)[None, :, None] * db + lane % db
    vv, jj = np.broadcast_arrays(vv, jj)
    vv, jj = vv.reshape(vt * dt_, -1), jj.reshape(vt * dt_, -1)
    rmask = (vv < v) & (jj < d)
    ray = np.where(rmask, vv * d + jj, 0)
    sl = np.where(rmask, slope[ray], 0.0)
    ic = np.where(rmask, icpt[ray], 0.0)
    ve = np.where(rmask, vert[ray], False)
    km = np.where(rmask, kmin[ray], 1 << 30)
    kx = np.where(rmask, kmax[ray], 0)
    k_lo, k_hi = km.min(1), kx.max(1)
    framed = cfg.framed and cfg.transposed
    f = 2 if framed else 0
    n_other = np.where(ve, w, h)
    last = np.where(ve, h, w) - 1
    size = max(h * (w + f), w * (h + f))
    esize = torch.finfo(dtype).bits // 8
    vec = min(_vector_width(dtype), cfg.group) if cfg.layout == "planar" else _vector_width(
        dtype)
    pix_bytes, plane_bytes = _layout(cfg, case.batch, dtype, size)
    lanes = _lanes_per_request(cfg, vec)
    half = np.where(ve, 0, size)  # rays stepping over columns read the transposed half
    iters = (k_hi - k_lo).clip(min=0)
    l1 = l2 = 0
    for k in range(int(k_lo.min()), int(k_hi.max())):
        inside = (k >= k_lo) & (k < k_hi)  # programs whose loop runs this step
        if not inside.any():
            continue
        tt = sl[inside] * k + ic[inside]
        i0 = np.floor(tt).astype(np.int64)
        live = (k >= km[inside]) & (k < kx[inside])
        no = n_other[inside]
        if framed:
            i0c = np.clip(i0, -1, no - 1)
            ka = np.minimum(k, last[inside])
            p0 = half[inside] + ka * (no + 2) + i0c + 1
            loads = [(p0, np.ones_like(live)), (p0 + 1, np.ones_like(live))]
        else:
            p0 = half[inside] + k * no + i0
            ok0 = live & (i0 >= 0) & (i0 < no)
            ok1 = live & (i0 + 1 >= 0) & (i0 + 1 < no)
            loads = [(p0, ok0), (p0 + 1, ok1)]
        gathers = [(_start(cfg, q, pix, pix_bytes, plane_bytes, esize), act)
                   for q in range(cfg.groups) for pix, act in loads]
        a, b = _sectors(gathers, cfg.group * esize, lanes)
        l1 += a
        l2 += b
    b_tiles = -(-case.batch // cfg.b_block)
    return dict(iterations=int(iters.sum()) * b_tiles, outer=0, programs=len(iters) * b_tiles,
                l1=l1 * b_tiles, l2=l2 * b_tiles)


def adjoint_counts(case: Case, cfg: KernelConfig, dtype=torch.float32):
    """Candidate-loop iterations, view-loop iterations, L1 and L2 sectors of one adjoint call
    (the parallel-beam kernel for parallel geometries with ``parallel_adjoint="affine"``, else
    the generic kernel with its candidate interval and count)."""
    from operators.backends.triton_kernels import CANDIDATE_PAD
    grid, geom = case.grid(), case.geometry()
    h, w = grid.shape
    v, d = geom.sinogram_shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table
    th, tw = cfg.tile_h, cfg.tile_w
    ty, tx = -(-h // th), -(-w // tw)
    lane = np.arange(th * tw)
    r = (np.arange(ty)[:, None, None] * th + lane // tw).repeat(tx, 1).reshape(ty * tx, -1)
    c = (np.arange(tx)[None, :, None] * tw + lane % tw).repeat(ty, 0).reshape(ty * tx, -1)
    pmask = (r < h) & (c < w)
    esize = torch.finfo(dtype).bits // 8
    vec = min(_vector_width(dtype), cfg.group) if cfg.layout == "planar" else _vector_width(
        dtype)
    affine = (cfg.parallel_adjoint == "affine" and isinstance(geom, op.ParallelGeometry))
    frame = int(parallel_view_table(table)[1].max()) if affine and cfg.adjoint_frame else 0
    row = d + 2 * frame  # rays per view in the copy
    ray_bytes, plane_bytes = _layout(cfg, case.batch, dtype, v * row)
    lanes = _lanes_per_request(cfg, vec)
    l1 = l2 = iters = 0
    if affine:
        pview, count = (a.numpy() for a in parallel_view_table(table))
    else:
        slope, icpt, step, vert = table.to(torch.float64).reshape(4, v * d).numpy()
        views, code, det_scale, det_shift, sdd = _view_table(grid, geom)
        views = views.astype(np.float64)
        if cfg.adjoint_count == "table":
            counts = candidate_counts(grid, geom, th, tw, CANDIDATE_PAD).numpy()
    rd, cd = r.astype(np.float64), c.astype(np.float64)
    for vi in range(v):
        if affine:
            a_c, a_r, a_0, delta, _, reach = pview[vi]
            jstar = a_c * cd + a_r * rd + a_0
            j0 = np.floor(jstar)
            phi = jstar - j0
            m_lo = np.floor(phi - reach).astype(np.int64) + 1
            n_cand = int(count[vi])
            cands = []
            j_first = j0.astype(np.int64) + m_lo
            for cand in range(n_cand):
                if frame:  # v4: unmasked loads, clamped start (addresses in the framed rows)
                    j = np.clip(j_first, -frame, d) + cand
                    cands.append((j, np.ones_like(pmask)))
                    continue
                m = m_lo + cand
                wgt = 1.0 - np.abs((m - phi) * delta)
                j = j0.astype(np.int64) + m
                cands.append((j, pmask & (wgt > 0) & (j >= 0) & (j < d)))
            n_iter = np.full(len(r), n_cand)
        else:
            p = views[vi]
            if code == 0:
                centre = p[0] * cd + p[1] * rd + p[2]
                j_lo, j_hi = centre - p[3], centre + p[3]
            else:
                along = p[0] * cd + p[1] * rd + p[2]
                across = p[3] * cd + p[4] * rd + p[5]
                tans = np.stack([(across + p[3]) / (along + p[0]),
                                 (across - p[3]) / (along - p[0]),
                                 (across + p[4]) / (along + p[1]),
                                 (across - p[4]) / (along - p[1])])
                t_min, t_max = tans.min(0), tans.max(0)
                if code == 2:
                    t_min, t_max = np.arctan(t_min), np.arctan(t_max)
                j_lo = sdd * t_min * det_scale + det_shift
                j_hi = sdd * t_max * det_scale + det_shift
            j_first = np.maximum(np.ceil(j_lo - CANDIDATE_PAD), 0).astype(np.int64)
            j_last = np.minimum(np.floor(j_hi + CANDIDATE_PAD), d - 1).astype(np.int64)
            j_last = np.where(pmask, j_last, j_first - 1)
            if cfg.adjoint_count == "table":
                n_iter = (counts[vi] if counts.ndim == 1 else counts[vi]).astype(np.int64)
                n_iter = np.broadcast_to(n_iter, (len(r),))
            else:
                n_iter = (j_last - j_first + 1).max(1).clip(min=0)
            cands = []
            for cand in range(int(n_iter.max())):
                j = j_first + cand
                ok = (j <= j_last) & (cand < n_iter[:, None])
                rayi = np.clip(vi * d + j, 0, v * d - 1)
                vt_ = vert[rayi] > 0.5
                kk = np.where(vt_, rd, cd)
                other = np.where(vt_, cd, rd)
                tt = slope[rayi] * kk + icpt[rayi]
                wgt = (1.0 - np.abs(tt - other)) * step[rayi]
                cands.append((j, ok & (wgt > 0)))
        iters += int(n_iter.sum())
        for j, hit in cands:  # one candidate iteration: L2 counted per candidate
            gathers = [(_start(cfg, q, vi * row + frame + j, ray_bytes, plane_bytes, esize), hit)
                       for q in range(cfg.groups)]
            a, b = _sectors(gathers, cfg.group * esize, lanes)
            l1 += a
            l2 += b
    b_tiles = -(-case.batch // cfg.b_block)
    return dict(iterations=iters * b_tiles, outer=len(r) * v * b_tiles,
                programs=len(r) * b_tiles, l1=l1 * b_tiles, l2=l2 * b_tiles, frame=frame)


# --------------------------------------------------------------------------------------------
# instructions and times
# --------------------------------------------------------------------------------------------
def instructions(version: str, cfg: KernelConfig, geom_code: int, dtype=torch.float32):
    """(forward loop, adjoint candidate loop, adjoint per-view work) instructions per thread
    and iteration, compiled for sm_90; v1 from the source that ran on the H200."""
    import kernel_static as ks
    if version == "v1":
        fwd, adj, _ = ks.v1_as_run_kernels(cfg.b_block if cfg.b_block > 1 else 1,
                                           geom_code=geom_code)
    else:
        fwd, adj = ks.forward_kernel(cfg, dtype), ks.adjoint_kernel(cfg, dtype, geom_code)
    rf, ra = ks.report(fwd, 1.0), ks.report(adj, 1.0)
    return rf["loop instr"], ra["loop instr"], ra["outer instr"]


@dataclass
class Card:
    name: str = "H200"
    sms: int = 132
    ghz: float = 1.98
    l2_tbs: float = 5.5   # L2 -> SM bandwidth (TB/s)
    hbm_tbs: float = 4.1  # measured copy bandwidth (TB/s)

    @property
    def sm_clocks(self) -> float:
        return self.sms * self.ghz * 1e9


def copy_seconds(case: Case, cfg: KernelConfig, direction: str, card: Card,
                 dtype=torch.float32, frame: int = 0) -> float:
    """HBM time of the layout copies and the output write (bytes / copy bandwidth); ``frame``:
    zero rays on each side of every view of the adjoint's copy (``adjoint_counts``)."""
    e = torch.finfo(dtype).bits // 8
    n, b = case.n, case.batch
    if cfg.layout == "planar":
        bp = _padded_batch(b, cfg.b_block, cfg.group)
    else:
        bp = _padded_batch(b, cfg.b_block, _vector_width(dtype))
    img, sino = n * n * e, case.views * case.dets * e
    if direction == "forward":
        f = 2 if cfg.framed and cfg.transposed else 0
        halves = 2 if cfg.transposed else 1
        buf = halves * n * (n + f) * e * bp
        zero = buf if (f or bp != b) else 0
        return (b * img + buf + zero + b * sino) / (card.hbm_tbs * 1e12)
    buf = (sino + 2 * frame * case.views * e) * bp
    zero = buf if (bp != b or frame) else 0
    return (b * sino + buf + zero + b * img) / (card.hbm_tbs * 1e12)


def model(case: Case, version: str, cfg: KernelConfig, card: Card, dtype=torch.float32):
    """Per direction: counts, the three bounds (s) and the copy time (s)."""
    geom_code = (0 if not case.fan else 1)
    loop_f, loop_a, outer_a = instructions(version, cfg, geom_code, dtype)
    out = {}
    for direction, counts in (("forward", forward_counts(case, cfg, dtype)),
                              ("adjoint", adjoint_counts(case, cfg, dtype))):
        loop = loop_f if direction == "forward" else loop_a
        outer = 0 if direction == "forward" else outer_a
        warp_instr = (counts["iterations"] * loop + counts["outer"] * outer) * cfg.num_warps
        bounds = dict(t_issue=warp_instr / (4 * card.sm_clocks),
                      t_l1=counts["l1"] / (4 * card.sm_clocks),
                      t_l2=counts["l2"] * SECTOR / (card.l2_tbs * 1e12))
        out[direction] = dict(counts, warp_instr=warp_instr, **bounds,
                              warps_per_sm=counts["programs"] * cfg.num_warps / card.sms,
                              bound=max(bounds.values()),
                              limiter=max(bounds, key=bounds.get)[2:],
                              copy=copy_seconds(case, cfg, direction, card, dtype,
                                                counts.get("frame", 0)))
    return out


#: Every version :func:`configs` knows ("v4x8" only where the batch has 32 or more images).
VERSIONS = ("v1", "v3", "v4", "v5", "v4x8")


def _names(valid, what):
    """An argparse ``type``: a comma-separated list of names from ``valid``."""
    def parse(text: str) -> list:
        names = [n for n in text.split(",") if n]
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))} (choose from {', '.join(valid)})")
        if not names:
            raise argparse.ArgumentTypeError(f"no {what} given (choose from {', '.join(valid)})")
        return names
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=_names(list(CASES), "case"), default=",".join(CASES),
                   help="comma-separated case names")
    p.add_argument("--configs", type=_names(VERSIONS, "version"), default="v1,v3,v4",
                   help="comma-separated versions")
    p.add_argument("--l2-tbs", type=_positive_float, default=Card.l2_tbs,
                   help="L2 -> SM bandwidth, TB/s")
    args = p.parse_args(argv)
    names, versions = args.cases, args.configs
    if not any(v in configs(CASES[n][0].batch) for n in names for v in versions):
        p.error(f"argument --configs: {','.join(versions)} applies to none of the cases "
                f"{','.join(names)} (v4x8 needs a batch of 32 or more)")
    from _triton_check import require_triton
    require_triton("kernel_model.py", nvidia=True)  # the loop bodies are compiled for sm_90
    card = Card(l2_tbs=args.l2_tbs)
    rows, ratios = [], {"forward": [], "adjoint": []}
    for name in names:
        case, measured = CASES[name]
        for version in versions:
            if version not in configs(case.batch):
                continue
            cfg = configs(case.batch)[version]
            m = model(case, version, cfg, card)
            for direction, meas in zip(("forward", "adjoint"), measured):
                r = m[direction]
                if version == "v1":
                    ratios[direction].append((meas * 1e-3 - r["copy"]) / r["bound"])
                rows.append((name, version, direction, r, meas if version == "v1" else None))
    fit = {d: (float(np.median(v)), min(v), max(v)) if v else None for d, v in ratios.items()}
    print(f"Cost model, {card.name} ({card.sms} SMs, {card.ghz} GHz; L2 {card.l2_tbs} TB/s, "
          f"HBM {card.hbm_tbs} TB/s). Times in ms.\n")
    print("| case | version | direction | warps / SM | warp instr (M) | L1 sectors (M) | L2 MB "
          "| issue | L1 | L2 | copies | bound | measured | measured-copies / bound | "
          "predicted |")
    print("|" + "---|" * 15)
    for name, version, direction, r, meas in rows:
        f = fit[direction]
        if f is None:
            pred = "-"
        else:
            lo, hi = r["bound"] * f[1] + r["copy"], r["bound"] * f[2] + r["copy"]
            pred = f"{1e3 * (r['bound'] * f[0] + r['copy']):.3f} ({1e3 * lo:.3f}-{1e3 * hi:.3f})"
        ratio = f"{(meas * 1e-3 - r['copy']) / r['bound']:.2f}" if meas else "-"
        print(f"| {name} | {version} | {direction} | {r['warps_per_sm']:.0f} | "
              f"{r['warp_instr'] / 1e6:.0f} | "
              f"{r['l1'] / 1e6:.0f} | {r['l2'] * SECTOR / 1e6:.0f} | {1e3 * r['t_issue']:.3f} | "
              f"{1e3 * r['t_l1']:.3f} | {1e3 * r['t_l2']:.3f} | {1e3 * r['copy']:.3f} | "
              f"{1e3 * r['bound']:.3f} ({r['limiter']}) | {meas if meas else '-'} | {ratio} | "
              f"{pred} |")
    for d, f in fit.items():
        if f:
            print(f"\n{d}: v1's measured time (less copies) / its bound: median {f[0]:.2f}, "
                  f"range {f[1]:.2f}-{f[2]:.2f} over {len(ratios[d])} cases; predictions use "
                  "the median (range in brackets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
