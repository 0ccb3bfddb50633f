"""Module-level skip for the tests of the Triton kernels: Triton must be installed and at least
the release the kernels are tested with where they will run (its interpreter needs a newer one
than a GPU; see ``operators.backends.triton_backend.min_triton``)."""

from __future__ import annotations

import pytest


def skip_unless_triton_runs_the_kernels(interpreting: bool) -> None:
    """Skip the calling test module unless the installed Triton can run the kernels,
    ``interpreting`` (``TRITON_INTERPRET=1``, on the CPU) or compiled for a GPU."""
    triton = pytest.importorskip("triton")
    from operators.backends.triton_backend import triton_version_problem

    problem = triton_version_problem(getattr(triton, "__version__", "0"), interpreting)
    if problem:
        pytest.skip(problem, allow_module_level=True)
