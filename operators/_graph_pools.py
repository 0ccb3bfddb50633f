"""Building cached device tensors outside CUDA-graph memory pools.

The backends build tables and matrices on their first call for a device (and cache them until
the operator moves). Under ``torch.compile(mode="reduce-overhead")`` that first call is
usually a CUDA-graph *warm-up* run, during which PyTorch sends every allocation of the calling
thread to the graph's private memory pool (``torch._C._cuda_beginAllocateCurrentThreadToPool``
in ``torch/_inductor/cudagraph_trees.py``). A cache made there outlives the run without being
one of its outputs, and the graph is refused when it is recorded ("Detected N tensor(s) in the
cudagraph pool not tracked as outputs"; seen on an H100 with torch 2.11). The routing is per
thread, so :func:`build_outside_graph_pools` runs the build in a helper thread, whose
allocations come from the ordinary pool.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def _tensors(value):
    """The strided tensors in ``value`` (CSR matrices as their three arrays)."""
    if isinstance(value, torch.Tensor):
        if value.layout == torch.sparse_csr:
            yield from (value.crow_indices(), value.col_indices(), value.values())
        else:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def _needs_helper_thread(device: torch.device) -> bool:
    # During a capture itself nothing may be allocated from another thread (and graph-owned
    # tables are what a capture by hand expects); the tables are built in the warm-up before.
    return device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def build_outside_graph_pools(build: Callable[[], T], device: torch.device) -> T:
    """``build()``, with the CUDA tensors it makes allocated outside any CUDA-graph pool.

    On CUDA (when no graph is being captured) ``build`` runs in a helper thread on ``device``
    and that thread's current stream, without autograd, after the calling thread's stream has
    finished its pending work (``build`` may read tensors it wrote); the calling thread waits
    for it, and every CUDA tensor in the result (in nested dicts, tuples and lists) is marked
    as used on the calling thread's stream (``Tensor.record_stream``), so that the allocator
    does not reuse its memory while that stream may still read it. Exceptions propagate. On
    other devices ``build()`` is simply called.
    """
    device = torch.device(device)
    if not _needs_helper_thread(device):
        return build()
    caller_stream = torch.cuda.current_stream(device)
    caller_stream.synchronize()
    value = run_in_helper_thread(build, device)
    for t in _tensors(value):
        if t.is_cuda:
            t.record_stream(caller_stream)
    return value


def run_in_helper_thread(build: Callable[[], T], device: torch.device) -> T:
    """``build()`` in a new thread without autograd (on ``device`` and, for CUDA, waiting for
    that thread's stream before returning); its result is returned and its exception raised
    in the calling thread."""
    device = torch.device(device)
    outcome = {}

    def run():
        try:
            with torch.no_grad():
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        outcome["value"] = build()
                        torch.cuda.current_stream(device).synchronize()
                else:
                    outcome["value"] = build()
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="known-operators table build", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
