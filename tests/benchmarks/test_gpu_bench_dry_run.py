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
         "ours:triton,ours:triton [autotuned],ours:triton [CUDA graph],"
         "ours:triton [graph-tuned, CUDA graph],ours:sparse",
         "--reps", "2", "--slow-ms", "1e9"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "## Summary: ours:triton against the peers in this run" in md
    assert "| P128s |" in md and "ahead of every peer" in md
    assert "autotuned (eager calls) P128s forward: chose" in md
    assert "autotuned (eager calls) P128s adjoint: chose" in md
    graph_rows = [line for line in md.splitlines() if "CUDA graph] |" in line]
    assert len(graph_rows) == 2 and all("skipped: CUDA graphs need a GPU" in line
                                        for line in graph_rows), graph_rows
    b2b = [line for line in md.splitlines() if line.startswith("back to back (2 calls")]
    assert len(b2b) == 1 and "ours:triton " in b2b[0] and "ours:sparse " in b2b[0], b2b
    assert (tmp_path / "gpu_bench.json").is_file()


def test_candidates_are_tuned_and_the_fastest_kept(monkeypatch):
    """The graph-tuned variant's loop (on the GPU each call is a graph replay), here with the
    calls themselves, in the interpreter, at a tiny case: every candidate is timed per
    direction, the reported choice is the fastest, and its calls agree with the reference."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    code = (
        "import sys, torch; sys.path.insert(0, 'benchmarks'); import gpu_bench as g\n"
        "case = g.Case('T', 8, 3, 11, 4)\n"
        "fwd, adj, info = g.tune_candidates(case, torch.device('cpu'), lambda f: f, 'test', 1)\n"
        "from operators.backends.triton_backend import KernelConfig\n"
        "n = len(KernelConfig.candidates(4))\n"
        "for d, t in info['tuned'].items():\n"
        "    assert len(t['times_ms']) == n, (d, t)\n"
        "    assert t['chosen'] == min(t['times_ms'], key=lambda c: c[1])[0]\n"
        "a = g._ours_operator(case, torch.device('cpu'), 'torch')\n"
        "x, y = torch.rand(4, 8, 8), torch.rand(4, 3, 11)\n"
        "assert torch.allclose(fwd(x), a(x), atol=1e-5) and torch.allclose(adj(y), a.T(y), atol=1e-5)\n"
        "print('ok', info['tuned_by'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0 and "ok test" in proc.stdout, proc.stderr[-3000:]
