"""Helpers of tests/recon/test_train.py: tiny models and data, the DDP worker and a CLI.

``python tests/recon/_ddp_worker.py train OUT [--stall] [--checkpoint-every N]`` trains the tiny
CNN into OUT and writes OUT/result.json; with ``--stall`` the training set blocks forever once
``OUT/checkpoint.pt`` exists (after writing ``OUT/stalled``), so a test can SIGKILL the process at
a known point after its first checkpoint; ``--sample-delay S`` sleeps S seconds per sample.
``torchrun --nproc_per_node=2 _ddp_worker.py torchrun OUT`` trains the operator model under
torchrun (env://, gloo). ``python _ddp_worker.py bench --device cuda`` times a 4-layer CNN step
through the Trainer against a bare training loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import operators  # noqa: E402
from recon.train import TrainConfig, Trainer, seed_everything  # noqa: E402


# -- tiny data and models ----------------------------------------------------------------------
def conv_data(n: int, seed: int = 1234, size: int = 16):
    """Random images and a fixed blur of them: ``(n, 1, size, size)`` inputs and targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).view(1, 1, 3, 3)
    y = torch.nn.functional.conv2d(x, k, padding=1)
    return x, y


def tiny_cnn() -> nn.Module:
    """A 2-layer CNN, 1 -> 4 -> 1 channels, 3x3."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


class SlowDataset(Dataset):
    """Wraps a dataset and sleeps ``delay`` seconds per sample (a kill lands mid-training)."""

    def __init__(self, base: Dataset, delay: float):
        self.base, self.delay = base, float(delay)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.base[i]


class StallingDataset(Dataset):
    """Wraps a dataset; once ``flag_file`` exists, marks ``marker`` and blocks forever."""

    def __init__(self, base: Dataset, flag_file: Path, marker: Path):
        self.base, self.flag_file, self.marker = base, Path(flag_file), Path(marker)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if self.flag_file.exists():
            self.marker.write_text("stalled\n")
            while True:
                time.sleep(1.0)
        return self.base[i]


def make_operator():
    grid = operators.ImageGrid(shape=(8, 8), spacing=(1.0, 1.0))
    geometry = operators.ParallelGeometry.full_scan(6, 12, 1.0)
    return operators.XRayTransform(grid, geometry)


class OperatorNet(nn.Module):
    """Back-projection with a learned scale and a learned 3x3 correction; the projector is fixed.

    ``(B, views, detectors)`` sinograms -> ``(B, H, W)`` images.
    """

    def __init__(self, A: nn.Module):
        super().__init__()
        self.A = A
        self.scale = nn.Parameter(torch.tensor(0.05))
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, y):
        x = self.scale * self.A.T(y)
        return x + self.conv(x.unsqueeze(1)).squeeze(1)


def operator_data(A, n: int, seed: int = 99):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *A.domain_shape, generator=g, dtype=torch.float64).float()
    with torch.no_grad():
        y = A(x)
    return y, x


def operator_config(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, lr=5e-3, seed=7, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def train_operator_model(out_dir: str, evaluate: bool = False, **cfg_kw):
    """Train OperatorNet on 32 operator samples (16 for validation); returns (fit, state) and,
    with ``evaluate``, the evaluation of the validation samples (per-process batch 3)."""
    torch.set_num_threads(1)
    seed_everything(0)
    A = make_operator()
    model = OperatorNet(A)
    y, x = operator_data(A, 48)
    trainer = Trainer(model, None, TensorDataset(y[:32], x[:32]), TensorDataset(y[32:], x[32:]),
                      operator_config(**cfg_kw), out_dir)
    fit = trainer.fit()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if evaluate:
        def mae(o, t):
            return {"mae": (o - t).abs().mean(dim=(-2, -1))}
        return fit.to_dict(), state, {
            "val": trainer.evaluate(TensorDataset(y[32:], x[32:]), mae, batch_size=3),
            # one sample: under 2 processes, one shard is empty
            "one": trainer.evaluate(TensorDataset(y[32:33], x[32:33]), mae)}
    return fit.to_dict(), state


def ddp_fn(rank: int, world_size: int, out_dir: str, device: str = "cpu"):
    """Run inside :func:`recon.train.run_distributed`: every rank trains the same model (after
    checking that a global batch the processes cannot share is refused)."""
    try:
        train_operator_model(out_dir + "_indivisible", batch_size=2 * world_size + 1,
                             device=device)
        error = ""
    except ValueError as exc:
        error = str(exc)
    fit, state, evaluation = train_operator_model(out_dir, evaluate=True, device=device)
    return {"rank": rank, "world_size": world_size, "fit": fit, "state": state,
            "indivisible_error": error, "evaluation": evaluation}


def ddp_compile_fn(rank: int, world_size: int, out_dir: str, compile_: bool):
    """Train the operator model under DDP, through torch.compile or not; also returns how many
    graphs Dynamo compiled in this process (0 when nothing went through the compiler)."""
    from torch._dynamo.utils import counters
    fit, state = train_operator_model(out_dir, compile=compile_)
    return {"rank": rank, "fit": fit, "state": state,
            "graphs": counters["stats"]["unique_graphs"]}


def abort_at_exit_fn(rank: int, world_size: int):
    """Finish, then make rank 1 abort while its interpreter shuts down (as gloo sometimes does
    in teardown)."""
    import atexit
    import os
    if rank == 1:
        atexit.register(os.abort)
    return rank * 10


def abort_before_finishing_fn(rank: int, world_size: int):
    """Rank 1 aborts before it has finished its work."""
    import os
    if rank == 1:
        os.abort()
    return rank


# -- CLI ---------------------------------------------------------------------------------------
def cnn_config(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=8, lr=1e-2, seed=3, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def train_cnn(out, stall: bool = False, checkpoint_every=None, sample_delay: float = 0.0):
    """Train the tiny CNN into ``out`` on one thread (bit-reproducible); write and return
    ``out/result.json``'s content (the FitResult as a dict)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = Path(out)
        seed_everything(0)
        model = tiny_cnn()
        x, y = conv_data(48)
        train_set = TensorDataset(x[:32], y[:32])
        if stall:
            train_set = StallingDataset(train_set, out / "checkpoint.pt", out / "stalled")
        if sample_delay:
            train_set = SlowDataset(train_set, sample_delay)
        cfg = cnn_config(checkpoint_every=checkpoint_every)
        result = Trainer(model, None, train_set, TensorDataset(x[32:], y[32:]), cfg, out).fit()
        (out / "result.json").write_text(json.dumps(result.to_dict()) + "\n")
        return result.to_dict()
    finally:
        torch.set_num_threads(threads)


def _train_cli(args) -> None:
    train_cnn(args.out, args.stall, args.checkpoint_every, args.sample_delay)


def _torchrun_cli(args) -> None:
    fit, state = train_operator_model(args.out)
    rank = int(os.environ["RANK"])
    torch.save(state, Path(args.out) / f"state_rank{rank}.pt")
    if rank == 0:
        (Path(args.out) / "result.json").write_text(json.dumps(fit) + "\n")


def _bench_cli(args) -> None:
    """Seconds per step of a 4-layer, 32-channel CNN on (B, 1, S, S): Trainer vs a bare loop."""
    import tempfile

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    x = torch.randn(n, 1, args.size, args.size, generator=g)
    y = x.roll(1, dims=-1)

    def net():
        seed_everything(0)
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 1, 3, padding=1))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # bare loop: same data order, Adam, clipping, no validation, no checkpoint
    model = net().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for rep in range(2):  # the first pass warms up
        sync()
        t0 = time.perf_counter()
        for i in range(args.steps):
            xb = x[i * args.batch:(i + 1) * args.batch].to(device)
            yb = y[i * args.batch:(i + 1) * args.batch].to(device)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        float(loss.detach())
        sync()
        times.append((time.perf_counter() - t0) / args.steps)
    bare = times[-1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(epochs=2, batch_size=args.batch, lr=1e-3, progress=False,
                          device=str(device))
        res = Trainer(net(), None, TensorDataset(x, y), TensorDataset(x[:args.batch],
                      y[:args.batch]), cfg, tmp).fit()
        trainer = res.log[-1]["seconds_per_step"]  # epoch 2: warm
    print(json.dumps({"device": str(device), "batch": args.batch, "size": args.size,
                      "steps": args.steps, "bare_s_per_step": bare,
                      "trainer_s_per_step": trainer, "overhead": trainer / bare - 1}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--stall", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=None)
    t.add_argument("--sample-delay", type=float, default=0.0)
    r = sub.add_parser("torchrun")
    r.add_argument("out")
    b = sub.add_parser("bench")
    b.add_argument("--device", default="cpu")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--size", type=int, default=64)
    b.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    {"train": _train_cli, "torchrun": _torchrun_cli, "bench": _bench_cli}[args.cmd](args)


if __name__ == "__main__":
    main()
