"""Training logs: per-epoch rows in ``log.csv`` and ``log.json`` (atomic), optional TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from .atomic import write_atomic

__all__ = ["EPOCH_COLUMNS", "write_text_atomic", "write_logs", "make_tensorboard_writer"]

#: Columns of ``log.csv`` (and keys of each ``log.json`` epoch entry), in order: the 1-based
#: epoch, optimiser steps so far, mean training loss of the epoch (over all processes), validation
#: loss after it, learning rate of its last step, mean pre-clipping gradient norm (empty without
#: clipping), wall seconds of its training steps (no validation) and per step, the best
#: validation loss so far, and whether this epoch improved it.
EPOCH_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "epoch_seconds",
                 "seconds_per_step", "best_val_loss", "improved")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file and ``os.replace``)."""
    write_atomic(path, lambda f: f.write(text), binary=False)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_logs(out_dir: Path, epochs: List[Mapping[str, Any]],
               meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``out_dir/log.csv`` (one row per epoch) and ``out_dir/log.json``.

    ``log.json`` is ``{"meta": {...}, "epochs": [{column: value}, ...]}``; non-finite numbers
    become ``null`` (CSV: empty cell for ``None``).
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EPOCH_COLUMNS), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in epochs:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in EPOCH_COLUMNS})
    write_text_atomic(Path(out_dir) / "log.csv", buf.getvalue())
    doc: Dict[str, Any] = {"meta": dict(meta or {}),
                           "epochs": [{k: _json_value(row.get(k)) for k in EPOCH_COLUMNS}
                                      for row in epochs]}
    write_text_atomic(Path(out_dir) / "log.json", json.dumps(doc, indent=2) + "\n")


def make_tensorboard_writer(log_dir: Path):
    """A ``torch.utils.tensorboard.SummaryWriter`` for ``log_dir``; ImportError naming the fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TrainConfig(tensorboard=True) needs the 'tensorboard' package, which is not "
            "installed: pip install tensorboard (or pip install 'known-operators[tensorboard]'), "
            "or set tensorboard=False") from exc
    return SummaryWriter(log_dir=str(log_dir))
