"""One training step of an unrolled network, eager against ``torch.compile``.

The projector pair enters a compiled graph as two opaque custom ops
(:mod:`operators._custom_ops`), so Inductor fuses the networks' convolutions, activations and
updates around them. This prints, per model, the time of one Adam step (forward, backward,
update) eager and compiled (best of ``--repeats`` after ``--warmup`` steps), their ratio, the
first compiled step (compilation included) and the largest difference of the first outputs.

Case: 64x64 pixels, parallel beam with 60 views and 91 detectors, batch 4; learned primal-dual
(Adler & Oektem 2018; 10 iterations, width 32) and the variational network (Hammernik et al.
2018; 10 stages, 24 filters).

Usage::

    python benchmarks/compile_step.py [--device cpu|cuda] [--mode default|reduce-overhead]
                                      [--threads 2] [--repeats 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers

import torch  # noqa: E402

from operators import ImageGrid, ParallelGeometry, XRayTransform  # noqa: E402
from recon.nets import LearnedPrimalDual, VariationalNetwork  # noqa: E402

from _arguments import int_at_least  # noqa: E402

MODELS = {
    "learned primal-dual": lambda A: LearnedPrimalDual(A, n_iter=10, width=32, seed=0),
    "variational network": lambda A: VariationalNetwork(A, stages=10, filters=24, seed=0),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, step_model, x, y, repeats: int, warmup: int, device):
    """``(first step s, best step s, first output)`` for Adam steps on ``(y -> x)``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        out = step_model(y)
        loss = (out - x).square().mean()
        loss.backward()
        opt.step()
        return out.detach()

    t0 = time.perf_counter()
    first_out = step().clone()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return first, best, first_out


def _device(text: str) -> str:
    """An argparse ``type``: ``cpu``, or ``cuda[:N]`` where that device exists."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid device {text!r} (cpu or cuda)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"no CUDA device here (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"invalid device {text!r} (cpu or cuda)")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", type=_device, help="cpu or cuda[:N]")
    ap.add_argument("--mode", default="default", choices=["default", "reduce-overhead",
                                                          "max-autotune"])
    ap.add_argument("--threads", type=int_at_least(1), default=2)
    ap.add_argument("--repeats", type=int_at_least(1), default=5)
    ap.add_argument("--warmup", type=int_at_least(0), default=2)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grid = ImageGrid(shape=(64, 64), spacing=(1.0, 1.0))
    A = XRayTransform(grid, ParallelGeometry.full_scan(views=60, detector_count=91,
                                                       detector_spacing=1.0)).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 64, 64, generator=gen).to(device)
    y = A(x)
    print(f"torch {torch.__version__}, device {device}, threads {args.threads}, "
          f"mode {args.mode!r}, backend {A.backend_name()!r}; best of {args.repeats} steps")
    print()
    print("| model | eager step ms | compiled step ms | speed-up | first compiled step s "
          "| max output difference |")
    print("|---|---|---|---|---|---|")
    for name, make in MODELS.items():
        model = make(A).to(device)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        _, eager, out_e = time_steps(model, model, x, y, args.repeats, args.warmup, device)
        model.load_state_dict(state)
        compiled = torch.compile(model, mode=args.mode)
        first, best, out_c = time_steps(model, compiled, x, y, args.repeats, args.warmup,
                                        device)
        diff = (out_c - out_e).abs().max().item() / out_e.abs().max().item()
        print(f"| {name} | {eager * 1e3:.0f} | {best * 1e3:.0f} | {eager / best:.2f}x "
              f"| {first:.1f} | {diff:.1e} (relative) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
