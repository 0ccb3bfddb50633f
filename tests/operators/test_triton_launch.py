"""Prepared launches of the Triton kernels (``operators.backends.triton_launch``): where the
layout copy puts every input element, and when the backend reuses a prepared launch.

The layout tests compare each buffer with one built element by element from the kernels'
addressing (``KernelConfig`` documents the layouts); the reuse tests replace the kernels by
recorders, so no Triton code runs and no GPU is needed.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

import operators as op  # noqa: E402
from operators.backends import triton_backend as TB  # noqa: E402
from operators.backends import triton_launch as TL  # noqa: E402
from operators.backends.triton_backend import KernelConfig  # noqa: E402


class Recorder:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](*args, **kwargs)`` records."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((grid, args, kwargs))


class Kernels:
    """Stands in for the module ``triton_kernels`` in :func:`adjoint_launch`."""
    CANDIDATE_PAD = 0.5

    def __init__(self):
        self.joseph_adjoint_parallel_kernel = Recorder()
        self.joseph_adjoint_kernel = Recorder()


def _tables(frame=0, affine=False):
    return dict(slope=None, icpt=None, step=None, kmin=torch.zeros(3, dtype=torch.int32),
                kmax=None, views=None, geom=0, det_scale=1.0, det_shift=0.0, sdd=0.0,
                parallel_affine=affine, parallel_frame=frame,
                parallel=(torch.zeros(3, 6), torch.ones(3, dtype=torch.int32)))


def _configs(b):
    cfgs = [KernelConfig.default(b), KernelConfig.v3(b), KernelConfig.one_per_thread(b),
            KernelConfig.v1(b), KernelConfig.planar(b).replace(framed=False),
            KernelConfig.planar(b).replace(transposed=False)]
    return list(dict.fromkeys(cfgs))


def _expected_forward(x, launch, cfg, h, w):
    """The forward's layout buffer, element by element."""
    b = x.shape[0]
    buf = np.zeros(launch.buffer_shape, dtype=np.float64)
    layout = cfg.layout if b > 1 else "plain"
    f = 2 if cfg.framed and cfg.transposed else 0
    for i, r, c in itertools.product(range(b), range(h), range(w)):
        p0, p1 = r * (w + f) + c + f // 2, c * (h + f) + r + f // 2  # pixel in each half
        halves = [(0, p0)] + ([(1, p1)] if cfg.transposed else [])
        for half, p in halves:
            if layout == "planar":
                buf[half, i // cfg.group, p, i % cfg.group] = x[i, r, c]
            elif layout == "channels_last":
                buf[half, p, i] = x[i, r, c]
            else:
                buf[half, i, p] = x[i, r, c]
    return buf


def _expected_adjoint(y, launch, cfg, frame):
    b, v, d = y.shape
    buf = np.zeros(launch.buffer_shape, dtype=np.float64)
    layout = cfg.layout if b > 1 else "plain"
    for i, k, j in itertools.product(range(b), range(v), range(d)):
        if layout == "planar":
            buf[i // cfg.group, k, j + frame, i % cfg.group] = y[i, k, j]
        elif layout == "channels_last":
            buf[k, j + frame, i] = y[i, k, j]
        else:
            buf[i, k, j + frame] = y[i, k, j]
    return buf


def _copied(launch):
    return sum(int(np.prod(size)) for size, *_ in launch.copies)


@pytest.mark.parametrize("b", [1, 3, 6, 8, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_forward_layout_places_every_pixel(b, dtype):
    h, w, rays = 3, 5, (4, 7)  # non-square: the transposed half differs from the image
    x = torch.arange(1, b * h * w + 1, dtype=torch.float64).reshape(b, h, w).to(dtype)
    for cfg in _configs(b):
        launch = TL.forward_launch(Recorder(), b, dtype, cfg, (h, w), rays, _tables())
        buf = launch.layout(x)
        assert buf.dtype == dtype and tuple(buf.shape) == launch.buffer_shape
        expected = _expected_forward(x.double().numpy(), launch, cfg, h, w)
        assert np.array_equal(buf.double().numpy(), expected), cfg
        if not launch.zero:  # an uninitialised buffer must be written everywhere
            assert _copied(launch) == buf.numel(), cfg


@pytest.mark.parametrize("b", [1, 3, 6, 8, 9])
@pytest.mark.parametrize("frame", [0, 2])
def test_adjoint_layout_places_every_ray(b, frame):
    v, d = 3, 5
    y = torch.arange(1, b * v * d + 1, dtype=torch.float32).reshape(b, v, d)
    for cfg in _configs(b):
        launch = TL.adjoint_launch(Kernels(), b, torch.float32, cfg, (4, 4), (v, d),
                                   _tables(frame, affine=frame > 0),
                                   lambda th, tw: torch.zeros(v, 1, dtype=torch.int32))
        buf = launch.layout(y)
        used = frame if cfg.parallel_adjoint == "affine" and cfg.adjoint_frame else 0
        if launch.buffer_shape is None:  # plain, unframed: the kernel reads y itself
            assert buf is y and used == 0 and (cfg.layout == "plain" or b == 1)
            continue
        expected = _expected_adjoint(y.double().numpy(), launch, cfg, used)
        assert np.array_equal(buf.double().numpy(), expected), cfg
        if not launch.zero:
            assert _copied(launch) == buf.numel(), cfg


def _element(vec, quantised, plane_q, b_stride, image, group, planar):
    """Element offset where a kernel reads ``image`` at the vector-quantised offset
    ``quantised`` (pixel or ray times its stride, plus the half): ``VEC (quantised + g
    plane_q) + l`` in planes of ``group`` images (``_group_offsets``), else ``VEC quantised
    + image b_stride``."""
    if planar:
        return vec * (quantised + (image // group) * plane_q) + image % group
    return vec * quantised + image * b_stride


@pytest.mark.parametrize("b", [1, 3, 6, 8, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_arguments_address_each_pixel_where_the_copy_put_it(b, dtype):
    """The strides handed to the forward kernel, read as the kernel reads them, find every
    pixel of every image (both halves) where the layout copy wrote it; and the batch tiles the
    kernel reads without a batch mask (``EVEN_B``) lie inside the buffer."""
    h, w, rays = 3, 5, (4, 7)
    x = torch.arange(1, b * h * w + 1, dtype=torch.float64).reshape(b, h, w).to(dtype)
    for cfg in _configs(b) + [KernelConfig.planar(b, dtype)]:
        launch = TL.forward_launch(Recorder(), b, dtype, cfg, (h, w), rays, _tables())
        flat = launch.layout(x).reshape(-1)
        kw = launch.kwargs
        vec, planar = kw["VEC"], kw["PLANAR"]
        x_pix_q, x_b, x_half_q, x_plane_q = launch.args[10:14]
        f = 2 if kw["FRAMED"] else 0
        for i, r, c in itertools.product(range(b), range(h), range(w)):
            pixels = [(0, r * (w + f) + c + f // 2)]
            if kw["TRANSPOSED"]:
                pixels.append((x_half_q, c * (h + f) + r + f // 2))
            for half, p in pixels:
                at = _element(vec, half + p * x_pix_q, x_plane_q, x_b, i, cfg.group, planar)
                assert flat[at] == x[i, r, c], (cfg, i, r, c, half)
        if kw["EVEN_B"]:  # every image the batch tiles read, padding included, is in the buffer
            last = launch.grid[1] * cfg.b_block - 1
            assert _element(vec, 0, x_plane_q, x_b, last, cfg.group, planar) < flat.numel(), cfg


@pytest.mark.parametrize("b", [1, 3, 6, 8, 9])
@pytest.mark.parametrize("frame", [0, 2])
def test_kernel_arguments_address_each_ray_where_the_copy_put_it(b, frame):
    """As above for the adjoint: ray ``j`` of view ``k`` is read at ``k (D + 2 frame) + frame +
    j`` times the quantised ray stride, by the parallel-beam and the generic kernel alike."""
    v, d = 3, 5
    y = torch.arange(1, b * v * d + 1, dtype=torch.float32).reshape(b, v, d)
    for cfg in _configs(b):
        k = Kernels()
        launch = TL.adjoint_launch(k, b, torch.float32, cfg, (4, 4), (v, d),
                                   _tables(frame, affine=frame > 0),
                                   lambda th, tw: torch.zeros(v, 1, dtype=torch.int32))
        flat = launch.layout(y).reshape(-1)
        kw = launch.kwargs
        vec, planar = kw["VEC"], kw["PLANAR"]
        first = 7 if launch.kernel is k.joseph_adjoint_parallel_kernel else 12
        y_ray_q, y_b, y_plane_q = launch.args[first:first + 3]
        used = launch.args[-1] if launch.kernel is k.joseph_adjoint_parallel_kernel else 0
        assert kw.get("FRAMED", False) == (used > 0)
        for i, view, j in itertools.product(range(b), range(v), range(d)):
            ray = view * (d + 2 * used) + used + j
            at = _element(vec, ray * y_ray_q, y_plane_q, y_b, i, cfg.group, planar)
            assert flat[at] == y[i, view, j], (cfg, i, view, j)
        if kw["EVEN_B"]:
            last = launch.grid[1] * cfg.b_block - 1
            assert _element(vec, 0, y_plane_q, y_b, last, cfg.group, planar) < flat.numel(), cfg


def test_adjoint_launch_picks_the_kernel_and_frame():
    k = Kernels()
    cfg = KernelConfig.default(8)
    affine = TL.adjoint_launch(k, 8, torch.float32, cfg, (4, 4), (3, 5), _tables(2, True),
                               None)
    assert affine.kernel is k.joseph_adjoint_parallel_kernel and affine.args[-1] == 2
    generic = TL.adjoint_launch(k, 8, torch.float64, cfg, (4, 4), (3, 5), _tables(2, True),
                                lambda th, tw: torch.zeros(3, 2, dtype=torch.int32))
    assert generic.kernel is k.joseph_adjoint_kernel and generic.buffer_shape[2] == 5


# -- reuse of prepared launches by the backend ------------------------------------------------

@pytest.fixture
def recorded(monkeypatch):
    """An operator on the CPU whose Triton kernels are recorders. (``TRITON_INTERPRET`` stays
    unset: the kernels' module, imported here, must stay compilable for the tests that
    compile it for a GPU in this process.)"""
    import triton
    problem = TB.triton_version_problem(triton.__version__, interpreting=True)
    if problem:  # the backend refuses to be built (its kernels' module targets newer Triton)
        pytest.skip(problem)
    monkeypatch.setattr(TB, "_interpreting", lambda: True)  # CPU tensors pass the checks
    from operators.backends import triton_kernels as K
    kernels = {name: Recorder() for name in ("joseph_forward_kernel", "joseph_adjoint_kernel",
                                             "joseph_adjoint_parallel_kernel")}
    for name, rec in kernels.items():
        monkeypatch.setattr(K, name, rec)
    built = []
    real = TB.forward_launch
    monkeypatch.setattr(TB, "forward_launch", lambda *a, **k: built.append(a) or real(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = op.XRayTransform(op.ImageGrid((6, 6)), op.ParallelGeometry.full_scan(5, 9, 1.0),
                             backend="triton")
    return a, kernels, built


def test_a_repeated_call_reuses_its_launch_with_the_new_input(recorded, monkeypatch):
    a, kernels, built = recorded
    rec = kernels["joseph_forward_kernel"]
    planned = []  # calls that went through the checks, chunking and config choice
    real_run = TB.TritonBackend._run
    monkeypatch.setattr(TB.TritonBackend, "_run",
                        lambda self, *args: planned.append(args[0]) or real_run(self, *args))
    x1, x2 = torch.rand(4, 6, 6), torch.rand(4, 6, 6)
    a(x1)
    a(x2)
    assert len(built) == 1 and len(rec.calls) == 2 and planned == ["forward"]
    (grid1, args1, kw1), (grid2, args2, kw2) = rec.calls
    assert grid1 == grid2 and kw1 == kw2 and args1[2:] == args2[2:]
    backend = a._backend_for(x1.device)
    launch = backend._ready[("forward", x2.shape, x2.dtype, x2.device)]
    assert torch.equal(args2[0], launch.layout(x2)) and not torch.equal(args2[0], args1[0])
    assert args2[1].shape == (4, 5, 9)  # a new output for every call
    a(torch.rand(2, 6, 6))  # another batch size: planned once more
    assert len(built) == 2 and planned == ["forward", "forward"]


def test_moving_or_reconfiguring_the_backend_drops_prepared_launches(recorded):
    a, kernels, built = recorded
    x = torch.rand(4, 6, 6)
    a(x)
    backend = a._backend_for(x.device)
    assert backend._ready and backend._launches
    a.double()  # _apply -> clear(): the tables and launches belong to a device and dtype
    assert not backend._ready and not backend._launches
    a(x.double())
    cfg = KernelConfig.v3(4)
    backend.config = cfg
    assert not backend._ready
    a(x.double())
    assert kernels["joseph_forward_kernel"].calls[-1][2]["VIEW_BLOCK"] == cfg.view_block
    assert backend._ready[("forward", x.shape, torch.float64, x.device)].config == cfg


def test_autotuned_launch_is_kept_only_once_tuned(recorded, monkeypatch):
    """Where the candidates cannot be timed (inside a CUDA-graph capture) a call takes the
    default launch untuned and must not keep it; the next call that can time them tunes, and
    keeps the tuned launch."""
    a, kernels, built = recorded
    backend = a._backend_for(torch.device("cpu"))
    backend.autotune, backend.autotune_reps = True, 1
    x = torch.rand(8, 6, 6)
    key, ready = ("forward", 8, x.dtype, "cpu"), ("forward", x.shape, x.dtype, x.device)
    monkeypatch.setattr(TB, "_time_ms", lambda fn, device, reps: (fn(), 1.0)[1])
    monkeypatch.setattr(TB.TritonBackend, "_can_time", staticmethod(lambda t: False))
    a(x)
    assert key not in backend.tuned and ready not in backend._ready
    monkeypatch.setattr(TB.TritonBackend, "_can_time", staticmethod(lambda t: True))
    a(x)
    assert key in backend.tuned
    assert backend._ready[ready].config == backend.tuned[key]["config"]


def test_kernel_config_is_an_immutable_value():
    cfg = KernelConfig.default(32)
    with pytest.raises(AttributeError, match="immutable"):
        cfg.group = 2
    assert cfg.replace(num_warps=8) != cfg and cfg.replace(num_warps=4) == cfg
    assert hash(KernelConfig(**cfg.as_dict())) == hash(cfg)
    with pytest.raises(TypeError, match="no field"):
        cfg.replace(warps=8)
    with pytest.raises(ValueError, match="num_warps"):
        cfg.replace(num_warps=3)


def test_register_cap_reaches_the_forward_launch_only_when_set():
    """``forward_max_registers`` becomes Triton's ``maxnreg`` compile option of the forward,
    and of neither adjoint kernel; without it the launch options are those of before (so the
    compiled-kernel cache keys are unchanged)."""
    k = Kernels()
    for cap in (None, 64):
        cfg = KernelConfig.default(32).replace(forward_max_registers=cap)
        launches = [
            TL.forward_launch(Recorder(), 32, torch.float32, cfg, (4, 4), (3, 5), _tables()),
            TL.adjoint_launch(k, 32, torch.float32, cfg, (4, 4), (3, 5), _tables(2, True),
                              None),
            TL.adjoint_launch(k, 32, torch.float64, cfg, (4, 4), (3, 5), _tables(2, True),
                              lambda th, tw: torch.zeros(3, 2, dtype=torch.int32))]
        for i, launch in enumerate(launches):
            assert launch.kwargs["num_warps"] == 4
            if cap is None or i > 0:
                assert "maxnreg" not in launch.kwargs
            else:
                assert launch.kwargs["maxnreg"] == 64


@pytest.mark.parametrize("value, error", [("64", TypeError), (True, TypeError),
                                          (64.0, TypeError), (8, ValueError),
                                          (256, ValueError)])
def test_register_cap_is_checked(value, error):
    with pytest.raises(error, match="forward_max_registers"):
        KernelConfig.default(8).replace(forward_max_registers=value)
    cfg = KernelConfig.default(8).replace(forward_max_registers=np.int64(48))
    assert cfg.forward_max_registers == 48 and type(cfg.forward_max_registers) is int


def _brute_tile_steps(kmin, kmax, views, dets, vb, db):
    """The loop length of each forward tile, as the kernel computes it: the minimum ``kmin``
    and maximum ``kmax`` over the tile's lanes on the sinogram (masked lanes load 2**30 and
    0), the loop running from one to the other."""
    kmin, kmax = kmin.reshape(views, dets), kmax.reshape(views, dets)
    out = []
    for pid in range(-(-views // vb) * -(-dets // db)):
        v0, j0 = (pid // -(-dets // db)) * vb, (pid % -(-dets // db)) * db
        lo = min((int(kmin[v, j]) for v in range(v0, min(v0 + vb, views))
                  for j in range(j0, min(j0 + db, dets))), default=1 << 30)
        hi = max((int(kmax[v, j]) for v in range(v0, min(v0 + vb, views))
                  for j in range(j0, min(j0 + db, dets))), default=0)
        out.append(max(0, hi - lo))
    return out


@pytest.mark.parametrize("geometry", ["parallel", "fan"])
def test_tile_order_sorts_the_tiles_by_the_kernel_loop_length(geometry, monkeypatch):
    """v6's table: every ray tile once, by the number of steps the forward's loop runs for it
    (as the kernel bounds the loop, partial tiles included), longest first, ties in the
    grid's order."""
    import math
    grid = op.ImageGrid(shape=(21, 26), spacing=(1.0, 0.9))
    geom = (op.ParallelGeometry(angles=[i * math.pi / 13 for i in range(13)],
                                detector_count=61, detector_spacing=0.8)  # some miss it
            if geometry == "parallel" else
            op.FanGeometry.full_scan(11, 45, 1.2, 60.0, 110.0, "flat", detector_offset=0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = op.XRayTransform(grid, geom, backend="torch").ray_table
    monkeypatch.setattr(TB, "_interpreting", lambda: True)  # tables of CPU tensors
    tabs = TB.TritonBackend(grid, geom).tables(table)
    v, d = geom.sinogram_shape
    for vb, db in ((4, 8), (16, 8), (1, 16)):
        steps = TB.tile_steps(tabs["kmin"], tabs["kmax"], v, d, vb, db)
        assert steps.tolist() == _brute_tile_steps(tabs["kmin"], tabs["kmax"], v, d, vb, db)
        order = TB.tile_order(tabs["kmin"], tabs["kmax"], v, d, vb, db)
        assert order.dtype == torch.int32
        assert sorted(order.tolist()) == list(range(steps.numel()))
        ranked = [(int(steps[i]), int(i)) for i in order]
        assert ranked == sorted(ranked, key=lambda p: (-p[0], p[1]))
        if vb < 16:  # 16 of 13 views: one view tile, whose rays step over rows and columns
            assert len(set(steps.tolist())) > 1  # the order means something here
        if geometry == "parallel" and vb == 4:
            assert 0 in steps.tolist()  # tiles of rays that miss the image: no step at all


def test_tile_order_reaches_the_forward_launch():
    """``tile_order="longest_first"``: the forward launch passes its order (``ORDERED``);
    without one, or with one of the wrong length, it says which argument is wrong. The grid
    order passes a stand-in and ``ORDERED=False``."""
    cfg = KernelConfig.default(8).replace(view_block=4, det_block=8)
    order = torch.arange(2, dtype=torch.int32).flip(0)  # 3 views x 5 detectors: 1 x 1 tiles
    tables = _tables()
    plain = TL.forward_launch(Recorder(), 8, torch.float32, cfg, (4, 4), (3, 5), tables)
    assert plain.kwargs["ORDERED"] is False
    with pytest.raises(ValueError, match="order: tile_order='longest_first' needs the int32 "
                                         "order of the 1 ray tiles, got None"):
        TL.forward_launch(Recorder(), 8, torch.float32, cfg.replace(tile_order="longest_first"),
                          (4, 4), (3, 5), _tables())
    with pytest.raises(ValueError, match="order: .* got \\(2,\\)"):
        TL.forward_launch(Recorder(), 8, torch.float32, cfg.replace(tile_order="longest_first"),
                          (4, 4), (3, 5), _tables(), order)
    one = torch.zeros(1, dtype=torch.int32)
    launch = TL.forward_launch(Recorder(), 8, torch.float32,
                               cfg.replace(tile_order="longest_first"), (4, 4), (3, 5),
                               tables, one)
    assert launch.kwargs["ORDERED"] is True and launch.args[-1] is one
    assert all(a is b if torch.is_tensor(a) or a is None else a == b
               for a, b in zip(launch.args[:-1], plain.args[:-1]))  # nothing else changes
    assert len(launch.args) == len(plain.args)
    with pytest.raises(ValueError, match="tile_order must be one of"):
        cfg.replace(tile_order="shortest_first")
