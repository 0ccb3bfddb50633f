"""What the learned reconstruction models share: the fixed operator, its scaling, input checks.

Every model here maps sinograms ``(*batch, views, detectors)`` to images ``(*batch, H, W)`` and
takes the X-ray transform ``A`` (:class:`operators.XRayTransform`) as an argument. ``A`` is a fixed,
known layer (precision learning): it has no parameters, only buffers (its angle and ray tables),
and the models keep it *outside* their module tree (:class:`OperatorModel`), so

- ``model.parameters()`` and ``model.state_dict()`` hold only what is learned (plus the scaling
  buffers below), never the operator's tables;
- ``model.to(device)`` still moves the operator, but a dtype cast of the model
  (``model.double()``) leaves the operator's float64 tables alone.

Operator scaling is a contract (deepinv PR 715 broke pretrained weights by changing it): models
that work with ``A / ||A||`` estimate ``||A||`` once by the power method (:func:`operator_norm`),
store it as the buffer ``operator_norm`` (saved in every checkpoint), and warn when a checkpoint
brings a norm that differs from the operator they are built with.

Models also work on normalised values: an image ``x`` enters the networks as ``x / image_scale``
and a sinogram ``y`` as ``y / (image_scale * ||A||)`` (``A`` is linear, so the pair stays
consistent); ``image_scale`` (a buffer) is the typical image magnitude, for example the data
range of the training images in 1/mm. Outputs are rescaled back to the units of the image.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from operators._checks import real
from operators._custom_ops import _autocast_enabled, compiling
from operators.signature import SIGNATURE_KEY, is_scan, register_signature

from ..iterative import operator_norm

__all__ = ["OperatorModel", "check_operator", "check_sinogram", "check_dtype_matches",
           "operator_norm",
           "NormalizedOperator", "resolve_init"]


def check_operator(operator, name: str = "operator") -> None:
    """Raise ``TypeError`` unless ``operator`` behaves like :class:`operators.XRayTransform`.

    Required: callable ``(*batch, H, W) -> (*batch, views, detectors)``, an ``adjoint`` method,
    ``domain_shape`` and ``range_shape``, and no trainable parameters.
    """
    if not isinstance(operator, nn.Module):
        raise TypeError(f"{name} must be an operators.XRayTransform (an nn.Module), got "
                        f"{type(operator).__name__}")
    for attr in ("adjoint", "domain_shape", "range_shape"):
        if not hasattr(operator, attr):
            raise TypeError(f"{name} must be an operators.XRayTransform-like module with "
                            f"{attr!r}; {type(operator).__name__} has none")
    if any(p.requires_grad for p in operator.parameters()):
        raise ValueError(f"{name} has trainable parameters; the operator must be a fixed layer "
                         "(freeze them with requires_grad_(False))")


def resolve_init(init, operator):
    """The frozen start-image module of an unrolled model: ``"fbp"``, ``"zeros"`` or a module.

    ``"fbp"`` builds :class:`operators.FBP` for the operator's grid and geometry; ``"zeros"``
    returns ``None`` (start from a zero image); a given ``nn.Module`` is used as it is. The
    module is frozen (``requires_grad_(False)``): it is a known, fixed layer.
    """
    if isinstance(init, str):
        if init == "fbp":
            import operators
            init = operators.FBP(operator.grid, operator.geometry)
        elif init == "zeros":
            init = None
        else:
            raise ValueError(f"init must be 'fbp', 'zeros' or an nn.Module, got {init!r}")
    elif not isinstance(init, nn.Module):
        raise TypeError(f"init must be 'fbp', 'zeros' or an nn.Module, got "
                        f"{type(init).__name__}")
    if init is not None:
        init.requires_grad_(False)
    return init


def check_sinogram(name: str, y, operator) -> None:
    """Raise a clear error unless ``y`` is a float tensor ``(*batch, views, detectors)``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {y.dtype}")
    if y.dim() < 2 or tuple(y.shape[-2:]) != tuple(operator.range_shape):
        raise ValueError(f"{name} must have shape (*batch, views, detectors) = (..., "
                         f"{operator.range_shape[0]}, {operator.range_shape[1]}), got "
                         f"{tuple(y.shape)}")


def check_dtype_matches(name: str, tensor: torch.Tensor, module: nn.Module) -> None:
    """Raise a clear error unless ``tensor`` has the dtype of ``module``'s learned parameters.

    Convolutions do not promote: a float64 sinogram into a float32 network would otherwise fail
    deep inside torch. Inside ``torch.autocast`` (mixed precision) any dtype is accepted.
    """
    if compiling():
        return
    # The learned weights set the dtype (a frozen FBP inside the model is not what it trains);
    # a model with none falls back to its first floating-point parameter.
    floating = (p for p in module.parameters() if p.is_floating_point())
    param = next((p for p in floating if p.requires_grad), None)
    if param is None:
        param = next((p for p in module.parameters() if p.is_floating_point()), None)
    if param is None or tensor.dtype == param.dtype or _autocast_enabled(tensor.device.type):
        return
    raise TypeError(f"{name} has dtype {tensor.dtype} but the parameters of "
                    f"{type(module).__name__} are {param.dtype}: convert {name} "
                    f"({name}.to({param.dtype})) or the model (model.to({tensor.dtype}))")


class NormalizedOperator:
    """``A / c`` and its adjoint ``A^T / c`` for a model-held scale ``c`` (a 0-d tensor)."""

    def __init__(self, operator, norm: torch.Tensor):
        self.operator = operator
        self.norm = norm

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator(x) / self.norm.to(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.operator.adjoint(y) / self.norm.to(y)


#: Buffers of :class:`OperatorModel` that keep float64 under ``model.to(dtype)``.
_FLOAT64_BUFFERS = ("operator_norm", "image_scale", SIGNATURE_KEY)


class OperatorModel(nn.Module):
    """Base class: a model that holds a fixed operator outside its module tree.

    Parameters
    ----------
    operator : XRayTransform
        The known forward operator ``A``. Not registered as a submodule: its buffers are in
        neither ``parameters()`` nor ``state_dict()``; ``.to(device)`` moves it along (and with
        it every other model built on the same ``A``). ``copy.deepcopy(model)`` is independent
        of the original: it has its own operator (whose cached matrices are rebuilt on first
        use), so casting or moving the copy leaves the original as it was.
    image_scale : float
        Typical image magnitude (units of the image, e.g. 1/mm); stored as a buffer.
    normalize_operator : bool
        Estimate ``||A||`` by the power method and store it as the buffer ``operator_norm``;
        otherwise the buffer holds 1.0 (the operator is used as it is).
    norm_iterations : int
        Power-method iterations for ``||A||``.
    """

    def __init__(self, operator, image_scale: float = 1.0, normalize_operator: bool = True,
                 norm_iterations: int = 100):
        super().__init__()
        check_operator(operator)
        image_scale = real("image_scale", image_scale, positive=True)
        object.__setattr__(self, "_operator", operator)
        norm = operator_norm(operator, iterations=norm_iterations) if normalize_operator else 1.0
        self.register_buffer("operator_norm", torch.tensor(norm, dtype=torch.float64))
        self.register_buffer("image_scale", torch.tensor(float(image_scale), dtype=torch.float64))
        grid, geometry = getattr(operator, "grid", None), getattr(operator, "geometry", None)
        if is_scan(grid, geometry):  # refuse checkpoints made for another scan (checked first)
            register_signature(self, grid, geometry)
        self._register_load_state_dict_pre_hook(self._check_loaded_norm)

    @property
    def operator(self):
        """The fixed operator ``A`` (not a submodule)."""
        return self._operator

    @property
    def normalized_operator(self) -> NormalizedOperator:
        """``A / ||A||`` with the stored norm."""
        return NormalizedOperator(self._operator, self.operator_norm)

    def _check_loaded_norm(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "operator_norm"
        if key in state_dict:
            loaded = float(state_dict[key])
            here = float(self.operator_norm)
            if abs(loaded - here) > 1e-3 * max(abs(here), 1e-30):
                warnings.warn(
                    f"the checkpoint's operator norm ({loaded:.6g}) differs from this model's "
                    f"({here:.6g}): it was trained with another operator or scaling; the "
                    "checkpoint's value is used", UserWarning, stacklevel=3)

    def _apply(self, fn, *args, **kwargs):
        # The scan's constants stay float64 whatever dtype the model is cast to (model.half()
        # would round ||A|| by 2e-3 and the signature's spacings); they follow its device.
        constants = {name: getattr(self, name) for name in _FLOAT64_BUFFERS
                     if getattr(self, name, None) is not None}
        out = super()._apply(fn, *args, **kwargs)
        for name, value in constants.items():
            setattr(self, name, value.to(getattr(self, name).device))
        # Follow the model's device, not its dtype: the operator's tables stay float64.
        device = next((t.device for t in self.buffers()), None)
        op_device = getattr(self._operator, "device", None)
        if device is not None and op_device is not None and op_device != device:
            self._operator.to(device)
        return out

    def sinogram_in(self, y: torch.Tensor) -> torch.Tensor:
        """Check ``y`` and return it in normalised units ``y / (image_scale * ||A||)``."""
        check_sinogram("y", y, self._operator)
        return y / (self.image_scale * self.operator_norm).to(y)

    def image_out(self, x: torch.Tensor) -> torch.Tensor:
        """Map a normalised image back to the image's units (times ``image_scale``)."""
        return x * self.image_scale.to(x)

    def extra_repr(self) -> str:
        return (f"operator={type(self._operator).__name__}{tuple(self._operator.domain_shape)}"
                f"->{tuple(self._operator.range_shape)}, operator_norm="
                f"{float(self.operator_norm):.6g}, image_scale={float(self.image_scale):.6g}")
