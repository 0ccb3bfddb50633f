"""Learned reconstruction models that embed the known CT operators (sinogram -> image).

Imports are lazy: ``import recon.nets`` loads nothing heavy; ``recon.nets.LearnedPrimalDual``
imports :mod:`recon.nets.primal_dual` on first use.

- :class:`UNet`, :class:`UNetPostProcessing` (``unet``): FBP + residual U-Net (FBPConvNet).
- :class:`VariationalNetwork`, :class:`RBFActivation` (``variational``): Hammernik et al. 2018.
- :class:`LearnedPrimalDual` (``primal_dual``): Adler & Öktem 2018.
- :class:`TrainableFBP` (``trainable_fbp``): Würfl et al. 2016/2018; :class:`LearnedFilterFBP`
  (``learned_filter``): Syben et al. 2018.
- :class:`ParallelToFanNet`, :class:`DetectorFilter` (``rebinning``): Syben et al., GCPR 2018.
- :class:`OperatorModel`, :func:`operator_norm` (``common``): the fixed operator and its scaling.
"""

from importlib import import_module

_EXPORTS = {
    # common.py
    "OperatorModel": "common",
    "NormalizedOperator": "common",
    "operator_norm": "common",
    # unet.py
    "UNet": "unet",
    "UNetPostProcessing": "unet",
    # variational.py
    "VariationalNetwork": "variational",
    "RBFActivation": "variational",
    # primal_dual.py
    "LearnedPrimalDual": "primal_dual",
    # trainable_fbp.py
    "TrainableFBP": "trainable_fbp",
    # learned_filter.py
    "LearnedFilterFBP": "learned_filter",
    "effective_kernel": "learned_filter",
    "kernel_response": "learned_filter",
    # rebinning.py
    "ParallelToFanNet": "rebinning",
    "DetectorFilter": "rebinning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recon.nets' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
