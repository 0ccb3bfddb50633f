"""``benchmarks/ncu_summary.py``: Nsight Compute's text report, one row per launch, each matched
to the case ``ncu_kernels.py`` named it under (also a launch named without its grid)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import ncu_summary  # noqa: E402


def _block(kernel, grid, duration, elapsed, active, l1, regs, stall_share):
    return f"""  {kernel} ({grid[0]}, {grid[1]}, 1)x(128, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Section: GPU Speed Of Light Throughput
    ----------------------- ----------- ------------
    Elapsed Cycles                cycle    {elapsed:,}
    Duration                         us       {duration}
    L1/TEX Cache Throughput           %        {l1}
    SM Active Cycles              cycle   {active:,}.50
    Registers Per Thread             register/thread              {regs}
    OPT   Est. Speedup: 23.31%
          On average, each warp of this workload spends 15.5 cycles being stalled waiting for a
          scoreboard dependency on a L1TEX (local, global, surface, texture) operation. Find the
          instruction producing the data being waited upon. This stall type represents about
          {stall_share}% of the total average of 19.2 cycles between issuing two instructions.
"""


REPORT = (
    "==PROF== Connected to process 1\n"
    "profiled: P512 (batch 8): joseph_forward_kernel grid (2912, 1), then "
    "joseph_adjoint_parallel_kernel grid (1024, 1), then joseph_forward_kernel with "
    "pair_offset=False (the other addressing)\n"
    "==PROF== Profiling \"joseph_forward_kernel\": 0%....50%....100% - 20 passes\n"
    + _block("joseph_forward_kernel", (2912, 1), "537.12", 1_000_000, 830_000, "92.03", 48, "80.4")
    + _block("joseph_adjoint_parallel_kernel", (1024, 1), "545.02", 1_077_573, 1_014_584,
             "76.59", 55, "43.0")
    + _block("joseph_forward_kernel", (2912, 1), "533.82", 1_055_238, 939_072, "87.51", 44, "78.1")
)


def test_each_launch_gets_its_case_and_metrics():
    rows = ncu_summary.launches(REPORT)
    assert [(r["case"], r["kernel"], r["grid"], r["note"]) for r in rows] == [
        ("P512", "joseph_forward_kernel", (2912, 1), ""),
        ("P512", "joseph_adjoint_parallel_kernel", (1024, 1), ""),
        ("P512", "joseph_forward_kernel", (2912, 1), "pair_offset=False")]
    assert [r["duration us"] for r in rows] == [537.12, 545.02, 533.82]
    assert [r["registers"] for r in rows] == [48, 55, 44]
    assert rows[0]["elapsed cycles"] == 1_000_000 and rows[0]["SM active cycles"] == 830_000.5
    assert rows[2]["stall"] == "78 % L1TEX scoreboard"


def test_the_table_shows_the_idle_share_and_the_note(tmp_path, capsys):
    report = tmp_path / "ncu.txt"
    report.write_text(REPORT)
    assert ncu_summary.main([str(report)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 3
    first = [c.strip() for c in lines[2].split("|")]
    assert first[1:5] == ["P512", "forward", "2912 x 1", "537.1"]
    assert first[5] == "83.0"  # 830,000.5 of 1,000,000 cycles
    assert "forward (pair_offset=False)" in lines[4]


def test_a_report_without_launches_is_an_error(tmp_path, capsys):
    report = tmp_path / "empty.txt"
    report.write_text("==ERROR== LibraryNotLoaded\n")
    assert ncu_summary.main([str(report)]) == 1
    assert "no profiled joseph kernel" in capsys.readouterr().err
