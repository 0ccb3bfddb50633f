"""One table from Nsight Compute's text report of ``ncu_kernels.py`` (``gpu_session.sh``, step 4).

``ncu`` prints one block per profiled launch, in launch order; ``ncu_kernels.py`` prints, before
each case's launches, a line ``profiled: CASE (batch B): kernel grid (...), then ...`` naming
them in that order. This script pairs the two and prints, per launch, what says which unit
limits it::

    python benchmarks/ncu_summary.py benchmarks/results/gpu_h200_2026-11-27_ncu.txt

Columns: duration; SM active cycles as a share of the elapsed cycles (below 100 %: multiprocessors
idle, e.g. in the last, partial wave of blocks); waves per SM; L1/TEX, L2 and DRAM throughput and
issue slots busy (% of peak); L1 hit rate; registers per thread; theoretical and achieved
occupancy; warp cycles per issued instruction and the share of them that ``ncu``'s warp-state
rule puts on its top stall reason (named in the last column, shortened); issued instructions.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

#: ``(column, metric name as ncu prints it)``; each value is the line's last number.
METRICS = (
    ("duration us", "Duration"),
    ("elapsed cycles", "Elapsed Cycles"),
    ("SM active cycles", "SM Active Cycles"),
    ("waves / SM", "Waves Per SM"),
    ("L1/TEX %", "L1/TEX Cache Throughput"),
    ("L2 %", "L2 Cache Throughput"),
    ("DRAM %", "DRAM Throughput"),
    ("issue busy %", "Issue Slots Busy"),
    ("L1 hit %", "L1/TEX Hit Rate"),
    ("registers", "Registers Per Thread"),
    ("theoretical occupancy %", "Theoretical Occupancy"),
    ("achieved occupancy %", "Achieved Occupancy"),
    ("cycles / issue", "Warp Cycles Per Issued Instruction"),
    ("issued instructions", "Issued Instructions"),
)

_LAUNCH = re.compile(r"^  (joseph_\w+) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\)", re.M)
_PROFILED = re.compile(r"^profiled: (\S+) \(batch (\d+)\): (.*)$", re.M)
_STALL = re.compile(r"each warp of this workload spends ([\d.]+) cycles being stalled (.+?)\. .*?"
                    r"represents about ([\d.]+)% of the total average")


def _number(block: str, name: str) -> Optional[float]:
    m = re.search(r"^\s+" + re.escape(name) + r"\s.*?([\d,]+(?:\.\d+)?)\s*$", block, re.M)
    return float(m.group(1).replace(",", "")) if m else None


def _stall(block: str) -> str:
    flat = re.sub(r"\s+", " ", block)
    m = _STALL.search(flat)
    if not m:
        return "-"
    reason = m.group(2)
    reason = re.sub(r"^waiting for a scoreboard dependency on a (\S+).*", r"\1 scoreboard", reason)
    return f"{float(m.group(3)):.0f} % {reason}"


def launches(text: str) -> List[Dict]:
    """Every profiled launch of the report, in order, with its case (from the ``profiled:``
    lines, matched by kernel name and grid in order) and its metrics."""
    expected = []  # (case, kernel, grid, note) in launch order
    for m in _PROFILED.finditer(text):
        grids = {}  # a launch named without its grid has the grid of that kernel's first one
        for part in m.group(3).split(", then "):
            k = re.match(r"(joseph_\w+)(?: grid \((\d+), (\d+)\))?(?: with (.*))?$", part)
            if k:
                grid = (int(k.group(2)), int(k.group(3))) if k.group(2) else grids.get(k.group(1))
                grids.setdefault(k.group(1), grid)
                expected.append((m.group(1), k.group(1), grid, (k.group(4) or "").split(" (")[0]))
    starts = list(_LAUNCH.finditer(text))
    rows = []
    for i, m in enumerate(starts):
        block = text[m.start(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        grid = (int(m.group(2)), int(m.group(3)))
        case, note = "?", ""
        if i < len(expected) and expected[i][1] == m.group(1) and expected[i][2] == grid:
            case, note = expected[i][0], expected[i][3]
        row = dict(case=case, kernel=m.group(1), grid=grid, note=note, stall=_stall(block))
        row.update({col: _number(block, name) for col, name in METRICS})
        rows.append(row)
    return rows


def _fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}f}"


def table(rows: List[Dict]) -> str:
    head = ("| case | kernel | grid | duration us | SM active % | waves / SM | L1/TEX % | L2 % | "
            "DRAM % | issue busy % | L1 hit % | registers | occupancy theor. / achieved % | "
            "cycles / issue | top stall | issued instr |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        active = (100 * r["SM active cycles"] / r["elapsed cycles"]
                  if r["SM active cycles"] and r["elapsed cycles"] else None)
        kernel = r["kernel"].replace("joseph_", "").replace("_kernel", "")
        if r["note"]:
            kernel += f" ({r['note']})"
        lines.append(
            f"| {r['case']} | {kernel} | {r['grid'][0]} x {r['grid'][1]} | "
            f"{_fmt(r['duration us'])} | {_fmt(active)} | {_fmt(r['waves / SM'], 2)} | "
            f"{_fmt(r['L1/TEX %'])} | {_fmt(r['L2 %'])} | {_fmt(r['DRAM %'])} | "
            f"{_fmt(r['issue busy %'])} | {_fmt(r['L1 hit %'])} | {_fmt(r['registers'], 0)} | "
            f"{_fmt(r['theoretical occupancy %'])} / {_fmt(r['achieved occupancy %'])} | "
            f"{_fmt(r['cycles / issue'])} | {r['stall']} | {_fmt(r['issued instructions'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="ncu's text output of ncu_kernels.py")
    args = p.parse_args(argv)
    if not args.report.is_file():
        p.error(f"report: no such file: {args.report}")
    rows = launches(args.report.read_text(errors="replace"))
    if not rows:
        print(f"no profiled joseph kernel in {args.report}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
