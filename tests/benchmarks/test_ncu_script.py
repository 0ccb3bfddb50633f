"""``benchmarks/ncu_kernels.py``, the launches the GPU session profiles with Nsight Compute:
a dry run in Triton's interpreter, so that the script cannot fail on the GPU machine for a
reason a CPU run would have shown, and its case names are checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..triton_floor import skip_unless_triton_runs_the_kernels

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "ncu_kernels.py"


def _run(*args):
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_one_forward_and_one_adjoint_per_case_with_the_kernels_named():
    skip_unless_triton_runs_the_kernels(interpreting=True)
    proc = _run()  # the default cases; P512 has no tiny version and is left out of a dry run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    profiled = [ln for ln in lines if ln.startswith("profiled: ")]
    assert [ln.split()[1] for ln in profiled] == ["P256", "F256"]
    assert "joseph_forward_kernel grid (" in profiled[0]
    assert "then joseph_adjoint_parallel_kernel grid (" in profiled[0]
    assert "then joseph_adjoint_kernel grid (" in profiled[1]  # fan beam: the generic adjoint
    # Each case's forward again with its tiles longest first (v6; the default takes them in
    # the grid's order).
    for ln in profiled:
        assert ln.endswith("then joseph_forward_kernel with tile_order='longest_first' "
                           "(the other tile_order)"), ln
    assert lines[-1].startswith("6 launches on cpu")
    # or with the other pair addressing (tiny P256, batch 4: the default takes v5's, so the
    # third launch is v4's)
    proc = _run("--cases", "P256", "--other", "pair_offset")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ("then joseph_forward_kernel with pair_offset=False (the other pair_offset)"
            in proc.stdout)
    assert proc.stdout.splitlines()[-1].startswith("3 launches on cpu")
    proc = _run("--cases", "P256", "--other", "none")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].startswith("2 launches on cpu")


def test_unknown_cases_and_the_memory_case_are_usage_errors():
    for cases in ("P999", "M512", ","):
        proc = _run("--cases", cases)
        assert proc.returncode == 2, (cases, proc.stderr)
        assert "error: argument --cases: " in proc.stderr and "Traceback" not in proc.stderr
        assert "choose from P256, P512, P128s, F256" in proc.stderr
    proc = _run("--warmup", "0")
    assert proc.returncode == 2 and "error: argument --warmup: " in proc.stderr
