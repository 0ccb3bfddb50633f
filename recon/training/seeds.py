"""Several seeds of one training, summarised as mean and standard deviation.

Reporting a learned method over several seeds (not one lucky run) is what the seed paper asks
for (Maier et al., "Learning with known operators reduces maximum error bounds", Nature Machine
Intelligence 2019, and its precision-learning predecessors).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from .config import TrainConfig
from .evaluation import LossFn, MetricsFn
from .rng import seed_everything
from .trainer import FitResult, Trainer

__all__ = ["SeedRun", "train_seeds", "summarize_seeds"]


@dataclass(frozen=True)
class SeedRun:
    """One seed's run: its :class:`FitResult` and (if a test set was given) test metrics."""

    seed: int
    fit: FitResult
    test: Optional[Dict[str, Dict[str, Any]]] = None

    def metrics(self) -> Dict[str, float]:
        """Flat scalars: ``best_val_loss``, ``seconds_per_step``, ``epochs_run``, ``steps`` and
        the mean of every test metric (``test_<name>``)."""
        out = {"best_val_loss": self.fit.best_val_loss,
               "seconds_per_step": self.fit.seconds_per_step,
               "epochs_run": float(self.fit.epochs_run), "steps": float(self.fit.steps)}
        for name, stats in (self.test or {}).items():
            out[f"test_{name}"] = float(stats["mean"])
        return out


def train_seeds(build_fn: Callable[[int], nn.Module], seeds: Sequence[int], *,
                train_set: Dataset, val_set: Optional[Dataset], config: TrainConfig,
                out_dir: Union[str, Path], loss_fn: Optional[LossFn] = None,
                test_set: Optional[Dataset] = None,
                metrics_fn: Optional[MetricsFn] = None) -> List[SeedRun]:
    """Train one model per seed (each resumable) and evaluate each on the test set once.

    Parameters
    ----------
    build_fn : callable
        ``build_fn(seed) -> nn.Module``; called right after :func:`seed_everything(seed)
        <recon.train.seed_everything>`, so the initialisation is reproducible.
    seeds : sequence of int
        Distinct non-negative seeds; seed ``s`` trains with ``dataclasses.replace(config,
        seed=s)`` into ``out_dir/seed<s>``.
    train_set, val_set, config, loss_fn :
        As for :class:`recon.train.Trainer`.
    test_set : Dataset, optional
        Evaluated once per seed after training (best weights), with ``metrics_fn``.

    Returns
    -------
    list of SeedRun
        In the order of ``seeds``; :func:`summarize_seeds` turns them into mean and std.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if not callable(build_fn):
        raise TypeError("build_fn must be callable(seed) -> nn.Module")
    runs = []
    for s in seeds:
        seed_everything(int(s))
        model = build_fn(int(s))
        trainer = Trainer(model, loss_fn, train_set, val_set,
                          dataclasses.replace(config, seed=int(s)), Path(out_dir) / f"seed{s}")
        fit = trainer.fit()
        test = trainer.evaluate(test_set, metrics_fn) if test_set is not None else None
        runs.append(SeedRun(seed=int(s), fit=fit, test=test))
    return runs


def _scalars(item: Any) -> Dict[str, float]:
    if isinstance(item, SeedRun):
        return item.metrics()
    if isinstance(item, FitResult):
        return {"best_val_loss": item.best_val_loss, "seconds_per_step": item.seconds_per_step,
                "epochs_run": float(item.epochs_run), "steps": float(item.steps)}
    if isinstance(item, Mapping):
        out = {}
        for k, v in item.items():
            if isinstance(v, Mapping) and "mean" in v:
                v = v["mean"]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                continue
            out[str(k)] = float(v)
        return out
    raise TypeError("summarize_seeds takes SeedRun, FitResult or {name: number} items, got "
                    f"{type(item).__name__}")


def summarize_seeds(results: Sequence[Any], ddof: int = 0) -> Dict[str, Dict[str, Any]]:
    """Mean and standard deviation over seeds of every metric the results share.

    Parameters
    ----------
    results : sequence
        :class:`SeedRun`, :class:`FitResult`, or mappings ``{name: number}`` (a value
        ``{"mean": m, ...}``, as :meth:`Trainer.evaluate` returns, counts as ``m``).
    ddof : int
        Delta degrees of freedom of the std: 0 (population, as ``experiments.common.mean_std``)
        or 1 (sample).

    Returns
    -------
    dict
        ``{name: {"mean": float, "std": float, "n": int, "values": [...]}}`` for each metric
        present in every result; non-finite values are kept (they propagate to the mean).
    """
    items = [_scalars(r) for r in results]
    if not items:
        raise ValueError("results is empty")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    names = [k for k in items[0] if all(k in it for it in items[1:])]
    out: Dict[str, Dict[str, Any]] = {}
    for k in names:
        vals = np.array([it[k] for it in items], dtype=np.float64)
        std = float(vals.std(ddof=ddof)) if vals.size > ddof else math.nan
        out[k] = {"mean": float(vals.mean()), "std": std, "n": int(vals.size),
                  "values": vals.tolist()}
    return out
