"""The frozen configuration of one training run (:class:`TrainConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

from operators._checks import integer, real

__all__ = ["TrainConfig"]

#: Fields that do not change the trajectory of a training (so a checkpoint written under other
#: values of them can be resumed): where it runs and how it reports.
_NON_TRAJECTORY_FIELDS = ("num_workers", "log_every", "tensorboard", "device", "progress",
                          "checkpoint_every", "deterministic", "find_unused_parameters",
                          "compile")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of :class:`recon.train.Trainer`.

    A checkpoint resumes only under the same values of the fields that shape the optimisation
    (all but ``num_workers``, ``log_every``, ``tensorboard``, ``device``, ``progress``,
    ``checkpoint_every``, ``deterministic``, ``find_unused_parameters``, ``compile``).

    Parameters
    ----------
    epochs : int
        Passes over the training set (the most; early stopping or ``max_steps`` may end sooner).
    batch_size : int
        The **global** batch size: under ``torchrun`` with ``W`` processes each process takes
        ``batch_size // W`` samples per step (must divide evenly), so the same configuration
        gives the same optimisation on one process or several.
    lr : float
        Peak learning rate of Adam (Kingma & Ba 2015), decayed by a cosine (Loshchilov & Hutter
        2017, SGDR without restarts) over the planned steps to ``min_lr``.
    weight_decay : float
        Adam's L2 weight decay (``torch.optim.Adam(weight_decay=...)``).
    grad_clip : float or None
        Maximum global L2 norm of the gradient (``clip_grad_norm_``); ``None`` disables clipping.
    min_lr : float
        Learning rate reached at the last planned step.
    patience : int or None
        Early stopping: stop after this many epochs in a row without a validation loss below
        ``best - min_delta``; ``None`` disables early stopping.
    min_delta : float
        Smallest decrease of the validation loss that counts as an improvement.
    seed : int
        Seeds Python, NumPy and torch at the start of a fresh run, and the shuffling of each
        epoch (``DistributedSampler(seed=seed)``), so one process gives identical results.
    num_workers : int
        DataLoader worker processes (0: load in the main process).
    log_every : int
        Steps between progress-bar / TensorBoard updates of the running training loss.
    tensorboard : bool
        Also write TensorBoard event files into ``out_dir/tensorboard`` (needs ``tensorboard``).
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available. Under
        ``torchrun`` on CUDA each process uses ``cuda:LOCAL_RANK``.
    max_steps : int or None
        Cap on optimiser steps (quick runs); the cosine is planned over
        ``min(epochs * steps_per_epoch, max_steps)``.
    progress : bool
        Show tqdm progress bars (rank 0 only).
    checkpoint_every : int or None
        Also write ``checkpoint.pt`` every this many steps inside an epoch (resume mid-epoch);
        a checkpoint is always written after each epoch.
    deterministic : bool
        Ask torch for deterministic kernels (``torch.use_deterministic_algorithms(True,
        warn_only=True)``, cuDNN benchmark off); a process-wide setting that stays on after the
        run. CPU runs are deterministic without it.
    find_unused_parameters : bool
        Passed to ``DistributedDataParallel`` (for models whose forward skips some parameters).
    amp : {None, "bfloat16", "float16"}
        Mixed precision: the training forward pass and loss run under ``torch.autocast`` with
        this dtype (the operators keep float32, see :func:`operators._custom_ops.call_raw`);
        ``"float16"`` adds a ``GradScaler`` (its state is checkpointed). Validation runs in
        full precision. ``None`` (default): float32 throughout.
    compile : bool
        Run the training steps through ``torch.compile`` (Inductor). The operators enter the
        graph as opaque custom ops (:mod:`operators._custom_ops`), so an unrolled network
        compiles into one graph; the first steps pay the compilation (seconds to a minute).
        On the CPU Inductor needs a C++ compiler (``$CXX``, else ``g++``).
        Validation and the checkpoints use the plain model (same weights, same names).
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: Optional[float] = 1.0
    min_lr: float = 0.0
    patience: Optional[int] = None
    min_delta: float = 0.0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    tensorboard: bool = False
    device: Optional[str] = None
    max_steps: Optional[int] = None
    progress: bool = True
    checkpoint_every: Optional[int] = None
    deterministic: bool = False
    find_unused_parameters: bool = False
    amp: Optional[str] = None
    compile: bool = False

    def __post_init__(self) -> None:
        # Stored as plain int / float, so numpy scalars (a sweep over np.arange) give the same
        # config.json and the same checkpoint comparison as Python numbers.
        def normalise(name: str, check, **kwargs) -> None:
            value = check(f"TrainConfig.{name}", getattr(self, name), **kwargs)
            object.__setattr__(self, name, value)

        for name in ("epochs", "batch_size", "log_every"):
            normalise(name, integer)
        for name in ("patience", "max_steps", "checkpoint_every"):
            normalise(name, integer, optional=True)
        for name in ("seed", "num_workers"):
            normalise(name, integer, minimum=0)
        normalise("lr", real, positive=True)
        normalise("grad_clip", real, positive=True, optional=True)
        for name in ("weight_decay", "min_lr", "min_delta"):
            normalise(name, real, nonnegative=True)
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.amp not in (None, "bfloat16", "float16"):
            raise ValueError("TrainConfig.amp must be None, 'bfloat16' or 'float16', got "
                             f"{self.amp!r}")
        for name in ("tensorboard", "progress", "deterministic", "find_unused_parameters",
                     "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be True or False, got "
                                f"{getattr(self, name)!r}")
        if self.device is not None and not isinstance(self.device, str):
            raise TypeError("TrainConfig.device must be a string such as 'cpu' or 'cuda:0' or "
                            f"None, got {type(self.device).__name__}")

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    def trajectory_dict(self) -> Dict[str, Any]:
        """The fields that determine the optimisation (compared when resuming a checkpoint)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NON_TRAJECTORY_FIELDS}
