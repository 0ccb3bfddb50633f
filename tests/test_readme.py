"""The README's Python example runs as printed and does what its comments say."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_operators_example_runs_and_its_comments_hold():
    blocks = _python_blocks()
    assert len(blocks) == 1, "a new Python block in the README needs its own checks here"
    scope = {}
    torch.manual_seed(0)
    exec(compile(blocks[0], str(README), "exec"), scope)
    grid, geom, A, x, y, x_bp, x_rec = (scope[k] for k in
                                        ("grid", "geom", "A", "x", "y", "x_bp", "x_rec"))
    views, detectors = len(geom.angles), geom.detector_count
    assert y.shape == (8, views, detectors)                      # (*batch, views, detectors)
    assert x_bp.shape == x_rec.shape == x.shape == (8, *grid.shape)
    assert A.T.T is A                                            # "A.T.T is A"
    y2 = torch.rand_like(y)
    lhs = float((y.double() * y2.double()).sum())
    rhs = float((x.double() * A.T(y2).double()).sum())
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)          # <Ax, y2> = <x, A^T y2> to float32 rounding
    fbp = scope["fbp"]
    trainable = {name for name, p in fbp.named_parameters() if p.requires_grad}
    assert trainable == {"weighting.weights", "filter.response"}  # trainable FBP (Würfl et al.)
