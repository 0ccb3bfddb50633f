"""The X-ray transform ``A`` and its exact adjoint ``A^T`` as differentiable ``nn.Module`` layers.

Discrete model: Joseph's method (:mod:`operators._joseph`), the same coefficients in every
backend, so ``<A x, y> = <x, A^T y>`` holds to rounding. Autograd: one ``autograd.Function`` per
direction whose backward applies the other direction, so the gradient of ``A`` is ``A^T`` and of
``A^T`` is ``A``, and double backward, ``gradcheck``, forward-mode (``jvp``) and ``vmap`` work.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.autograd.forward_ad as _forward_ad
from torch import nn

from . import _custom_ops
from ._joseph import ray_table
from .backends import BACKENDS, make_backend, select_backend
from .geometry import (FanGeometry, FieldOfViewWarning, GeometryWarning, ImageGrid,
                       ParallelGeometry)
from .signature import SignatureMismatchError, register_signature

__all__ = ["XRayTransform", "AdjointXRayTransform", "check_tensor"]

_FLOAT_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _is_transformed(t: torch.Tensor) -> bool:
    """True inside torch.func transforms (vmap, jvp, grad), where values cannot be inspected."""
    probe = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(probe(t)) if probe is not None else False


def check_tensor(name: str, t, trailing: Tuple[int, int], trailing_names: str,
                 device: Optional[torch.device] = None, check_finite: bool = True,
                 allow_half: bool = False) -> None:
    """Validate a ``(*batch, a, b)`` floating-point tensor; raise naming ``name`` if it is not.

    Raises ``TypeError`` (not a tensor, integer/complex dtype, or half precision unless
    ``allow_half``), ``ValueError`` (rank or trailing shape, NaN/Inf) or ``RuntimeError``
    (device mismatch). The NaN/Inf check reads the values on the host, so it runs on CPU
    tensors only: on a GPU it would make every call wait for the device (the H100 run of
    2026-11-27 found it was the one host-device synchronisation of a call, which then cost
    the whole GPU time on top of the host's launch work), and under ``torch.compile`` it
    would break the graph in every call. The static checks (type, shape, device) always run.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    allowed = _FLOAT_DTYPES + (_HALF_DTYPES if allow_half else ())
    if t.dtype not in allowed:
        kind = ("complex" if t.is_complex() else
                "integer/bool" if not t.is_floating_point() else
                "half-precision" if t.dtype in _HALF_DTYPES else "unsupported floating-point")
        names = "torch.float32 or torch.float64" + (
            " (or torch.float16 / torch.bfloat16)" if allow_half else "")
        raise TypeError(f"{name} has {kind} dtype {t.dtype}; use {names}")
    if t.dim() < 2:
        raise ValueError(f"{name} must have shape (*batch, {trailing_names}) = (..., "
                         f"{trailing[0]}, {trailing[1]}), got rank {t.dim()} shape {tuple(t.shape)}")
    if tuple(t.shape[-2:]) != tuple(trailing):
        raise ValueError(f"{name} must end in ({trailing_names}) = {tuple(trailing)}, got shape "
                         f"{tuple(t.shape)}")
    if device is not None and t.device != device and not (
            t.device.type == device.type == "cuda" and device.index is None):
        raise RuntimeError(f"{name} is on {t.device} but the operator is on {device}; "
                           f"move one of them (e.g. A.to({str(t.device)!r}))")
    if (check_finite and t.numel() and t.device.type == "cpu" and not _custom_ops.compiling()
            and not _is_transformed(t) and not bool(torch.isfinite(t).all())):
        raise ValueError(f"{name} contains NaN or Inf")


class _ApplyForward(torch.autograd.Function):
    """``op._raw_forward(x)`` for any linear ``op`` with ``_raw_forward`` / ``_raw_adjoint``.

    Backward applies the adjoint through :class:`_ApplyAdjoint` (itself differentiable), so
    higher derivatives work. Used by :class:`XRayTransform` and the FBP back-projection.
    """

    @staticmethod
    def forward(x, op):
        return _custom_ops.call_raw(op, "_raw_forward", x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.op = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return _ApplyAdjoint.apply(grad, ctx.op), None

    @staticmethod
    def jvp(ctx, x_tangent, _):
        return _ApplyForward.apply(x_tangent, ctx.op)

    @staticmethod
    def vmap(info, in_dims, x, op):
        if in_dims[0] is None:
            return _ApplyForward.apply(x, op), None
        return _ApplyForward.apply(x.movedim(in_dims[0], 0), op), 0


class _ApplyAdjoint(torch.autograd.Function):
    """``op._raw_adjoint(y)``; backward applies ``op._raw_forward``."""

    @staticmethod
    def forward(y, op):
        return _custom_ops.call_raw(op, "_raw_adjoint", y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.op = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return _ApplyForward.apply(grad, ctx.op), None

    @staticmethod
    def jvp(ctx, y_tangent, _):
        return _ApplyAdjoint.apply(y_tangent, ctx.op)

    @staticmethod
    def vmap(info, in_dims, y, op):
        if in_dims[0] is None:
            return _ApplyAdjoint.apply(y, op), None
        return _ApplyAdjoint.apply(y.movedim(in_dims[0], 0), op), 0


# ``Function.apply`` binds its arguments to ``forward``'s signature on every call when
# ``setup_context`` is defined (needed for vmap / jvp); ``inspect.signature`` honours a cached
# ``__signature__``, which saves about half of that per-call cost (25 us here).
for _fn in (_ApplyForward.forward, _ApplyAdjoint.forward):
    _fn.__signature__ = inspect.signature(_fn)
del _fn


class _EagerForward(torch.autograd.Function):
    """:class:`_ApplyForward` for calls outside ``torch.func`` transforms (the usual case).

    The old-style ``forward(ctx, ...)`` form has no ``setup_context``, so ``Function.apply``
    skips the signature binding that costs :class:`_ApplyForward` about 20 us per call on a
    2-core CPU (``benchmarks/host_overhead.py``); functorch transforms need ``setup_context``
    and take :class:`_ApplyForward`. Backward, double backward and forward-mode AD
    (``torch.autograd.forward_ad``) are the same.
    """

    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return _custom_ops.call_raw(op, "_raw_forward", x)

    @staticmethod
    def backward(ctx, grad):
        return apply_adjoint(grad, ctx.op), None

    @staticmethod
    def jvp(ctx, x_tangent, _):
        return apply_forward(x_tangent, ctx.op)


class _EagerAdjoint(torch.autograd.Function):
    """:class:`_ApplyAdjoint` outside ``torch.func`` transforms; see :class:`_EagerForward`."""

    @staticmethod
    def forward(ctx, y, op):
        ctx.op = op
        return _custom_ops.call_raw(op, "_raw_adjoint", y)

    @staticmethod
    def backward(ctx, grad):
        return apply_forward(grad, ctx.op), None

    @staticmethod
    def jvp(ctx, y_tangent, _):
        return apply_adjoint(y_tangent, ctx.op)


_transforms_active = torch._C._are_functorch_transforms_active


def _plain_call(t: torch.Tensor) -> bool:
    """True when a call needs no autograd node: no gradient can flow to ``t`` and no
    forward-mode AD level is open (outside ``torch.func`` transforms, checked first)."""
    return not (t.requires_grad and torch.is_grad_enabled()) and _forward_ad._current_level < 0


if _custom_ops.HAVE_CUSTOM_OPS:
    _compiled_forward, _compiled_adjoint = _custom_ops.forward_op, _custom_ops.adjoint_op
else:  # torch < 2.4: keep Dynamo out of the backends (a graph break per call)
    @torch._dynamo.disable
    def _compiled_forward(x, handle):
        return _ApplyForward.apply(x, _custom_ops.lookup(handle))

    @torch._dynamo.disable
    def _compiled_adjoint(y, handle):
        return _ApplyAdjoint.apply(y, _custom_ops.lookup(handle))


def apply_forward(x: torch.Tensor, op) -> torch.Tensor:
    """``op._raw_forward(x)`` with autograd: the ``autograd.Function`` when eager, the opaque
    custom op of :mod:`operators._custom_ops` under ``torch.compile``. ``op`` needs an
    ``_op_handle`` from :class:`RegisteredOperator`."""
    if _custom_ops.compiling():
        return _compiled_forward(x, op._op_handle)
    if _transforms_active():
        return _ApplyForward.apply(x, op)
    if _plain_call(x):
        return _custom_ops.call_raw(op, "_raw_forward", x)
    return _EagerForward.apply(x, op)


def apply_adjoint(y: torch.Tensor, op) -> torch.Tensor:
    """``op._raw_adjoint(y)`` with autograd; see :func:`apply_forward`."""
    if _custom_ops.compiling():
        return _compiled_adjoint(y, op._op_handle)
    if _transforms_active():
        return _ApplyAdjoint.apply(y, op)
    if _plain_call(y):
        return _custom_ops.call_raw(op, "_raw_adjoint", y)
    return _EagerAdjoint.apply(y, op)


class FixedAtConstruction:
    """A layer's grid, geometry or backend: set once in ``__init__``, read-only after (the
    layer's tables and cached backends are built from it, so a new value would leave them
    describing the old scan)."""

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.slot]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__} has no {self.name} yet") from None

    def __set__(self, obj, value):
        if self.slot in obj.__dict__:
            cls = type(obj).__name__
            raise AttributeError(f"{cls}.{self.name} is fixed at construction (the layer's tables "
                                 f"and backends are built from it); build a new {cls} for "
                                 f"another {self.name}")
        obj.__dict__[self.slot] = value


class RegisteredOperator(nn.Module):
    """Base of the linear layers: a handle for ``torch.compile`` (:mod:`operators._custom_ops`),
    renewed for every copy (``copy.deepcopy``, pickling), so that a copy never answers for the
    original."""

    def __init__(self):
        super().__init__()
        self._op_handle = _custom_ops.register(self)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._op_handle = _custom_ops.register(self)


def _validate_pair(grid: ImageGrid, geometry) -> None:
    if not isinstance(grid, ImageGrid):
        raise TypeError(f"grid must be an operators.ImageGrid, got {type(grid).__name__}")
    if not isinstance(geometry, (ParallelGeometry, FanGeometry)):
        raise TypeError("geometry must be an operators.ParallelGeometry or FanGeometry, got "
                        f"{type(geometry).__name__}")
    if isinstance(geometry, FanGeometry) and geometry.source_to_isocenter <= grid.radius:
        raise ValueError(
            f"geometry.source_to_isocenter ({geometry.source_to_isocenter} mm) puts the source "
            f"inside the image (grid radius {grid.radius:.3f} mm); move the source out or use a "
            "smaller grid")
    if isinstance(geometry, FanGeometry) and \
            geometry.source_to_detector - geometry.source_to_isocenter < grid.radius:
        warnings.warn(
            f"the detector ({geometry.source_to_detector - geometry.source_to_isocenter:.2f} mm "
            f"from the isocentre) passes through the image (radius {grid.radius:.2f} mm to its "
            "corners); the model integrates along whole lines as if it were outside",
            GeometryWarning, stacklevel=3)
    fov = geometry.scan_fov_radius()
    if fov < grid.radius * (1 - 1e-9):
        warnings.warn(
            f"the scan covers a field of view of radius {fov:.2f} mm, smaller than the image "
            f"(radius {grid.radius:.2f} mm to its corners): lines through the rest of the image "
            "are not measured, so structures there are truncated (harmless when the object "
            "lies inside that circle; warnings.simplefilter('ignore', "
            "operators.FieldOfViewWarning) silences this)",
            FieldOfViewWarning, stacklevel=3)


class XRayTransform(RegisteredOperator):
    """The 2D X-ray transform ``A`` (Joseph's method) as a fixed, differentiable layer.

    Parameters
    ----------
    grid : ImageGrid
        The image domain, ``(H, W)`` pixels of ``(dy, dx)`` mm.
    geometry : ParallelGeometry or FanGeometry
        The scan; the range is ``(views, detectors)``.
    backend : str
        ``"auto"`` (default: ``triton`` for CUDA tensors when available, else ``sparse`` below a
        memory budget, else ``torch``), or one of ``"sparse"``, ``"torch"``, ``"triton"``,
        ``"torch-radon"``. See :mod:`operators.backends`.
    check_inputs : bool
        Validate dtype, shape and device of every input, and the finiteness of CPU inputs (one
        reduction per call; on a GPU it would make every call wait for the device).

    Shapes and dtypes
    -----------------
    ``A(x)``: ``(*batch, H, W) -> (*batch, views, detectors)``, line integrals of ``x``
    (attenuation in 1/mm times length in mm: dimensionless). float32 or float64; float16 and
    bfloat16 are accepted too and returned in the same dtype: the ``triton`` backend reads
    them as they are and accumulates in float32 (half the memory traffic), the CPU backends
    compute in float32 and round the result.
    ``A.T(y)`` / ``A.adjoint(y)``: ``(*batch, views, detectors) -> (*batch, H, W)``.

    The pair is exactly matched: ``<A x, y> = <x, A.T y>`` to rounding; ``A.T.T is A``.
    Moving ``A`` (``A.to(device)``) moves ``A.T``: the adjoint owns no tensors.
    """

    grid = FixedAtConstruction()
    geometry = FixedAtConstruction()
    backend = FixedAtConstruction()

    def __init__(self, grid: ImageGrid, geometry, backend: str = "auto",
                 check_inputs: bool = True):
        super().__init__()
        _validate_pair(grid, geometry)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.grid = grid
        self.geometry = geometry
        self.backend = backend
        self.check_inputs = bool(check_inputs)
        self.register_buffer("angles", torch.tensor(geometry.angles, dtype=torch.float64))
        table = ray_table(*geometry.lines(), grid)
        self.register_buffer("ray_table", torch.from_numpy(table), persistent=False)
        self._backends: Dict[str, object] = {}
        self._backend_by_device: Dict[torch.device, object] = {}
        if backend != "auto":
            self._backend_for(None)  # fail now, naming the backend, if it cannot run here
        object.__setattr__(self, "_adjoint", AdjointXRayTransform(self))
        self._register_load_state_dict_pre_hook(self._check_loaded_angles)
        register_signature(self, grid, geometry)

    # -- shapes and helpers ------------------------------------------------------------------
    @property
    def domain_shape(self) -> Tuple[int, int]:
        """``(H, W)``."""
        return self.grid.shape

    @property
    def range_shape(self) -> Tuple[int, int]:
        """``(views, detectors)``."""
        return self.geometry.sinogram_shape

    @property
    def T(self) -> "AdjointXRayTransform":
        """The adjoint ``A^T`` as a module (built once)."""
        return self._adjoint

    @property
    def device(self) -> torch.device:
        return self.ray_table.device

    def backend_name(self, device: Optional[torch.device] = None) -> str:
        """The backend used for tensors on ``device`` (default: the operator's device)."""
        device = self.device if device is None else torch.device(device)
        if self.backend != "auto":
            return self.backend
        return select_backend(device, self.grid, self.geometry)

    def _backend_for(self, device: Optional[torch.device]):
        backend = self._backend_by_device.get(device)
        if backend is None:
            name = self.backend if self.backend != "auto" else self.backend_name(device)
            if name not in self._backends:
                self._backends[name] = make_backend(name, self.grid, self.geometry)
            backend = self._backends[name]
            if device is not None:  # what `auto` picks for a device does not change
                self._backend_by_device[device] = backend
        return backend

    def extra_repr(self) -> str:
        return f"grid={self.grid!r},\ngeometry={self.geometry!r},\nbackend={self.backend!r}"

    def _check_loaded_angles(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "angles"
        if key in state_dict:
            loaded = state_dict[key]
            if loaded.shape != self.angles.shape:
                what = f"{loaded.numel()} view angles, this operator has {self.angles.numel()}"
            elif not torch.allclose(loaded.to(self.angles), self.angles, rtol=0, atol=1e-12):
                worst = float((loaded.to(self.angles) - self.angles).abs().max())
                what = (f"{loaded.numel()} view angles as here, but at other values (up to "
                        f"{worst:.3g} rad apart)")
            else:
                return
            raise SignatureMismatchError(
                f"state_dict[{key!r}] holds {what}; build the operator with the geometry the "
                "checkpoint was made with")

    def _apply(self, fn, *args, **kwargs):
        # Cached matrices belong to a device/dtype; they are rebuilt lazily after a move.
        for backend in self._backends.values():
            if hasattr(backend, "clear"):
                backend.clear()
        # The geometry tables stay float64 whatever dtype the model is cast to (model.half()).
        table, angles, signature = self.ray_table, self.angles, self.scan_signature
        super()._apply(fn, *args, **kwargs)
        self.ray_table = table.to(self.ray_table.device)
        self.angles = angles.to(self.angles.device)
        self.scan_signature = signature.to(self.scan_signature.device)
        return self

    # -- raw application (no autograd) --------------------------------------------------------
    def _apply_backend(self, method: str, t: torch.Tensor, shape, out_shape) -> torch.Tensor:
        backend = self._backend_for(t.device)
        tb = t.reshape((-1,) + shape).contiguous() if t.dim() != 3 else t.contiguous()
        if t.dtype in _HALF_DTYPES and not getattr(backend, "supports_half", False):
            out = getattr(backend, method)(tb.float(), self.ray_table).to(t.dtype)
        else:
            out = getattr(backend, method)(tb, self.ray_table)
        return out if t.dim() == 3 else out.reshape(t.shape[:-2] + out_shape)

    def _raw_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_backend("forward", x, self.domain_shape, self.range_shape)

    def _raw_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply_backend("adjoint", y, self.range_shape, self.domain_shape)

    # -- public ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project images ``(*batch, H, W)`` to sinograms ``(*batch, views, detectors)``."""
        if self.check_inputs:
            check_tensor("x", x, self.domain_shape, "H, W", self.device, allow_half=True)
        return apply_forward(x, self)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back-project sinograms ``(*batch, views, detectors)`` to images ``(*batch, H, W)``."""
        if self.check_inputs:
            check_tensor("y", y, self.range_shape, "views, detectors", self.device,
                         allow_half=True)
        return apply_adjoint(y, self)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T A x``."""
        return self.adjoint(self.forward(x))


class AdjointXRayTransform(nn.Module):
    """``A^T`` of an :class:`XRayTransform` as a module; ``A.T.T is A``. Owns no tensors."""

    def __init__(self, parent: XRayTransform):
        super().__init__()
        object.__setattr__(self, "_parent", parent)  # not a submodule: avoids a module cycle

    @property
    def T(self) -> XRayTransform:
        return self._parent

    @property
    def domain_shape(self) -> Tuple[int, int]:
        return self._parent.range_shape

    @property
    def range_shape(self) -> Tuple[int, int]:
        return self._parent.domain_shape

    def _apply(self, fn, *args, **kwargs):
        self._parent._apply(fn, *args, **kwargs)
        return self

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self._parent.adjoint(y)

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return self._parent.forward(x)

    def extra_repr(self) -> str:
        return "adjoint of " + repr(self._parent).replace("\n", " ")
