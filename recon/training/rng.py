"""Seeding, and the states of the global random generators as ``weights_only``-safe values."""

from __future__ import annotations

import random
from typing import Any, Dict, Mapping

import numpy as np
import torch

__all__ = ["seed_everything", "capture_rng", "restore_rng"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's and torch's (CPU and all CUDA devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> Dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators, as tensors
    and plain values (``weights_only``-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [int(py_version), torch.tensor(py_state, dtype=torch.int64),
                   None if py_gauss is None else float(py_gauss)],
        "numpy": [str(np_name), torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states restored for as many devices as both have)."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state.tolist()), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), int(np_pos),
                         int(np_has_gauss), float(np_gauss)))
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda = list(state.get("cuda", []))
    if cuda and torch.cuda.is_available():
        for i in range(min(len(cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda[i].to(torch.uint8), i)
