"""Batches of ``(input, target)`` pairs: checks, device moves, per-sample slicing, loaders."""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["check_dataset", "split_batch", "to_device", "batch_len", "take", "make_loader"]


def check_dataset(name: str, ds: Any, allow_none: bool = False) -> None:
    """Raise naming ``name`` unless ``ds`` is a non-empty map-style dataset (or allowed None)."""
    if ds is None and allow_none:
        return
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise TypeError(f"{name} must be a map-style dataset (with __len__ and __getitem__) "
                        f"yielding (input, target) pairs, got {type(ds).__name__}")
    if len(ds) < 1:
        raise ValueError(f"{name} is empty")


def split_batch(batch: Any, name: str) -> Tuple[Any, Any]:
    """``(input, target)`` of a collated batch; ``TypeError`` naming the dataset otherwise."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        what = type(batch).__name__
        if isinstance(batch, (tuple, list)):
            what += f" of length {len(batch)}"
        raise TypeError(f"{name} must yield (input, target) pairs; a batch came as {what}")
    return batch[0], batch[1]


def to_device(x: Any, device: torch.device) -> Any:
    """Move a tensor, or a tuple / list / dict of them, to ``device`` (non-blocking)."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def batch_len(x: Any) -> int:
    """Length of the leading (batch) axis of a tensor or of the first tensor of a structure."""
    if isinstance(x, torch.Tensor):
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x:
        return batch_len(x[0])
    if isinstance(x, Mapping) and x:
        return batch_len(next(iter(x.values())))
    raise TypeError("cannot tell the batch size of an input of type " + type(x).__name__)


def take(x: Any, i: int) -> Any:
    """Sample ``i`` of a batch (tensor, or tuple / list / dict of them), batch axis kept."""
    if isinstance(x, torch.Tensor):
        return x[i:i + 1]
    if isinstance(x, (tuple, list)):
        return type(x)(take(v, i) for v in x)
    if isinstance(x, Mapping):
        return {k: take(v, i) for k, v in x.items()}
    return x


def _worker_init(worker_id: int) -> None:
    # Each DataLoader worker gets torch seed base_seed + worker_id; derive NumPy/random from it.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: Dataset, indices: Sequence[int], batch_size: int, seed: int,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``dataset[indices]`` in that order, with its own seeded generator.

    The generator (not torch's global one) seeds the workers, so loading never changes the
    global RNG stream and a resumed run sees the same numbers as an uninterrupted one (with
    workers: for datasets whose items are a function of their index, see ``Trainer``).
    """
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=list(indices), shuffle=False,
                      num_workers=num_workers, generator=g,
                      worker_init_fn=_worker_init if num_workers else None,
                      pin_memory=pin_memory, drop_last=False)
