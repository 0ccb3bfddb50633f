"""How much of the forward's time its last wave of blocks wastes, and what v6's tile order saves.

Nsight Compute on the H200 (``KERNELS.md``, thirteenth session) found the forward's
multiprocessors active only 82-89 % of its elapsed time (the adjoint's 94-100 %). This model
replays the launch on the CPU: the blocks of the forward's grid, each as long as the number of
steps its loop runs (:func:`operators.backends.triton_backend.tile_steps`, plus one step of fixed
cost, times a few per cent of noise), are dispatched in program-id order to 132
multiprocessors holding ``slots`` blocks each (the occupancy Nsight Compute reported); a block
starts on the multiprocessor that frees a slot (ties in random order). A multiprocessor divides
its throughput among its blocks (the forward is bound by L1/TEX throughput), but one block gets
at most ``1 / m`` of it (a lone block is latency-bound; ``m`` is not measured, so the model
is run for several). Printed per case: the model's share of active multiprocessor time in the
grid's order beside the measured one, and the time of v6's order (tiles longest first,
:func:`~operators.backends.triton_backend.tile_order`) relative to the grid's::

    python benchmarks/tail_model.py [--cases P256,P512,F256] [--seeds 3]

(about 2 minutes). It runs on the CPU only; the GPU runs of ``gpu_bench.py``
(``ours:triton[v6 longest first]``) and ``ncu_kernels.py`` (its third launch) measure v6.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _arguments import positive_int  # noqa: E402

#: Per case: blocks per multiprocessor (theoretical occupancy / 4 warps) and the SM active share
#: Nsight Compute measured for the default forward on the H200, 2026-11-27
#: (``benchmarks/results/gpu_h200_2026-11-27_ncu.txt``).
MEASURED = {"P256": (9, "82.5"), "P512": (10, "83.2 (v5) / 89.0 (v4)"), "F256": (9, "82.4")}
SMS = 132


def simulate(work: np.ndarray, sms: int, slots: int, m: float, seed: int = 0,
             jitter: float = 0.05, order: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """``(time, active)``: when the last of the blocks ends and the mean share of that time a
    multiprocessor held at least one block. Blocks (``work`` units each, plus one, times
    ``1 +- jitter``) start in ``order`` (default: as given) on ``sms`` multiprocessors of
    ``slots`` blocks each, the first ``sms * slots`` round robin, the others where a slot frees
    first; a multiprocessor runs its ``n`` blocks at ``min(1 / n, 1 / m)`` units per unit time
    each."""
    if m < 1 or slots < 1 or sms < 1:
        raise ValueError(f"m, slots and sms must be at least 1, got {m}, {slots}, {sms}")
    rng = np.random.default_rng(seed)
    work = np.asarray(work, dtype=np.float64)
    if order is not None:
        work = work[np.asarray(order)]
    cost = (work + 1.0) * rng.uniform(1 - jitter, 1 + jitter, len(work))
    nxt = min(len(cost), sms * slots)
    rem = [list(cost[i:nxt:sms]) for i in range(sms)]  # block i on multiprocessor i mod sms
    rem = [np.array(r) for r in rem]
    t, busy = 0.0, np.zeros(sms)
    while True:
        live = [i for i in range(sms) if rem[i].size]
        if not live:
            break
        rate = {i: min(1.0 / rem[i].size, 1.0 / m) for i in live}
        dt = min(rem[i].min() / rate[i] for i in live)
        t += dt
        for i in rng.permutation(live):  # who asks the dispatcher first
            rem[i] = rem[i] - rate[i] * dt
            busy[i] += dt
            done = rem[i] <= 1e-9 * (1.0 + t)
            rem[i] = rem[i][~done]
            take = min(int(done.sum()), len(cost) - nxt)
            if take:
                rem[i] = np.concatenate([rem[i], cost[nxt:nxt + take]])
                nxt += take
    return t, float(busy.mean() / t) if t else 1.0


def forward_tiles(case) -> Tuple[np.ndarray, int]:
    """``(steps per block in launch order, ray tiles)`` of the default forward of ``case`` (a
    ``gpu_bench`` case): every ray tile once per batch block of the grid's second axis, as the
    hardware numbers the blocks (first axis fastest)."""
    import torch

    import operators as op
    from operators.backends.triton_backend import KernelConfig, _step_ranges, tile_steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = op.XRayTransform(case.grid(), case.geometry(), backend="torch")
    t = a.ray_table.to(torch.float64)
    v, d = t.shape[1:]
    kmin, kmax = _step_ranges(t[0].reshape(-1), t[1].reshape(-1), t[3].reshape(-1) > 0.5,
                              case.grid())
    cfg = KernelConfig.default(case.batch)
    steps = tile_steps(kmin, kmax, v, d, cfg.view_block, cfg.det_block).numpy()
    planes = -(-case.batch // cfg.b_block)
    return np.tile(steps, planes), len(steps)


def longest_first(steps: np.ndarray, tiles: int) -> np.ndarray:
    """v6's launch order of the blocks ``steps`` (``tiles`` per batch block, grid order):
    within each batch block the tiles longest first, ties in grid order, by the backend's own
    rule (:func:`operators.backends.triton_backend.longest_first`)."""
    import torch

    from operators.backends.triton_backend import longest_first as rule
    steps = torch.as_tensor(np.asarray(steps))
    return np.concatenate([start + rule(steps[start:start + tiles]).numpy()
                           for start in range(0, len(steps), tiles)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="P256,P512,F256",
                    help=f"comma-separated cases of {', '.join(MEASURED)} (default all)")
    ap.add_argument("--seeds", type=positive_int, default=3,
                    help="runs per setting, noise and ties drawn anew (default 3)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    bad = [n for n in names if n not in MEASURED]
    if bad or not names:
        ap.error(f"argument --cases: not a modelled case: {', '.join(bad) or args.cases!r}; "
                 f"choose from {', '.join(MEASURED)}")
    import gpu_bench
    cases = {c.name: c for c in gpu_bench.FULL_CASES}
    print("| case | blocks | waves | m | SM active, grid order (model) | SM active, measured "
          "(ncu) | SM active, longest first (model) | time longest first / grid (model) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        steps, tiles = forward_tiles(cases[name])
        slots, measured = MEASURED[name]
        v6 = longest_first(steps, tiles)
        for m in (1, 3, 5):
            grid = [simulate(steps, SMS, slots, m, seed) for seed in range(args.seeds)]
            lpt = [simulate(steps, SMS, slots, m, seed, order=v6) for seed in range(args.seeds)]
            ratio = np.mean([b[0] / a[0] for a, b in zip(grid, lpt)])
            print(f"| {name} | {len(steps)} | {len(steps) / (SMS * slots):.2f} | {m} | "
                  f"{100 * np.mean([g[1] for g in grid]):.1f} % | {measured} % | "
                  f"{100 * np.mean([g[1] for g in lpt]):.1f} % | {ratio:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
