"""Cached tables are built outside CUDA-graph memory pools (``operators/_graph_pools.py``).

The pools route allocations per thread, so the builds of the backends' caches run in a helper
thread on CUDA. The pool itself needs a GPU (``test_compile.py``'s
``test_compiled_triton_backend_on_the_gpu[reduce-overhead]`` records the CUDA graph); here the
thread hand-off, the tensors it marks, and the backends' use of it are checked on the CPU.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

import operators as op
from operators import _graph_pools


def test_the_helper_thread_returns_the_value_without_autograd():
    seen = {}

    def build():
        seen["thread"] = threading.current_thread().name
        seen["grad"] = torch.is_grad_enabled()
        return {"table": torch.arange(3.0)}

    value = _graph_pools.run_in_helper_thread(build, torch.device("cpu"))
    assert seen == {"thread": "known-operators table build", "grad": False}
    assert torch.equal(value["table"], torch.arange(3.0))


def test_the_helper_threads_exception_reaches_the_caller():
    def build():
        raise ValueError("table must have shape (4, views, detectors)")

    with pytest.raises(ValueError, match="table must have shape"):
        _graph_pools.run_in_helper_thread(build, torch.device("cpu"))


def test_every_tensor_of_a_cache_is_found_csr_arrays_included():
    csr = torch.eye(3).to_sparse_csr()
    cache = {"a": torch.zeros(2), "nested": ({"b": torch.ones(1)}, [csr]), "code": 3}
    found = list(_graph_pools._tensors(cache))
    assert len(found) == 5 and all(t.layout == torch.strided for t in found)


def test_cpu_builds_run_in_the_calling_thread():
    assert _graph_pools.build_outside_graph_pools(
        lambda: threading.current_thread().name, torch.device("cpu")) == \
        threading.current_thread().name


@pytest.mark.parametrize("backend", ["sparse", "fbp"])
def test_the_caches_are_built_through_the_helper(monkeypatch, backend):
    """With the helper forced on (as on CUDA), the sparse matrices and FBP's back-projection
    matrices are built in the helper thread and give the same results."""
    grid = op.ImageGrid(shape=(10, 12))
    geom = op.FanGeometry.short_scan(9, 25, 1.2, 60.0, 110.0, "curved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", op.FieldOfViewWarning)
        make = ((lambda: op.XRayTransform(grid, geom, backend="sparse")) if backend == "sparse"
                else (lambda: op.FBP(grid, geom)))
        expected_layer, layer = make(), make()
    y = torch.rand(2, *(grid.shape if backend == "sparse" else geom.sinogram_shape),
                   dtype=torch.float64)
    threads = []

    def helper(build, device):
        def traced():
            threads.append(threading.current_thread().name)
            return build()
        return _graph_pools.run_in_helper_thread(traced, device)

    monkeypatch.setattr(_graph_pools, "_needs_helper_thread", lambda device: True)
    monkeypatch.setattr(_graph_pools, "build_outside_graph_pools", helper)
    import operators.backends.sparse as sparse_module
    import operators.fbp as fbp_module
    monkeypatch.setattr(sparse_module, "build_outside_graph_pools", helper)
    monkeypatch.setattr(fbp_module, "build_outside_graph_pools", helper)
    out = layer(y)
    assert threads == ["known-operators table build"]
    torch.testing.assert_close(out, expected_layer(y), rtol=0, atol=0)
