"""One code path for one process or many: ``torch.distributed`` set-up and small collectives.

A training launched as ``python script.py`` runs without a process group; launched as
``torchrun --nproc_per_node=N script.py`` (environment variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) it joins the group through ``env://`` with the
``nccl`` backend on CUDA and ``gloo`` on the CPU. :func:`run_distributed` spawns such a group from
Python (tests, notebooks).
"""

from __future__ import annotations

import atexit
import os
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "dist_info", "run_distributed", "barrier",
           "all_reduce_sum", "all_gather_objects", "broadcast_object"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (0 of 1 without a group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """The rank and world size of the current process group (``DistInfo()`` without one)."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


def init_distributed(device: Optional[torch.device] = None,
                     backend: Optional[str] = None) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment, if any; idempotent.

    Parameters
    ----------
    device : torch.device, optional
        The device the training runs on; picks the backend (``nccl`` for CUDA, else ``gloo``).
    backend : str, optional
        Force a backend.

    Returns
    -------
    DistInfo
        ``DistInfo()`` (rank 0 of 1) when the environment names no group.
    """
    if not dist.is_available():
        return DistInfo()
    if dist.is_initialized():
        return dist_info()
    if not all(v in os.environ for v in _TORCHRUN_VARS):
        return DistInfo()
    if backend is None:
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy_at_exit)  # we made the group: we also take it down
    return dist_info()


def _destroy_at_exit() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """``dist.barrier()`` when a group exists; nothing otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device) -> List[float]:
    """Sum a few floats over all processes (float64); returns them unchanged without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_objects(obj: Any) -> List[Any]:
    """Each process's ``obj``, in rank order (``[obj]`` without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (``obj`` itself without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(rank: int, fn: Callable, world_size: int, backend: str, port: int,
             result_dir: str, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                            world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(result_dir) / f"rank{rank}.pt")
        dist.barrier()
        # Past the barrier every rank has saved its result: what follows is teardown only.
        (Path(result_dir) / f"rank{rank}.done").touch()
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable, world_size: int, backend: str = "gloo",
                    args: Sequence[Any] = ()) -> List[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes forming a group.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function; inside it ``torch.distributed`` is initialised
        (``env://`` on 127.0.0.1 with a free port), so a :class:`~recon.train.Trainer` created there
        trains with DistributedDataParallel.
    world_size : int
        Number of processes (>= 1).
    backend : str
        ``"gloo"`` (CPU) or ``"nccl"`` (one CUDA device per process).
    args : sequence
        Extra positional arguments (picklable).

    Returns
    -------
    list
        ``fn``'s return value of each rank, in rank order (sent back through ``torch.save``).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise RuntimeError(f"backend='nccl' needs {world_size} CUDA devices, found "
                           f"{torch.cuda.device_count()}")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="run_distributed_") as tmp:
        context = mp.spawn(_spawned, args=(fn, world_size, backend, _free_port(), tmp,
                                           tuple(args)), nprocs=world_size, join=False)
        try:
            while not context.join():
                pass
        except mp.ProcessExitedException as exc:
            # gloo can abort a process while it tears down (SIGABRT, "terminate called without
            # an active exception"), after every rank has finished and saved its result; that
            # loses nothing, so keep the results and say so. A crash before that is an error.
            if not all((Path(tmp) / f"rank{r}.done").exists() for r in range(world_size)):
                raise
            warnings.warn(f"run_distributed: {exc} after every rank had finished and saved "
                          "its result (a crash in the process group's teardown); the results "
                          "are kept", RuntimeWarning, stacklevel=2)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False)
                for r in range(world_size)]
