"""The training loop: Adam + cosine decay, clipping, validation, early stopping, checkpoints, DDP.

One code path serves one CPU, one GPU or several processes under ``torchrun``
(DistributedDataParallel, :mod:`recon.training.distributed`). The optimiser is Adam (Kingma & Ba,
ICLR 2015); the learning rate follows a cosine from ``lr`` to ``min_lr`` over the planned steps
(Loshchilov & Hutter, ICLR 2017, without restarts); the global gradient norm is clipped; the
validation loss is computed after each epoch and drives early stopping and the choice of the best
weights, which are restored at the end. The test split is not seen here: the caller evaluates it
once with :meth:`Trainer.evaluate`.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from operators._checks import real
from operators.signature import SIGNATURE_KEY, signature_differences

from .batches import batch_len, check_dataset, make_loader, split_batch, to_device
from .atomic import probe_writable
from .checkpoint import load_checkpoint, remove_stale_temporaries, save_atomic
from .config import TrainConfig
from .distributed import (DistInfo, all_gather_objects, all_reduce_sum, barrier,
                          broadcast_object, init_distributed)
from .evaluation import LossFn, MetricsFn, evaluate_model, mean_loss
from .logs import make_tensorboard_writer, write_logs
from .rng import capture_rng, restore_rng, seed_everything

__all__ = ["Trainer", "FitResult", "CHECKPOINT_FORMAT", "seed_everything"]

#: Version tag stored in every checkpoint; a checkpoint of another format is not resumed.
CHECKPOINT_FORMAT = "recon.train/1"


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    best_val_loss : float
        Lowest validation loss over the epochs (``nan`` without a validation set).
    best_epoch : int
        1-based epoch that reached it (the last epoch without a validation set).
    epochs_run : int
        Epochs completed in total, including those before a resume.
    steps : int
        Optimiser steps in total.
    seconds_per_step : float
        Mean wall time of one training step (data loading, forward, backward, update; no
        validation), over every step timed in any session of this run.
    best_path, checkpoint_path, out_dir : Path
        ``out_dir/best.pt`` (state_dict of the best weights), ``out_dir/checkpoint.pt``.
    stopped_early : bool
        Early stopping ended the run.
    resumed_from_epoch : int or None
        Completed epochs found in the checkpoint this call resumed from (None: fresh start).
    resumed_from_step : int or None
        Optimiser steps found in that checkpoint.
    final_train_loss : float
        Mean training loss of the last epoch.
    log : tuple of dict
        One row per epoch (the columns of ``log.csv``).
    """

    best_val_loss: float
    best_epoch: int
    epochs_run: int
    steps: int
    seconds_per_step: float
    best_path: Path
    checkpoint_path: Path
    out_dir: Path
    stopped_early: bool
    resumed_from_epoch: Optional[int]
    resumed_from_step: Optional[int]
    final_train_loss: float
    log: Tuple[Dict[str, Any], ...] = field(repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """Plain, JSON-ready dict (paths as strings, non-finite floats as None)."""
        out: Dict[str, Any] = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, float) and not math.isfinite(v):
                v = None
            elif k == "log":
                v = [dict(r) for r in v]
            out[k] = v
        return out


def _cpu_state(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _grad_scaler(device: torch.device):
    """A gradient scaler for float16 training on ``device`` (torch >= 2.3: ``torch.amp``)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler(enabled=device.type == "cuda")


def _check_torch_supports(config: TrainConfig, device: torch.device) -> None:
    """Refuse ``compile`` / ``amp`` settings that this torch cannot run, naming the field."""
    if config.compile:
        from operators._custom_ops import HAVE_CUSTOM_OPS
        if not HAVE_CUSTOM_OPS:
            raise RuntimeError(f"TrainConfig.compile=True needs torch >= 2.4 (the operators "
                               f"compile as torch.library custom ops); this is torch "
                               f"{torch.__version__}: set compile=False")
    if config.amp is not None:
        import warnings
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # older torch warns and disables autocast
                with torch.autocast(device_type=device.type, dtype=getattr(torch, config.amp)):
                    pass
        except (RuntimeError, UserWarning) as exc:
            raise RuntimeError(f"TrainConfig.amp={config.amp!r} is not supported on "
                               f"{device.type} by torch {torch.__version__} ({exc}); use "
                               "amp='bfloat16' or amp=None") from None


class Trainer:
    """Supervised training of a reconstruction model on ``(input, target)`` pairs.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of inputs (e.g. sinograms ``(B, views, detectors)``) to outputs (e.g.
        images ``(B, H, W)``). May contain fixed operators (:class:`operators.XRayTransform`:
        buffers, no parameters); only parameters with ``requires_grad`` are optimised (freeze
        and unfreeze *before* calling :meth:`fit`).
    loss_fn : callable or None
        ``loss_fn(output, target) -> scalar tensor``, the mean over the batch (the per-process
        means are averaged under DDP); ``None``: mean squared error.
    train_set, val_set : Dataset
        Map-style datasets of ``(input, target)`` pairs; ``val_set`` may be ``None`` (no
        validation: no early stopping, the last weights count as the best).
    config : TrainConfig
    out_dir : str or Path
        Receives ``checkpoint.pt``, ``best.pt``, ``log.csv``, ``log.json`` (rank 0 writes) and
        ``tensorboard/``. A checkpoint found there is resumed by :meth:`fit`.
    param_groups : list of dict, optional
        Adam parameter groups (``{"params": [...], "lr": ...}``, as ``torch.optim`` takes them),
        e.g. a smaller learning rate for a learned filter than for learned weights; every
        trainable parameter must be in exactly one group (default: one group, ``config.lr``).
        Each group's rate follows the cosine down to ``config.min_lr``, so every group's ``lr``
        must be at least ``config.min_lr``.

    Notes
    -----
    Determinism: on the CPU, the same seed, data, model initialisation and thread count give
    bit-identical results, also across a kill and resume (the checkpoint holds the model,
    optimiser, scheduler, epoch/step and all RNG states, and each epoch's shuffle is a function of
    ``seed`` and the epoch). With ``num_workers > 0`` a resume in the middle of an epoch is exact
    for datasets whose items are a function of their index (every dataset of this package);
    a dataset that draws from the global random state inside ``__getitem__`` (random
    augmentation) gets other draws after such a resume, because the workers start afresh. Seed
    before building the model (:func:`seed_everything`) so its initialisation is reproducible
    too.
    """

    def __init__(self, model: nn.Module, loss_fn: Optional[LossFn], train_set: Dataset,
                 val_set: Optional[Dataset], config: TrainConfig,
                 out_dir: Union[str, Path], *,
                 param_groups: Optional[Sequence[Mapping[str, Any]]] = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError("model is already wrapped in DistributedDataParallel; pass the bare "
                            "model (the Trainer wraps it when running under torchrun)")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("model has no parameter with requires_grad=True: nothing to train "
                             "(fixed operators have buffers only; unfreeze the learned parts)")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable(output, target) or None, got "
                            f"{type(loss_fn).__name__}")
        check_dataset("train_set", train_set)
        check_dataset("val_set", val_set, allow_none=True)
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(out_dir, (str, Path)):
            raise TypeError(f"out_dir must be a str or Path, got {type(out_dir).__name__}")
        self.model = model
        self.param_groups = self._check_param_groups(model, param_groups, config)
        self.loss_fn: LossFn = loss_fn if loss_fn is not None else F.mse_loss
        self.train_set = train_set
        self.val_set = val_set
        self.config = config
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.best_path = self.out_dir / "best.pt"
        self.device: Optional[torch.device] = None
        self.dist: DistInfo = DistInfo()

    # -- set-up ----------------------------------------------------------------------------
    @staticmethod
    def _check_param_groups(model: nn.Module, groups,
                            config: TrainConfig) -> Optional[List[Dict[str, Any]]]:
        if groups is None:
            return None
        if isinstance(groups, Mapping) or not isinstance(groups, Sequence) or not groups:
            raise TypeError("param_groups must be a non-empty list of dicts "
                            "{'params': [...], ...}")
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        seen: Dict[int, int] = {}
        out = []
        for i, g in enumerate(groups):
            if not isinstance(g, Mapping) or "params" not in g:
                raise TypeError(f"param_groups[{i}] must be a dict with a 'params' entry")
            ps = [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])
            # CosineAnnealingLR moves every group towards eta_min: a group below min_lr would be
            # annealed upwards (a group frozen with lr 0 would start to train).
            lr = real(f"param_groups[{i}]['lr']", g.get("lr", config.lr), finite=False)
            if not lr >= config.min_lr:
                raise ValueError(f"param_groups[{i}] has lr {lr!r} below TrainConfig.min_lr = "
                                 f"{config.min_lr!r}; the cosine schedule would raise it (freeze "
                                 "parameters with requires_grad_(False), or lower min_lr)")
            for p in ps:
                if id(p) not in trainable:
                    raise ValueError(f"param_groups[{i}] holds a tensor that is not a trainable "
                                     "parameter of model")
                if id(p) in seen:
                    raise ValueError(f"a parameter is in param_groups[{seen[id(p)]}] and "
                                     f"param_groups[{i}]")
                seen[id(p)] = i
            out.append({**g, "params": ps})
        if len(seen) != len(trainable):
            raise ValueError(f"param_groups cover {len(seen)} of the model's {len(trainable)} "
                             "trainable parameters; put every one in a group (or freeze it)")
        return out

    def _setup_device(self) -> None:
        cfg = self.config
        if cfg.device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            try:
                device = torch.device(cfg.device)
            except RuntimeError as exc:
                raise ValueError(f"TrainConfig.device {cfg.device!r} is not a device: {exc}") \
                    from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"TrainConfig.device={cfg.device!r} but CUDA is not available")
        if device.type not in ("cpu", "cuda"):
            backend = getattr(torch, device.type, None)
            available = getattr(backend, "is_available", None)
            if device.type == "meta" or available is None or not available():
                raise ValueError(f"TrainConfig.device={cfg.device!r} cannot train here (a "
                                 "'meta' tensor holds no values; other device types need their "
                                 "backend): use 'cpu', 'cuda' or None")
        self.dist = init_distributed(device)
        if device.type == "cuda" and device.index is None:
            if self.dist.distributed and self.dist.local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"process with LOCAL_RANK {self.dist.local_rank} has no CUDA device of its "
                    f"own ({torch.cuda.device_count()} visible); start at most one process per "
                    "GPU or name the device in TrainConfig.device")
            device = torch.device("cuda", self.dist.local_rank if self.dist.distributed
                                  else torch.cuda.current_device())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

    def _per_rank_batch(self) -> int:
        w = self.dist.world_size
        if self.config.batch_size % w:
            raise ValueError(f"TrainConfig.batch_size ({self.config.batch_size}) is the global "
                             f"batch and must be divisible by the number of processes ({w})")
        return self.config.batch_size // w

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(output, target)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar tensor (the batch mean), got "
                             + (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
                                else type(loss).__name__))
        return loss

    # -- checkpoint ------------------------------------------------------------------------
    def _check_out_dir(self) -> bool:
        """Create ``out_dir`` (errors name it); ``False`` when files cannot be written there
        (a finished run can still be read back from a read-only copy)."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"out_dir {str(self.out_dir)!r} exists and "
                                     "is not a folder")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe_writable(self.out_dir)
        except PermissionError:
            return False
        except OSError as exc:
            raise OSError(exc.errno, f"out_dir {str(self.out_dir)!r} cannot be created or "
                                     f"written: {exc.strerror or exc}") from None
        return True

    def _consistency(self, ckpt: Mapping[str, Any], meta: Mapping[str, Any]) -> List[str]:
        problems = []
        if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
            found = ckpt.get("format") if isinstance(ckpt, Mapping) else type(ckpt).__name__
            return [f"format {found!r} (expected {CHECKPOINT_FORMAT!r})"]
        missing = [k for k in ("model", "optimizer", "scheduler", "state", "rng", "config")
                   if k not in ckpt]
        if missing:
            return [f"entries {missing} missing (not a checkpoint written by this Trainer)"]
        saved = ckpt.get("config", {})
        now = self.config.trajectory_dict()
        for k in sorted(set(saved) | set(now)):
            if saved.get(k) != now.get(k):
                problems.append(f"config.{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}")
        for k in ("train_size", "val_size", "planned_steps"):
            if ckpt.get(k) != meta[k]:
                problems.append(f"{k}: checkpoint {ckpt.get(k)!r}, now {meta[k]!r}")
        own = self.model.state_dict()
        saved_model = dict(ckpt.get("model", {}))
        # Scan signatures are compared by content; checkpoints from before they existed have
        # none and still resume.
        for k in own:
            if k.rsplit(".", 1)[-1] == SIGNATURE_KEY:
                if k not in saved_model:
                    saved_model[k] = own[k]
                else:
                    problems += [f"model[{k!r}] {d}"
                                 for d in signature_differences(saved_model[k], own[k])]
        if set(saved_model) != set(own):
            problems.append("model parameter/buffer names differ: "
                            f"missing {sorted(set(own) - set(saved_model))[:5]}, "
                            f"unexpected {sorted(set(saved_model) - set(own))[:5]}")
        else:
            for k, v in own.items():
                if tuple(saved_model[k].shape) != tuple(v.shape):
                    problems.append(f"model[{k!r}] shape: checkpoint "
                                    f"{tuple(saved_model[k].shape)}, now {tuple(v.shape)}")
        return problems

    # -- public ----------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> FitResult:
        """Train, validating after each epoch; resume from ``out_dir/checkpoint.pt`` if present.

        Parameters
        ----------
        resume : bool
            ``True`` (default): continue the run saved in ``out_dir/checkpoint.pt`` (a finished
            run returns its result at once); it must come from the same trajectory config,
            dataset sizes and model, else ``RuntimeError`` lists the differences. A run
            with more epochs or steps is another trajectory (the cosine schedule spans the
            planned steps): train on in a new ``out_dir`` after :func:`load_weights` from
            ``best.pt``. ``False``: ignore and overwrite any checkpoint.

        Returns
        -------
        FitResult
            The model is left holding the best weights (also in ``out_dir/best.pt``) and in the
            train/eval mode it had before.

        Notes
        -----
        A fresh run seeds the global generators (:func:`seed_everything` with
        ``config.seed``); a resumed run restores the generators' states from the checkpoint.
        Under ``torchrun`` every process calls ``fit()``; rank 0 alone writes files.
        """
        cfg = self.config
        self._setup_device()
        device, info = self.device, self.dist
        main = info.is_main
        _check_torch_supports(cfg, device)
        model = self.model.to(device)
        was_training = model.training
        self._scaler = _grad_scaler(device) if cfg.amp == "float16" else None
        per_rank = self._per_rank_batch()
        sampler = DistributedSampler(self.train_set, num_replicas=info.world_size,
                                     rank=info.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=False)
        steps_per_epoch = math.ceil(len(sampler) / per_rank)
        planned = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            planned = min(planned, cfg.max_steps)
        meta = {"train_size": len(self.train_set),
                "val_size": None if self.val_set is None else len(self.val_set),
                "planned_steps": planned}
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(self.param_groups or params, lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=planned,
                                                               eta_min=cfg.min_lr)

        # ---- fresh start or resume
        state: Dict[str, Any] = {
            "epoch": 0, "batch_in_epoch": 0, "step": 0, "finished": False,
            "stopped_early": False, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0,
            "log": [], "train_seconds": 0.0, "timed_steps": 0,
            "partial": {"loss_sum": 0.0, "count": 0.0, "grad_sum": 0.0, "grad_count": 0.0},
            "epoch_seconds": 0.0, "epoch_timed_steps": 0, "epoch_lr": cfg.lr,
        }
        best_state: Optional[Dict[str, torch.Tensor]] = None
        resumed_epoch = resumed_step = None

        def log_meta() -> Dict[str, Any]:
            return {"config": cfg.to_dict(), **meta, "world_size": info.world_size,
                    "device": str(device), "finished": state["finished"],
                    "stopped_early": state["stopped_early"]}

        writable, problem = True, None
        if main:
            try:
                writable = self._check_out_dir()
            except OSError as exc:
                problem = exc
            else:
                for name in ("checkpoint.pt", "best.pt", "log.csv", "log.json"):
                    remove_stale_temporaries(self.out_dir / name)
        # Every rank learns rank 0's verdict, so that all stop together.
        writable, message = broadcast_object((writable, None if problem is None
                                              else str(problem)))
        if problem is not None:
            raise problem
        if message is not None:
            raise RuntimeError(f"rank 0 cannot use out_dir: {message}")
        barrier()
        if resume and self.checkpoint_path.is_file():
            ckpt = load_checkpoint(self.checkpoint_path)
            problems = self._consistency(ckpt, meta)
            if problems:
                # The cosine schedule spans the planned steps, so a longer run is another
                # trajectory: it starts afresh, from the trained weights if wanted.
                longer = all(p.split(":")[0] in ("config.epochs", "config.max_steps",
                                                 "planned_steps") for p in problems)
                raise RuntimeError(
                    f"{str(self.checkpoint_path)!r} belongs to a different run and cannot be "
                    "resumed (" + "; ".join(problems) + "); use another out_dir, delete the "
                    "checkpoint, or call fit(resume=False) to overwrite it"
                    + ("; to train on from these weights, start a run in another out_dir "
                       "after recon.train.load_weights(model, "
                       f"{str(self.best_path)!r})" if longer else ""))
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if self._scaler is not None and ckpt.get("scaler"):
                self._scaler.load_state_dict(ckpt["scaler"])
            for k in state:
                state[k] = ckpt["state"][k]
            state["log"] = [dict(r) for r in state["log"]]
            state["partial"] = dict(state["partial"])
            if not main:  # the partial sums are global; count them once
                state["partial"] = {k: 0.0 for k in state["partial"]}
            best_state = ckpt.get("best_model")
            rngs = ckpt["rng"]
            restore_rng(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
            resumed_epoch, resumed_step = int(state["epoch"]), int(state["step"])
            if main and writable:
                # A kill between writing best.pt / the logs and the checkpoint leaves them one
                # epoch ahead of (or behind) the checkpoint: rewrite them from it.
                if best_state is not None:
                    save_atomic(best_state, self.best_path)
                write_logs(self.out_dir, state["log"], meta=log_meta())
        else:
            seed_everything(cfg.seed)
        if not writable and not state["finished"]:
            raise PermissionError(errno.EACCES, f"out_dir {str(self.out_dir)!r} is not writable: "
                                  "the checkpoints, best weights and logs go there; make it "
                                  "writable or pass another out_dir")

        net: nn.Module = model
        if info.distributed and not state["finished"]:
            from torch.nn.parallel import DistributedDataParallel as DDP
            net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                      find_unused_parameters=cfg.find_unused_parameters)
        if cfg.compile and not state["finished"]:
            net = torch.compile(net)

        writer = make_tensorboard_writer(self.out_dir / "tensorboard") \
            if (cfg.tensorboard and main and not state["finished"]) else None

        def save_checkpoint() -> None:
            rngs = all_gather_objects(capture_rng())
            if main:
                save_atomic({
                    "format": CHECKPOINT_FORMAT, "config": cfg.trajectory_dict(), **meta,
                    "world_size": info.world_size, "steps_per_epoch": steps_per_epoch,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "state": copy.deepcopy(state),
                    "scaler": (self._scaler.state_dict() if self._scaler is not None
                               else None),
                    "best_model": best_state, "rng": rngs,
                }, self.checkpoint_path)
            barrier()

        try:
            while not state["finished"]:
                self._train_epoch(net, model, optimizer, scheduler, params, sampler, per_rank,
                                  steps_per_epoch, state, save_checkpoint, writer)
                ran = state["batch_in_epoch"]  # batches of this epoch (finished or capped)
                # ---- end of epoch: reduce, validate, early stopping, checkpoint, logs
                p = state["partial"]
                loss_sum, count, grad_sum, grad_count = all_reduce_sum(
                    [p["loss_sum"], p["count"], p["grad_sum"], p["grad_count"]], device)
                train_loss = loss_sum / max(count, 1.0)
                if not math.isfinite(train_loss):
                    raise FloatingPointError(
                        f"training loss is {train_loss} in epoch {state['epoch'] + 1}; lower "
                        "TrainConfig.lr or set grad_clip")
                val_loss = (mean_loss(model, self.val_set, self._loss, device, per_rank, info)
                            if self.val_set is not None else math.nan)
                state["epoch"] += 1
                epoch = state["epoch"]
                if self.val_set is None:
                    improved = True
                else:
                    improved = val_loss < state["best_val"] - cfg.min_delta
                if improved:
                    state["best_val"] = val_loss if self.val_set is not None else math.nan
                    state["best_epoch"] = epoch
                    state["bad_epochs"] = 0
                    best_state = _cpu_state(model)
                    if main:
                        save_atomic(best_state, self.best_path)
                else:
                    state["bad_epochs"] += 1
                epoch_seconds, timed = state["epoch_seconds"], state["epoch_timed_steps"]
                row = {"epoch": epoch, "step": state["step"], "train_loss": train_loss,
                       "val_loss": val_loss, "lr": state["epoch_lr"],
                       "grad_norm": grad_sum / grad_count if grad_count else None,
                       "epoch_seconds": epoch_seconds,
                       "seconds_per_step": epoch_seconds / timed if timed else None,
                       "best_val_loss": state["best_val"], "improved": bool(improved)}
                state["log"].append(row)
                state["batch_in_epoch"] = 0
                state["epoch_seconds"], state["epoch_timed_steps"] = 0.0, 0
                state["partial"] = {"loss_sum": 0.0, "count": 0.0, "grad_sum": 0.0,
                                    "grad_count": 0.0}
                if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                    state["stopped_early"] = True
                    state["finished"] = True
                if epoch >= cfg.epochs or (cfg.max_steps is not None
                                           and state["step"] >= cfg.max_steps) or ran == 0:
                    state["finished"] = True
                save_checkpoint()
                if main:
                    write_logs(self.out_dir, state["log"], meta=log_meta())
                    if writer is not None:
                        writer.add_scalar("epoch/train_loss", train_loss, epoch)
                        if self.val_set is not None:
                            writer.add_scalar("epoch/val_loss", val_loss, epoch)
                        writer.add_scalar("epoch/lr", row["lr"], epoch)
                        writer.flush()
        finally:
            if writer is not None:
                writer.close()

        # ---- the best weights, everywhere
        if best_state is not None:
            model.load_state_dict(best_state)
            if main and writable and not self.best_path.is_file():
                save_atomic(best_state, self.best_path)
        barrier()
        model.train(was_training)
        log = tuple(dict(r) for r in state["log"])
        sps = state["train_seconds"] / state["timed_steps"] if state["timed_steps"] else math.nan
        return FitResult(
            best_val_loss=float(state["best_val"]) if self.val_set is not None else math.nan,
            best_epoch=int(state["best_epoch"]), epochs_run=int(state["epoch"]),
            steps=int(state["step"]), seconds_per_step=float(sps), best_path=self.best_path,
            checkpoint_path=self.checkpoint_path, out_dir=self.out_dir,
            stopped_early=bool(state["stopped_early"]), resumed_from_epoch=resumed_epoch,
            resumed_from_step=resumed_step,
            final_train_loss=float(log[-1]["train_loss"]) if log else math.nan, log=log)

    def _autocast(self):
        """The training forward pass's autocast region (``TrainConfig.amp``), or none."""
        if self.config.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type,
                              dtype=getattr(torch, self.config.amp))

    def _train_epoch(self, net, model, optimizer, scheduler, params, sampler, per_rank,
                     steps_per_epoch, state, save_checkpoint, writer) -> None:
        """One (possibly resumed, possibly capped) pass; updates ``state`` in place."""
        cfg, device = self.config, self.device
        epoch = state["epoch"]
        sampler.set_epoch(epoch)
        skip = state["batch_in_epoch"]
        indices = list(sampler)[skip * per_rank:]
        # pinning only pays with worker processes, and fails on datasets that already live on
        # the GPU (which need num_workers=0)
        loader = make_loader(self.train_set, indices, per_rank,
                             seed=((cfg.seed * 1_000_003 + epoch) * 1009 + self.dist.rank)
                             % (1 << 63),  # torch seeds are 64-bit; any TrainConfig.seed works
                             num_workers=cfg.num_workers,
                             pin_memory=device.type == "cuda" and cfg.num_workers > 0)
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps_per_epoch, initial=skip, leave=False, dynamic_ncols=True,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}")
        p = state["partial"]
        loss_acc = torch.zeros((), dtype=torch.float64, device=device)
        grad_acc = torch.zeros((), dtype=torch.float64, device=device)
        count = grads = 0
        net.train()
        t0 = time.perf_counter()
        timed = 0

        def flush() -> None:
            nonlocal loss_acc, grad_acc, count, grads
            p["loss_sum"] += float(loss_acc)
            p["grad_sum"] += float(grad_acc)
            p["count"] += count
            p["grad_count"] += grads
            loss_acc.zero_()
            grad_acc.zero_()
            count = grads = 0

        try:
            for batch in loader:
                if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                    break
                inp, tgt = split_batch(batch, "train_set")
                inp, tgt = to_device(inp, device), to_device(tgt, device)
                n = batch_len(inp)
                optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    loss = self._loss(net(inp), tgt)
                scaler = self._scaler
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if cfg.grad_clip is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    gn = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    grad_acc += gn.detach().to(torch.float64)
                    grads += 1
                state["epoch_lr"] = optimizer.param_groups[0]["lr"]
                if scaler is not None:  # skips the step when the scaled gradients overflowed
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                state["step"] += 1
                state["batch_in_epoch"] += 1
                timed += 1
                loss_acc += loss.detach().to(torch.float64) * n
                count += n
                if state["step"] % cfg.log_every == 0:
                    value = float(loss.detach())
                    # every process takes the same decision (no rank left in a collective)
                    (bad,) = all_reduce_sum([0.0 if math.isfinite(value) else 1.0], device)
                    if bad:
                        raise FloatingPointError(
                            f"training loss is not finite at step {state['step']} (here "
                            f"{value}); lower TrainConfig.lr or set grad_clip")
                    if bar is not None:
                        bar.set_postfix(loss=f"{value:.4g}",
                                        lr=f"{optimizer.param_groups[0]['lr']:.3g}")
                    if writer is not None:
                        writer.add_scalar("step/train_loss", value, state["step"])
                        writer.add_scalar("step/lr", optimizer.param_groups[0]["lr"],
                                          state["step"])
                if bar is not None:
                    bar.update(1)
                if (cfg.checkpoint_every is not None
                        and state["step"] % cfg.checkpoint_every == 0
                        and state["batch_in_epoch"] < steps_per_epoch):
                    flush()
                    p_global = all_reduce_sum([p["loss_sum"], p["count"], p["grad_sum"],
                                               p["grad_count"]], device)
                    local = dict(p)
                    state["partial"] = dict(zip(("loss_sum", "count", "grad_sum", "grad_count"),
                                                p_global))
                    seconds = time.perf_counter() - t0
                    state["train_seconds"] += seconds
                    state["timed_steps"] += timed
                    state["epoch_seconds"] += seconds
                    state["epoch_timed_steps"] += timed
                    save_checkpoint()
                    state["partial"] = local
                    p = local
                    t0, timed = time.perf_counter(), 0
            flush()
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        state["timed_steps"] += timed
        state["epoch_seconds"] += seconds
        state["epoch_timed_steps"] += timed
        state["partial"] = p

    def evaluate(self, dataset: Dataset, metrics_fn: Optional[MetricsFn] = None,
                 batch_size: Optional[int] = None,
                 return_values: bool = False) -> Dict[str, Dict[str, Any]]:
        """Loss and metrics of the model (as it is now: the best weights after :meth:`fit`).

        Meant for the test split, once, at the end. Under DDP every process must call it; each
        takes a shard and the values are gathered.

        Parameters
        ----------
        dataset : Dataset
            ``(input, target)`` pairs.
        metrics_fn : callable, optional
            ``metrics_fn(output, target) -> {name: values}`` with per-sample values of shape
            ``(B,)`` (a scalar counts as the value of every sample of its batch), e.g. PSNR and
            SSIM from :mod:`recon.metrics`.
        batch_size : int, optional
            Per-process batch (default: ``config.batch_size`` divided by the processes).
        return_values : bool
            Also return each metric's per-sample values (dataset order) under ``"values"``.

        Returns
        -------
        dict
            ``{"loss": {"mean", "std", "n"}, name: {"mean", "std", "n"}, ...}``; ``std`` is the
            population standard deviation over samples; ``loss`` is ``loss_fn`` per sample.
        """
        check_dataset("dataset", dataset)
        if metrics_fn is not None and not callable(metrics_fn):
            raise TypeError("metrics_fn must be callable(output, target) -> dict or None")
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.device is None:
            self._setup_device()
        model = self.model.to(self.device)
        return evaluate_model(model, dataset, self._loss, metrics_fn, self.device,
                              batch_size or self._per_rank_batch(), self.dist, return_values)
