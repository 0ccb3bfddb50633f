"""Checkpoints: atomic writes, ``weights_only`` loading, user weights.

Everything a checkpoint holds is a tensor or a plain Python value (dict, list, tuple, str, int,
float, bool, None), so ``torch.load(path, weights_only=True)`` reads it: no pickled code runs when
a checkpoint is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch
from torch import nn

from .atomic import remove_stale_temporaries, write_atomic

__all__ = ["save_atomic", "load_checkpoint", "load_weights", "remove_stale_temporaries"]

PathLike = Union[str, os.PathLike]


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` into a temporary file in the same folder, fsync, then ``os.replace``.

    A reader (or a process killed mid-write) sees either the old file or the new one, never a
    truncated one. Returns the path.
    """
    return write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` onto the CPU; clear errors if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise RuntimeError(f"cannot read checkpoint {str(path)!r} with weights_only=True: "
                           f"{exc}") from exc


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_weights(model: nn.Module, path: PathLike, strict: bool = True) -> nn.Module:
    """Load trained weights into ``model`` (in place) and return it.

    Parameters
    ----------
    model : nn.Module
        A model built the same way as the trained one (same operator geometry: an
        :class:`operators.XRayTransform` refuses view angles of another geometry).
    path : str or Path
        ``best.pt`` (a bare ``state_dict``) or ``checkpoint.pt`` (its ``"model"`` entry) written
        by :class:`recon.train.Trainer`; read with ``weights_only=True`` and mapped to the
        model's device. A ``module.`` prefix (saved from a DDP wrapper) is removed.
    strict : bool
        As in ``nn.Module.load_state_dict``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    obj = load_checkpoint(path)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping) \
            and "format" in obj:
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, not a state_dict")
    model.load_state_dict(_strip_prefix(obj, "module."), strict=strict)
    return model
