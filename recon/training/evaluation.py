"""Loss and metrics of a model over a dataset, sharded over processes and gathered."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .batches import batch_len, make_loader, split_batch, take, to_device
from .distributed import DistInfo, all_gather_objects, all_reduce_sum

__all__ = ["mean_loss", "evaluate_model"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[Any, Any], Mapping[str, Union[torch.Tensor, float]]]


@torch.no_grad()
def mean_loss(model: nn.Module, dataset: Dataset, loss: LossFn, device: torch.device,
              batch_size: int, dist: DistInfo, name: str = "val_set") -> float:
    """Sample-weighted mean of ``loss`` over ``dataset`` (process ``r`` of ``W`` takes samples
    ``r, r + W, ...``; the sums are all-reduced). ``model`` is used in eval mode."""
    indices = range(dist.rank, len(dataset), dist.world_size)
    was = model.training
    model.eval()
    total = count = 0.0
    try:
        for batch in make_loader(dataset, indices, batch_size, seed=0):
            inp, tgt = split_batch(batch, name)
            inp, tgt = to_device(inp, device), to_device(tgt, device)
            n = batch_len(inp)
            total += float(loss(model(inp), tgt)) * n
            count += n
    finally:
        model.train(was)
    total, count = all_reduce_sum([total, count], device)
    return total / count


def _per_sample(name: str, vals: Any, n: int) -> List[float]:
    t = torch.as_tensor(vals).detach().to("cpu", torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"metrics_fn returned {t.numel()} values for {name!r} on a batch of "
                         f"{n}; return shape (B,) or a scalar")
    return t.tolist()


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, loss: LossFn,
                   metrics_fn: Optional[MetricsFn], device: torch.device, batch_size: int,
                   dist: DistInfo, return_values: bool = False) -> Dict[str, Dict[str, Any]]:
    """Per-sample loss and metrics over ``dataset``; ``{name: {"mean", "std", "n"}}``.

    See :meth:`recon.train.Trainer.evaluate`. Every process must call it (the per-sample values
    are gathered; each process returns the statistics of the whole dataset).
    """
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    was = model.training
    model.eval()
    records: Dict[str, List[Tuple[int, float]]] = {"loss": []}
    pos = 0
    try:
        for b in make_loader(dataset, indices, batch_size, seed=0):
            inp, tgt = split_batch(b, "dataset")
            inp, tgt = to_device(inp, device), to_device(tgt, device)
            n = batch_len(inp)
            out = model(inp)
            ids = indices[pos:pos + n]
            pos += n
            records["loss"].extend((ids[i], float(loss(take(out, i), take(tgt, i))))
                                   for i in range(n))
            if metrics_fn is not None:
                metrics = metrics_fn(out, tgt)
                if not isinstance(metrics, Mapping):
                    raise TypeError("metrics_fn must return a dict {name: values}, got "
                                    f"{type(metrics).__name__}")
                for name, vals in metrics.items():
                    records.setdefault(str(name), []).extend(
                        zip(ids, _per_sample(str(name), vals, n)))
    finally:
        model.train(was)
    gathered = all_gather_objects(records)
    names = list(dict.fromkeys(k for part in gathered for k in part))  # a shard may be empty
    stats: Dict[str, Dict[str, Any]] = {}
    for name in names:
        pairs = sorted(pr for part in gathered for pr in part.get(name, []))
        vals = np.array([v for _, v in pairs], dtype=np.float64)
        stats[name] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.size)}
        if return_values:
            stats[name]["values"] = vals.tolist()
    return stats
