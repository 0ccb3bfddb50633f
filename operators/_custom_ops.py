"""The linear operators as opaque ``torch.library`` custom ops, for ``torch.compile``.

Eager calls go through the ``autograd.Function``s of :mod:`operators.projector` (they also
serve ``vmap`` and forward-mode AD). Under ``torch.compile`` Dynamo would trace into the
backends instead: the ``torch`` backend's gathers and chunk loops, the sparse matrices, the
Triton launch code; Inductor then recompiles them for every shape and can fail on them
(torch 2.13: ``cannot determine truth value of Relational`` with dynamic batch sizes). Here
each direction is one custom op, ``known_operators::forward(x, handle)`` and
``known_operators::adjoint(y, handle)``, that the compiler sees as a black box with a known
output shape (its fake implementation) and a known gradient (the other direction), so a model
that contains ``A`` compiles into one graph without breaks, on the CPU and on CUDA.

The operator itself (geometry, cached matrices, kernel configuration) is not a tensor, so the
ops take an integer ``handle`` into a registry of live operators (weak references: the registry
keeps no operator alive). Copies (``copy.deepcopy``, pickling) get a handle of their own.

Custom ops need torch >= 2.4; with an older torch, :data:`HAVE_CUSTOM_OPS` is False and
:mod:`operators.projector` hides the operators from Dynamo instead (a graph break per call).
"""

from __future__ import annotations

import itertools
import weakref

import torch

__all__ = ["HAVE_CUSTOM_OPS", "register", "lookup", "compiling", "call_raw"]

_REGISTRY: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
_NEXT_HANDLE = itertools.count(1)

HAVE_CUSTOM_OPS = hasattr(torch.library, "custom_op")


def register(op) -> int:
    """A new handle for ``op`` (anything with ``_raw_forward``, ``_raw_adjoint``,
    ``domain_shape`` and ``range_shape``)."""
    handle = next(_NEXT_HANDLE)
    _REGISTRY[handle] = op
    return handle


def lookup(handle: int):
    """The live operator behind ``handle``; ``RuntimeError`` if it was garbage-collected."""
    op = _REGISTRY.get(int(handle))
    if op is None:
        raise RuntimeError(f"no live operator has handle {handle}: the operator a compiled "
                           "graph refers to was deleted; keep the module alive while using it")
    return op


#: ``compiling()``: True while Dynamo traces (``torch.compile``); the tracer constant-folds it.
#: Resolved once here: it is called on every operator call.
compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
if compiling is None:  # torch < 2.3
    compiling = getattr(getattr(torch, "_dynamo", None), "is_compiling", lambda: False)


def _legacy_autocast_enabled(device_type: str) -> bool:
    """torch < 2.4: ``is_autocast_enabled`` takes no device argument."""
    if device_type == "cpu":
        return torch.is_autocast_cpu_enabled()
    return device_type == "cuda" and torch.is_autocast_enabled()


try:
    torch.is_autocast_enabled("cpu")
    _autocast_enabled = torch.is_autocast_enabled
except TypeError:
    _autocast_enabled = _legacy_autocast_enabled


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(_autocast_enabled(device_type))
    except RuntimeError:  # a device type autocast does not know
        return False


def call_raw(op, method: str, t: torch.Tensor) -> torch.Tensor:
    """``op.<method>(t)`` (``_raw_forward`` / ``_raw_adjoint``) outside autocast.

    The operators are fixed-precision layers: the input's dtype decides (half-precision inputs
    are read as stored by the Triton kernels, or computed in float32 by the CPU backends).
    Inside ``torch.autocast`` the backends' matrix products would otherwise be cast to the
    autocast dtype (the sparse CPU backend has no bfloat16 product at all), so autocast is
    switched off around the call; the caller's autocast region goes on around it. An empty
    batch gives an empty result without reaching the operator (its backends reshape with -1,
    and FFT libraries refuse empty inputs).
    """
    if t.numel() == 0:
        out_shape = op.range_shape if method == "_raw_forward" else op.domain_shape
        return t.new_zeros(*t.shape[:-2], *out_shape)
    if _autocast_on(t.device.type):
        with torch.autocast(device_type=t.device.type, enabled=False):
            return getattr(op, method)(t)
    return getattr(op, method)(t)


if HAVE_CUSTOM_OPS:
    # The results are made contiguous because the compiler assumes the strides of the fake
    # implementation (the sparse backends return transposed products).
    @torch.library.custom_op("known_operators::forward", mutates_args=())
    def forward_op(x: torch.Tensor, handle: int) -> torch.Tensor:
        """``A x`` for the operator ``handle``: ``(*batch, *domain) -> (*batch, *range)``."""
        return call_raw(lookup(handle), "_raw_forward", x).contiguous()

    @torch.library.custom_op("known_operators::adjoint", mutates_args=())
    def adjoint_op(y: torch.Tensor, handle: int) -> torch.Tensor:
        """``A^T y`` for the operator ``handle``: ``(*batch, *range) -> (*batch, *domain)``."""
        return call_raw(lookup(handle), "_raw_adjoint", y).contiguous()

    @forward_op.register_fake
    def _forward_fake(x, handle):
        return x.new_empty((*x.shape[:-2], *lookup(handle).range_shape))

    @adjoint_op.register_fake
    def _adjoint_fake(y, handle):
        return y.new_empty((*y.shape[:-2], *lookup(handle).domain_shape))

    def _keep_handle(ctx, inputs, output):
        ctx.handle = inputs[1]

    def _forward_backward(ctx, grad):
        return adjoint_op(grad, ctx.handle), None

    def _adjoint_backward(ctx, grad):
        return forward_op(grad, ctx.handle), None

    forward_op.register_autograd(_forward_backward, setup_context=_keep_handle)
    adjoint_op.register_autograd(_adjoint_backward, setup_context=_keep_handle)
