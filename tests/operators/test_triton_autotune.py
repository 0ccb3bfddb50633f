"""Autotuning of the Triton launches (``TritonBackend(autotune=True)`` or
``KNOWN_OPERATORS_AUTOTUNE=1``), checked in Triton's interpreter on tiny problems (a
subprocess: the interpreter must be chosen before Triton is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..triton_floor import skip_unless_triton_runs_the_kernels

skip_unless_triton_runs_the_kernels(interpreting=True)  # its worker sets TRITON_INTERPRET=1
REPO = Path(__file__).resolve().parents[2]

WORKER = r'''
import json, os, warnings
import torch
warnings.filterwarnings("ignore")
import operators as op
from operators.backends import triton_backend as tb
from operators.backends.reference import ReferenceBackend

calls = []
timer = tb._time_ms
tb._time_ms = lambda fn, device, reps: (calls.append(1), timer(fn, device, reps))[1]
out = {}
for name, geom in [("parallel", op.ParallelGeometry.full_scan(5, 17, 0.8, detector_offset=0.3)),
                   ("fan", op.FanGeometry.short_scan(6, 21, 1.1, 40.0, 80.0, "curved"))]:
    grid = op.ImageGrid((11, 9), (0.9, 1.0))
    table = op.XRayTransform(grid, geom, backend="torch").ray_table
    ref = ReferenceBackend(grid)
    for b in (1, 3):
        be = tb.TritonBackend(grid, geom)  # autotune from the environment
        x, y = torch.rand(b, 11, 9), torch.rand(b, *geom.sinogram_shape)
        rel = lambda a, r: float((a.double() - r).norm() / r.norm())
        first = (rel(be.forward(x, table), ref.forward(x.double(), table)),
                 rel(be.adjoint(y, table), ref.adjoint(y.double(), table)))
        n_timed = len(calls)
        again = (rel(be.forward(x, table), ref.forward(x.double(), table)),
                 rel(be.adjoint(y, table), ref.adjoint(y.double(), table)))
        tuned = {k[0]: {"chosen": v["config"].as_dict(),
                        "times": [[c, ms] for c, ms in v["times_ms"]]}
                 for k, v in be.tuned.items()}
        fixed = tb.TritonBackend(grid, geom, config=tb.KernelConfig.default(b), autotune=True)
        fixed.forward(x, table)
        out[f"{name}-{b}"] = dict(first=first, again=again, tuned=tuned,
                                  retimed=len(calls) != n_timed, fixed_tuned=len(fixed.tuned),
                                  autotune=be.autotune)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               KNOWN_OPERATORS_AUTOTUNE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", WORKER], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["parallel-1", "parallel-3", "fan-1", "fan-3"])
def test_autotuned_launches_agree_with_the_reference(report, case):
    r = report[case]
    assert r["autotune"], "KNOWN_OPERATORS_AUTOTUNE=1 switches it on"
    assert max(r["first"] + r["again"]) < 1e-5, r
    assert set(r["tuned"]) == {"forward", "adjoint"}


@pytest.mark.parametrize("case", ["parallel-3", "fan-3"])
def test_the_fastest_candidate_is_kept_and_not_timed_again(report, case):
    r = report[case]
    for direction in ("forward", "adjoint"):
        times = r["tuned"][direction]["times"]
        assert len(times) >= 4, "default, runner-up tiles, 8 warps, v3 and more"
        best = min(times, key=lambda item: item[1])
        assert r["tuned"][direction]["chosen"] == best[0]
        assert times[0][0]["layout"] == "planar", "the default (v4) is the first candidate"
    assert not r["retimed"], "a second call with the same batch reuses the choice"
    assert r["fixed_tuned"] == 0, "an explicit config is never tuned"


def test_candidates_are_distinct_and_start_with_the_default():
    import torch

    from operators.backends.triton_backend import KernelConfig

    def dicts(batch, dtype=torch.float32):
        return [c.as_dict() for c in KernelConfig.candidates(batch, dtype)]

    for batch in (1, 2, 3, 8, 32, 128):
        for dtype in (torch.float32, torch.bfloat16):
            ds = dicts(batch, dtype)
            assert ds[0] == KernelConfig.default(batch, dtype).as_dict()
            assert all(a != b for i, a in enumerate(ds) for b in ds[i + 1:])
    assert any(d["b_block"] == 32 and d["layout"] == "planar" for d in dicts(32))  # 8 planes
    for batch in (8, 32):  # the default with the forward's other pair addressing (v4 / v5)
        default = KernelConfig.default(batch)
        assert default.replace(pair_offset=not default.pair_offset).as_dict() in dicts(batch)
    assert any(d["b_block"] == 8 and d["pair_offset"] for d in dicts(32))  # 2 planes, v5
    assert any(d["forward_max_registers"] == 64 and d["pair_offset"] for d in dicts(32))
    assert all(d["forward_max_registers"] is None for d in dicts(8))
    for batch in (1, 8, 32):  # the default with its tiles longest first (v6)
        default = KernelConfig.default(batch)
        assert default.replace(tile_order="longest_first").as_dict() in dicts(batch)
    assert any(d["tile_h"] == 32 for d in dicts(8))  # 4 pixels per thread in the adjoint
    assert any(d["layout"] == "channels_last" for d in dicts(8))  # v3
    assert not any(d["b_block"] == 32 for d in dicts(8))
