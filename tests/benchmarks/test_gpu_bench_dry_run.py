"""``benchmarks/gpu_bench.py --dry-run`` on one tiny case: the code paths the GPU session runs
(our variants, the autotuned one, the summary table) work on the CPU through Triton's
interpreter, so the one device call cannot fail for a reason a CPU run would have shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..triton_floor import skip_unless_triton_runs_the_kernels

skip_unless_triton_runs_the_kernels(interpreting=True)  # --dry-run interprets
ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_writes_the_summary_and_the_autotuned_choices(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--out", str(tmp_path),
         "--dry-run", "--cases", "P128s", "--variants",
         "ours:triton,ours:triton [autotuned],ours:triton [CUDA graph],ours:sparse",
         "--reps", "2", "--slow-ms", "1e9"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "## Summary: ours:triton against the peers in this run" in md
    assert "| P128s |" in md and "ahead of every peer" in md
    assert "autotuned P128s forward: chose" in md and "autotuned P128s adjoint: chose" in md
    assert "skipped: CUDA graphs need a GPU" in md
    b2b = [line for line in md.splitlines() if line.startswith("back to back (2 calls")]
    assert len(b2b) == 1 and "ours:triton " in b2b[0] and "ours:sparse " in b2b[0], b2b
    assert (tmp_path / "gpu_bench.json").is_file()
