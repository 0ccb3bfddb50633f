"""``benchmarks/memcheck_kernels.py``, the launch sweep the GPU session runs under
``compute-sanitizer --tool memcheck``: its quick subset in Triton's interpreter, so that the
script cannot fail on the GPU machine for a reason a CPU run would have shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..triton_floor import skip_unless_triton_runs_the_kernels

skip_unless_triton_runs_the_kernels(interpreting=True)  # runs with TRITON_INTERPRET=1
ROOT = Path(__file__).resolve().parents[2]


def test_memcheck_sweep_runs_every_launch_within_tolerance():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memcheck_kernels.py"),
                           "--quick"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # 2 geometries x 2 grids x (float32: batch 1 + batch 8 x 4 launches; bfloat16: 2)
    assert lines[-1].startswith("28 launches on cpu") and "0 above tolerance" in lines[-1]
    assert sum(" v1: " in ln for ln in lines) == 4 and sum(" v3: " in ln for ln in lines) == 4
    assert sum(" v6: " in ln for ln in lines) == 4


def test_memcheck_sweep_takes_the_geometries_a_cut_run_did_not_reach():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    script = str(ROOT / "benchmarks" / "memcheck_kernels.py")
    proc = subprocess.run([sys.executable, script, "--quick", "--geometries", "parallel-offset"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("14 launches on cpu"), lines[-1]
    assert all(ln.startswith("parallel-offset-") for ln in lines[:-1])
    bad = subprocess.run([sys.executable, script, "--geometries", "parallel-offset,helical"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and "--geometries: unknown ['helical']" in bad.stderr
