"""The goal check of ``benchmarks/gpu_bench.py`` (its summary table decides, in the GPU run,
whether the issue's goal is met): synthetic rows, no GPU."""

from __future__ import annotations

import pytest

gb = pytest.importorskip("benchmarks.gpu_bench")


def _rows(case, ours, exact_peer, approx_peer):
    return [gb.Row(case, "ours:triton", "ours", forward_ms=ours[0], adjoint_ms=ours[1],
                   dot_mismatch=1e-8),
            gb.Row(case, "peer:exact", "peer", forward_ms=exact_peer[0],
                   adjoint_ms=exact_peer[1], dot_mismatch=1e-7),
            gb.Row(case, "peer:approximate", "peer", forward_ms=approx_peer[0],
                   adjoint_ms=approx_peer[1], dot_mismatch=0.1)]


def _line(case_name, rows):
    case = next(c for c in gb.FULL_CASES if c.name == case_name)
    lines = gb.goal_summary([case], rows)
    (line,) = [ln for ln in lines if ln.startswith(f"| {case_name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_two_times_the_fastest_exact_peer_on_both_directions():
    # an unmatched (approximate) peer is faster, but the goal counts exact peers only
    cells = _line("P256", _rows("P256", (0.5, 0.5), (1.2, 1.0), (0.2, 0.2)))
    assert cells[3] == "2.40x / 2.00x" and cells[-1] == "yes"
    assert "peer:exact" in cells[2] and "peer:approximate" in cells[4]
    cells = _line("P512", _rows("P512", (0.5, 0.6), (1.2, 1.1), (0.2, 0.2)))
    assert cells[-1] == "no", "the adjoint is 1.83x, short of 2x"


def test_ahead_of_every_peer_counts_approximate_peers_too():
    assert _line("P128s", _rows("P128s", (0.2, 0.3), (0.6, 0.9), (0.25, 0.4)))[-1] == "yes"
    assert _line("P128s", _rows("P128s", (0.2, 0.3), (0.6, 0.9), (0.25, 0.2)))[-1] == "no"


def test_cases_without_a_goal_and_missing_peers():
    assert _line("F256", _rows("F256", (0.5, 0.5), (1.0, 1.0), (0.2, 0.2)))[-1] == "-"
    ours_only = _rows("P256", (0.5, 0.5), (1.0, 1.0), (0.2, 0.2))[:1]
    cells = _line("P256", ours_only)
    assert cells[3] == "-x / -x" and cells[-1] == "no"


def test_autotune_candidates_are_told_apart_by_name():
    """The report lists each autotune candidate's time by a short name: every candidate of
    the goal cases' batches gets its own (v5's addressing, a register cap and v6's order
    included), so that the times can be matched to the launches."""
    from operators.backends.triton_backend import KernelConfig
    for batch in (8, 32):
        names = [gb._launch_name(c.as_dict()) for c in KernelConfig.candidates(batch)]
        assert len(set(names)) == len(names), names
    default = KernelConfig.default(32).as_dict()
    assert gb._launch_name(dict(default, tile_order="longest_first")).endswith(" longest-first")
    assert " r64" in gb._launch_name(dict(default, forward_max_registers=64, pair_offset=True))
