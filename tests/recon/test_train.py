"""Tests of recon.train: training, checkpoints, kill-and-resume, early stopping, DDP, seeds."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from operators._custom_ops import HAVE_CUSTOM_OPS
from recon.train import (CHECKPOINT_FORMAT, FitResult, TrainConfig, Trainer, load_checkpoint,
                         load_weights, run_distributed, seed_everything, summarize_seeds,
                         train_seeds)
from recon.training.trainer import _check_torch_supports

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ddp_worker as W  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_ddp_worker.py"
ROOT = Path(__file__).resolve().parents[2]


def _sets(n_train=32, n_val=16):
    x, y = W.conv_data(n_train + n_val)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def _fit(tmp_path, name="run", model=None, **kw):
    train_set, val_set = _sets()
    seed_everything(0)
    model = model or W.tiny_cnn()
    trainer = Trainer(model, None, train_set, val_set, W.cnn_config(**kw), tmp_path / name)
    return trainer, trainer.fit()


def _val_loss(model, val_set):
    x, y = val_set.tensors
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x), y))


# -- configuration and argument checks ---------------------------------------------------------
@pytest.mark.parametrize("kw, word", [
    (dict(epochs=0), "epochs"), (dict(batch_size=2.5), "batch_size"), (dict(lr=-1.0), "lr"),
    (dict(grad_clip=0.0), "grad_clip"), (dict(lr=1e-3, min_lr=1e-2), "min_lr"),
    (dict(patience=0), "patience"), (dict(seed=-1), "seed"), (dict(max_steps=0), "max_steps"),
    (dict(lr=float("nan")), "lr"), (dict(num_workers=-1), "num_workers"),
    (dict(compile="yes"), "compile"), (dict(amp="fp8"), "amp"),
])
def test_config_rejects_bad_values(kw, word):
    with pytest.raises((ValueError, TypeError), match=word):
        TrainConfig(**kw)


def test_config_is_frozen_and_plain():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    assert "device" not in cfg.trajectory_dict() and "lr" in cfg.trajectory_dict()


def test_trainer_rejects_bad_arguments(tmp_path):
    train_set, val_set = _sets()
    cfg = W.cnn_config()
    with pytest.raises(TypeError, match="model"):
        Trainer("net", None, train_set, val_set, cfg, tmp_path)
    frozen = W.make_operator()  # buffers only: nothing to train
    with pytest.raises(ValueError, match="requires_grad"):
        Trainer(frozen, None, train_set, val_set, cfg, tmp_path)
    with pytest.raises(TypeError, match="train_set"):
        Trainer(W.tiny_cnn(), None, 42, val_set, cfg, tmp_path)
    with pytest.raises(ValueError, match="train_set"):
        Trainer(W.tiny_cnn(), None, TensorDataset(torch.zeros(0, 1)), val_set, cfg, tmp_path)
    with pytest.raises(TypeError, match="config"):
        Trainer(W.tiny_cnn(), None, train_set, val_set, {"lr": 1}, tmp_path)
    with pytest.raises(TypeError, match="loss_fn"):
        Trainer(W.tiny_cnn(), "mse", train_set, val_set, cfg, tmp_path)
    for device in ("meta", "xla:0"):
        with pytest.raises(ValueError, match=f"TrainConfig.device='{device}' cannot train"):
            Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(device=device),
                    tmp_path / "d").fit()


def test_param_groups(tmp_path):
    train_set, val_set = _sets()
    seed_everything(0)
    model = W.tiny_cnn()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    cfg = W.cnn_config(epochs=1)
    with pytest.raises(ValueError, match="cover"):
        Trainer(model, None, train_set, val_set, cfg, tmp_path, param_groups=[{"params": first}])
    with pytest.raises(ValueError, match="param_groups"):
        Trainer(model, None, train_set, val_set, cfg, tmp_path,
                param_groups=[{"params": first}, {"params": first + second}])
    with pytest.raises(ValueError, match="not a trainable"):
        Trainer(model, None, train_set, val_set, cfg, tmp_path,
                param_groups=[{"params": first + second + [nn.Parameter(torch.ones(1))]}])
    before = [p.detach().clone() for p in first + second]
    res = Trainer(model, None, train_set, val_set, cfg, tmp_path,
                  param_groups=[{"params": first}, {"params": second, "lr": 0.0}]).fit()
    after = first + second
    assert not torch.equal(before[0], after[0]) and not torch.equal(before[1], after[1])
    assert torch.equal(before[2], after[2]) and torch.equal(before[3], after[3])  # lr 0
    groups = load_checkpoint(res.checkpoint_path)["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [1e-2, 0.0]
    # with min_lr > 0 the cosine schedule would anneal a group below it upwards: refused
    with pytest.raises(ValueError, match=r"param_groups\[1\] has lr 0.0 below TrainConfig.min_lr"):
        Trainer(model, None, train_set, val_set, W.cnn_config(epochs=1, min_lr=1e-3), tmp_path,
                param_groups=[{"params": first}, {"params": second, "lr": 0.0}])


def test_a_seed_beyond_64_bits_trains(tmp_path):
    """The loader seed derived from TrainConfig.seed stays within torch's 64-bit seeds."""
    train_set, val_set = _sets()
    seed_everything(0)
    cfg = W.cnn_config(epochs=1, max_steps=2, seed=2**40)
    res = Trainer(W.tiny_cnn(), None, train_set, val_set, cfg, tmp_path).fit()
    assert res.steps == 2


def test_ddp_wrapped_model_is_refused(tmp_path):
    train_set, val_set = _sets()

    class FakeDDP(nn.parallel.DistributedDataParallel):
        def __init__(self):  # no process group needed for the type check
            nn.Module.__init__(self)
            self.module = W.tiny_cnn()

    with pytest.raises(TypeError, match="bare model"):
        Trainer(FakeDDP(), None, train_set, val_set, W.cnn_config(), tmp_path)


def test_loader_workers_and_progress_bars(tmp_path, capsys):
    _, a = _fit(tmp_path, "a", epochs=1)
    _, b = _fit(tmp_path, "b", epochs=1, num_workers=1, progress=True, log_every=1)
    assert a.log[0]["val_loss"] == b.log[0]["val_loss"]
    assert "epoch 1/1" in capsys.readouterr().err


def test_loss_fn_must_return_scalar(tmp_path):
    train_set, val_set = _sets()
    t = Trainer(W.tiny_cnn(), lambda o, t: (o - t) ** 2, train_set, val_set, W.cnn_config(),
                tmp_path)
    with pytest.raises(ValueError, match="scalar"):
        t.fit()


def test_dataset_must_yield_pairs(tmp_path):
    x, _ = W.conv_data(16)
    t = Trainer(W.tiny_cnn(), None, TensorDataset(x), None, W.cnn_config(), tmp_path)
    with pytest.raises(TypeError, match=r"\(input, target\)"):
        t.fit()


# -- training ----------------------------------------------------------------------------------
def test_short_training_lowers_the_loss_and_writes_logs(tmp_path):
    train_set, val_set = _sets()
    seed_everything(0)
    model = W.tiny_cnn()
    before = _val_loss(model, val_set)
    trainer = Trainer(model, None, train_set, val_set, W.cnn_config(), tmp_path)
    res = trainer.fit()
    assert isinstance(res, FitResult)
    assert res.epochs_run == 4 and res.steps == 16 and not res.stopped_early
    assert res.best_val_loss < 0.7 * before
    assert res.log[-1]["train_loss"] < res.log[0]["train_loss"]
    assert res.seconds_per_step > 0 and math.isfinite(res.seconds_per_step)
    # the model holds the best weights, and best.pt holds them too
    assert _val_loss(model, val_set) == pytest.approx(res.best_val_loss, rel=1e-5)
    best = torch.load(res.best_path, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(best[k], v)
    # cosine decay: lr falls monotonically towards min_lr
    lrs = [r["lr"] for r in res.log]
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[0] <= 1e-2
    # logs
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,step,train_loss,val_loss,lr") and len(rows) == 5
    doc = json.loads((tmp_path / "log.json").read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2, 3, 4]
    assert doc["epochs"][-1]["val_loss"] == pytest.approx(res.log[-1]["val_loss"])
    assert doc["meta"]["finished"] is True
    assert not list(tmp_path.glob(".*.tmp"))


def _fit_primal_dual(out, **cfg_kw):
    """A small learned primal-dual network (projector pair inside) trained on 16 random images;
    returns the model and the FitResult."""
    from operators import ImageGrid, ParallelGeometry, XRayTransform
    from recon.nets import LearnedPrimalDual

    grid = ImageGrid(shape=(16, 16), spacing=(1.0, 1.0))
    A = XRayTransform(grid, ParallelGeometry.full_scan(views=12, detector_count=23,
                                                       detector_spacing=1.0))
    x = torch.rand(16, 16, 16, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(A(x), x)
    seed_everything(0)
    model = LearnedPrimalDual(A, n_iter=2, width=8, seed=0)
    cfg = TrainConfig(batch_size=8, lr=1e-3, seed=0, progress=False, device="cpu", **cfg_kw)
    return model, Trainer(model, None, data, data, cfg, out).fit()


def test_resume_checks_the_scan_and_accepts_checkpoints_without_a_signature(tmp_path):
    """A run of a network for another detector spacing (same layer shapes) is refused by
    name; a checkpoint written before scan signatures existed resumes."""
    from operators import ImageGrid, ParallelGeometry, XRayTransform
    from recon.nets import LearnedPrimalDual

    model, res = _fit_primal_dual(tmp_path / "run", epochs=1)
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert "scan_signature" in ckpt["model"]
    data = TensorDataset(torch.rand(16, 12, 23), torch.rand(16, 16, 16))
    cfg = TrainConfig(batch_size=8, lr=1e-3, seed=0, progress=False, device="cpu", epochs=1)
    other = XRayTransform(ImageGrid(shape=(16, 16)), ParallelGeometry.full_scan(
        views=12, detector_count=23, detector_spacing=1.5))
    with pytest.raises(RuntimeError, match="detector_spacing: checkpoint 1, here 1.5"):
        Trainer(LearnedPrimalDual(other, n_iter=2, width=8, seed=0), None, data, data, cfg,
                tmp_path / "run").fit()
    for key in ("model", "best_model"):
        del ckpt[key]["scan_signature"]
    torch.save(ckpt, ckpt_path)
    again = Trainer(LearnedPrimalDual(model.operator, n_iter=2, width=8, seed=0), None, data,
                    data, cfg, tmp_path / "run").fit()
    assert again.resumed_from_epoch == 1


@pytest.mark.skipif(not shutil.which(os.environ.get("CXX", "") or "g++"),
                    reason="Inductor on the CPU needs a C++ compiler")
@pytest.mark.skipif(not HAVE_CUSTOM_OPS, reason="compiling the operators needs torch >= 2.4")
def test_compiled_training_of_an_operator_model_follows_eager(tmp_path):
    """TrainConfig(compile=True): a learned primal-dual network (projector pair inside) trains
    through torch.compile and follows the eager run; checkpoints hold the plain names."""
    from torch._dynamo.utils import counters

    logs, graphs = {}, {}
    for compiled in (False, True):
        before = counters["stats"]["unique_graphs"]
        model, res = _fit_primal_dual(tmp_path / str(compiled), epochs=2, compile=compiled)
        graphs[compiled] = counters["stats"]["unique_graphs"] - before
        logs[compiled] = [r["val_loss"] for r in res.log]
        saved = torch.load(res.best_path, weights_only=True)
        assert set(saved) == set(model.state_dict())  # no "_orig_mod." prefixes
    assert graphs[True] > 0 and graphs[False] == 0, "only the compiled run went through Dynamo"
    assert logs[True] == pytest.approx(logs[False], rel=1e-4)
    assert logs[True][-1] < logs[True][0]


def _cpu_autocast_supports(dtype: str) -> bool:
    try:
        _check_torch_supports(TrainConfig(amp=dtype), torch.device("cpu"))
    except RuntimeError:
        return False
    return True


def test_settings_this_torch_cannot_run_are_refused_by_name(tmp_path, monkeypatch):
    """compile=True without custom ops (torch < 2.4), and an autocast dtype the device's
    autocast refuses (CPU float16 before torch 2.4 warns and switches itself off)."""
    import warnings

    import operators._custom_ops as custom_ops

    monkeypatch.setattr(custom_ops, "HAVE_CUSTOM_OPS", False)
    with pytest.raises(RuntimeError, match="TrainConfig.compile=True needs torch >= 2.4"):
        _check_torch_supports(TrainConfig(compile=True), torch.device("cpu"))
    monkeypatch.undo()

    class OldAutocast:
        def __init__(self, device_type, dtype):
            warnings.warn("In CPU autocast, but the target dtype is not supported.")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", OldAutocast)
    with pytest.raises(RuntimeError, match="TrainConfig.amp='float16' is not supported on cpu"):
        _check_torch_supports(TrainConfig(amp="float16"), torch.device("cpu"))


@pytest.mark.parametrize("amp", ["bfloat16", "float16"])
def test_mixed_precision_training_of_an_operator_model(tmp_path, amp):
    """TrainConfig(amp=...): the forward pass runs under autocast (the operators stay float32),
    the loss falls like the float32 run's; float16 checkpoints its gradient scaler."""
    if not _cpu_autocast_supports(amp):
        pytest.skip(f"this torch's CPU autocast has no {amp}")
    logs = {}
    for mode in (None, amp):
        _, res = _fit_primal_dual(tmp_path / str(mode), epochs=3, amp=mode)
        logs[mode] = [r["val_loss"] for r in res.log]
        ckpt = load_checkpoint(res.checkpoint_path)
        if mode == "float16":
            assert ckpt["scaler"]["scale"] > 0
        else:
            assert ckpt["scaler"] is None
    assert logs[amp][-1] < logs[amp][0]
    assert logs[amp] == pytest.approx(logs[None], rel=1e-2)
    assert logs[amp] != logs[None]  # the autocast region did change the arithmetic


def test_cosine_schedule_reaches_min_lr(tmp_path):
    _, res = _fit(tmp_path, epochs=2, lr=1e-2, min_lr=1e-3)
    ckpt = load_checkpoint(res.checkpoint_path)
    assert ckpt["scheduler"]["last_epoch"] == res.steps
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


def test_same_seed_gives_identical_results(tmp_path):
    _, a = _fit(tmp_path, "a")
    _, b = _fit(tmp_path, "b")
    assert [r["val_loss"] for r in a.log] == [r["val_loss"] for r in b.log]
    sa, sb = (torch.load(r.best_path, weights_only=True) for r in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    _, c = _fit(tmp_path, "c", seed=4)
    assert [r["val_loss"] for r in c.log] != [r["val_loss"] for r in a.log]


def test_max_steps_caps_training(tmp_path):
    _, res = _fit(tmp_path, max_steps=6)
    assert res.steps == 6 and res.epochs_run == 2  # 4 steps per epoch: one full, one capped
    ckpt = load_checkpoint(res.checkpoint_path)
    assert ckpt["planned_steps"] == 6 and ckpt["state"]["finished"]


def test_gradient_clipping_bounds_the_update(tmp_path):
    # With lr large and clipping tiny, the first Adam step is still lr per coordinate, but the
    # recorded grad norm is the pre-clip norm and the loss stays finite.
    _, res = _fit(tmp_path, epochs=1, grad_clip=1e-3)
    assert res.log[0]["grad_norm"] > 1e-3 and math.isfinite(res.final_train_loss)
    _, res2 = _fit(tmp_path, "noclip", epochs=1, grad_clip=None)
    assert res2.log[0]["grad_norm"] is None


def test_non_finite_loss_raises(tmp_path):
    train_set, val_set = _sets()
    bad = TensorDataset(train_set.tensors[0], torch.full_like(train_set.tensors[1], math.inf))
    t = Trainer(W.tiny_cnn(), None, bad, val_set, W.cnn_config(log_every=1), tmp_path)
    with pytest.raises(FloatingPointError, match="loss"):
        t.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_early_stopping_triggers_and_restores_best(tmp_path):
    train_set, _ = _sets()
    x, y = W.conv_data(16, seed=5)
    val_set = TensorDataset(x, -y)  # the better the fit to train_set, the worse on this
    seed_everything(0)
    model = W.tiny_cnn()
    res = Trainer(model, None, train_set, val_set, W.cnn_config(epochs=20, patience=2),
                  tmp_path).fit()
    assert res.stopped_early
    assert res.epochs_run == res.best_epoch + 2 < 20
    assert res.best_val_loss == min(r["val_loss"] for r in res.log)
    assert _val_loss(model, val_set) == pytest.approx(res.best_val_loss, rel=1e-5)
    assert load_checkpoint(res.checkpoint_path)["state"]["stopped_early"]


def test_without_validation_set_last_weights_are_best(tmp_path):
    train_set, _ = _sets()
    seed_everything(0)
    res = Trainer(W.tiny_cnn(), None, train_set, None, W.cnn_config(epochs=2), tmp_path).fit()
    assert math.isnan(res.best_val_loss) and res.best_epoch == 2
    assert res.to_dict()["best_val_loss"] is None


def test_evaluate_reports_mean_and_std_per_sample(tmp_path):
    trainer, res = _fit(tmp_path, epochs=2)
    _, val_set = _sets()
    per_sample = lambda o, t: {"mse": ((o - t) ** 2).mean(dim=(1, 2, 3)), "one": 1.0}  # noqa
    out = trainer.evaluate(val_set, per_sample, batch_size=5, return_values=True)
    assert out["loss"]["n"] == 16 and out["mse"]["n"] == 16
    assert out["loss"]["mean"] == pytest.approx(res.best_val_loss, rel=1e-5)
    assert out["mse"]["values"] == pytest.approx(out["loss"]["values"], rel=1e-6)
    assert out["mse"]["std"] > 0 and out["one"] == {"mean": 1.0, "std": 0.0, "n": 16,
                                                    "values": [1.0] * 16}
    with pytest.raises(ValueError, match="mse"):
        trainer.evaluate(val_set, lambda o, t: {"mse": torch.zeros(3)}, batch_size=4)


def test_tensorboard_missing_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install tensorboard"):
        _fit(tmp_path, tensorboard=True)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # failed before training


def test_tensorboard_writer_receives_scalars(tmp_path, monkeypatch):
    import types

    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, float(value), int(step)))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _, res = _fit(tmp_path, epochs=2, tensorboard=True, log_every=2)
    assert calls[0] == ("init", str(tmp_path / "run" / "tensorboard")) and calls[-1] == ("close",)
    tags = [c[0] for c in calls]
    assert tags.count("step/train_loss") == 4 and tags.count("epoch/val_loss") == 2
    assert ("epoch/val_loss", res.log[1]["val_loss"], 2) in calls


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_round_trip_weights_only(tmp_path):
    trainer, res = _fit(tmp_path, epochs=2)
    ckpt = torch.load(res.checkpoint_path, map_location="cpu", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["state"]["epoch"] == 2 and ckpt["state"]["step"] == 8
    assert ckpt["state"]["finished"] and len(ckpt["state"]["log"]) == 2
    assert set(ckpt["optimizer"]["state"]) and "last_epoch" in ckpt["scheduler"]
    assert isinstance(ckpt["rng"][0]["torch"], torch.Tensor)
    # weights: best.pt and checkpoint.pt load into a fresh model, with identical outputs
    x = torch.randn(2, 1, 16, 16)
    expected = trainer.model(x)
    assert torch.equal(load_weights(W.tiny_cnn(), res.best_path)(x), expected)
    last = load_weights(W.tiny_cnn(), res.checkpoint_path).state_dict()  # the last weights
    assert all(torch.equal(last[k], ckpt["model"][k]) for k in last)
    # a DDP-style "module." prefix is removed
    prefixed = {"module." + k: v for k, v in torch.load(res.best_path, weights_only=True).items()}
    torch.save(prefixed, tmp_path / "prefixed.pt")
    assert torch.equal(load_weights(W.tiny_cnn(), tmp_path / "prefixed.pt")(x), expected)
    with pytest.raises(FileNotFoundError):
        load_weights(W.tiny_cnn(), tmp_path / "missing.pt")
    with pytest.raises(RuntimeError):
        load_weights(nn.Linear(2, 2), res.best_path)


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RuntimeError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_finished_run_returns_at_once(tmp_path):
    _, a = _fit(tmp_path, epochs=2)
    seed_everything(1)
    model = W.tiny_cnn()
    train_set, val_set = _sets()
    b = Trainer(model, None, train_set, val_set, W.cnn_config(epochs=2), tmp_path / "run").fit()
    assert b.resumed_from_epoch == 2 and b.steps == a.steps and b.best_val_loss == a.best_val_loss
    assert b.log == a.log and b.seconds_per_step == a.seconds_per_step
    assert _val_loss(model, val_set) == pytest.approx(a.best_val_loss, rel=1e-5)


def test_inconsistent_checkpoint_is_refused(tmp_path):
    _fit(tmp_path, epochs=1)
    train_set, val_set = _sets()
    t = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1, lr=2e-2),
                tmp_path / "run")
    with pytest.raises(RuntimeError, match="config.lr"):
        t.fit()
    wide = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    t = Trainer(wide, None, train_set, val_set, W.cnn_config(epochs=1), tmp_path / "run")
    with pytest.raises(RuntimeError, match="shape"):
        t.fit()
    # resume=False overwrites; non-trajectory fields (progress, log_every, device) may change
    res = t.fit(resume=False)
    assert res.resumed_from_epoch is None
    t = Trainer(wide, None, train_set, val_set, W.cnn_config(epochs=1, log_every=3),
                tmp_path / "run")
    assert t.fit().resumed_from_epoch == 1


def test_a_longer_run_is_refused_with_the_way_to_train_on(tmp_path):
    """More epochs change the cosine schedule's span, so the run is not resumed; the message
    says how to continue from the trained weights (and only when the length alone differs)."""
    _, first = _fit(tmp_path, epochs=1)
    train_set, val_set = _sets()
    longer = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=3),
                     tmp_path / "run")
    with pytest.raises(RuntimeError, match=r"config.epochs: checkpoint 1, now 3.*"
                                           r"train on from these weights.*load_weights"):
        longer.fit()
    other = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=3, lr=2e-2),
                    tmp_path / "run")
    with pytest.raises(RuntimeError, match="config.lr") as info:
        other.fit()
    assert "load_weights" not in str(info.value)
    model = load_weights(W.tiny_cnn(), tmp_path / "run" / "best.pt")
    assert _val_loss(model, val_set) == pytest.approx(first.best_val_loss, rel=1e-5)
    res = Trainer(model, None, train_set, val_set, W.cnn_config(epochs=3),
                  tmp_path / "longer").fit()
    assert res.resumed_from_epoch is None and res.epochs_run == 3


def _read_only(monkeypatch, folder):
    """Emulate a read-only out_dir (chmod does not stop root, who runs CI here)."""
    import tempfile

    for name in ("TemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)

        def refuse(*args, dir=None, _real=real, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise PermissionError(13, "Permission denied")
            return _real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, name, refuse)


def test_an_unusable_out_dir_is_named_before_any_training(tmp_path, monkeypatch):
    train_set, val_set = _sets()

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking out_dir")

    monkeypatch.setattr(Trainer, "_train_epoch", no_training)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    t = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1), blocker)
    with pytest.raises(NotADirectoryError, match="out_dir .*a_file.* is not a folder"):
        t.fit()
    _read_only(monkeypatch, tmp_path / "ro")
    t = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1), tmp_path / "ro")
    with pytest.raises(PermissionError, match="out_dir .*ro.* is not writable"):
        t.fit()


def test_a_finished_run_reads_back_from_a_read_only_folder(tmp_path, monkeypatch):
    _, first = _fit(tmp_path, epochs=1)
    _read_only(monkeypatch, tmp_path / "run")
    train_set, val_set = _sets()
    model = W.tiny_cnn()
    again = Trainer(model, None, train_set, val_set, W.cnn_config(epochs=1),
                    tmp_path / "run").fit()
    assert again.resumed_from_epoch == 1 and again.best_val_loss == first.best_val_loss
    assert _val_loss(model, val_set) == pytest.approx(first.best_val_loss, rel=1e-5)


@pytest.mark.parametrize("content", ["tensor", "list", "no_state"])
def test_a_checkpoint_of_another_structure_is_refused_by_name(tmp_path, content):
    _fit(tmp_path, epochs=1)
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    blob = {"tensor": torch.zeros(3), "list": [1, 2],
            "no_state": {k: v for k, v in ckpt.items() if k != "state"}}[content]
    torch.save(blob, path)
    train_set, val_set = _sets()
    t = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1), tmp_path / "run")
    with pytest.raises(RuntimeError, match="checkpoint.pt.* belongs to a different run"):
        t.fit()


def test_resume_mid_epoch_in_process(tmp_path):
    """A checkpoint written mid-epoch (checkpoint_every) resumes with identical results."""
    _, ref = _fit(tmp_path, "ref")
    train_set, val_set = _sets()

    class Stop(Exception):
        pass

    class Interrupting(torch.utils.data.Dataset):
        def __init__(self):
            self.calls = 0

        def __len__(self):
            return len(train_set)

        def __getitem__(self, i):
            self.calls += 1
            if self.calls > 8 * 6:  # stop inside epoch 2, after the checkpoint of step 6
                raise Stop()
            return train_set[i]

    seed_everything(0)
    t = Trainer(W.tiny_cnn(), None, Interrupting(), val_set, W.cnn_config(checkpoint_every=3),
                tmp_path / "cut")
    with pytest.raises(Stop):
        t.fit()
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert ckpt["state"]["step"] == 6 and ckpt["state"]["batch_in_epoch"] == 2
    seed_everything(5)  # a different global RNG state: the checkpoint's must win
    res = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(checkpoint_every=3),
                  tmp_path / "cut").fit()
    assert res.resumed_from_step == 6 and res.resumed_from_epoch == 1
    assert [r["val_loss"] for r in res.log] == [r["val_loss"] for r in ref.log]
    assert [r["train_loss"] for r in res.log] == pytest.approx([r["train_loss"] for r in ref.log],
                                                               rel=1e-12)


def _run_worker(out, *extra, stall=False):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = [sys.executable, str(WORKER), "train", str(out), *extra]
    if stall:
        args.append("--stall")
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run_worker(out)
    assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
    return out


@pytest.mark.parametrize("checkpoint_every", [None, 3])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, uninterrupted_run,
                                                   checkpoint_every):
    """SIGKILL a training right after its first checkpoint (end of epoch 1, or step 3 of 4 with
    checkpoint_every=3); resuming ends where an uninterrupted run with the same seed ends, bit for
    bit on the CPU."""
    extra = [] if checkpoint_every is None else ["--checkpoint-every", str(checkpoint_every)]
    victim = _run_worker(tmp_path / "cut", *extra, stall=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "stalled").exists():
        assert victim.poll() is None, victim.stdout.read().decode()
        assert time.time() < deadline, "the training never wrote its first checkpoint"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    saved_epoch, saved_step = ckpt["state"]["epoch"], ckpt["state"]["step"]
    assert not ckpt["state"]["finished"]
    assert (saved_epoch, saved_step) == ((1, 4) if checkpoint_every is None else (0, 3))
    assert not (tmp_path / "cut" / "result.json").exists()

    b = W.train_cnn(tmp_path / "cut", checkpoint_every=checkpoint_every)  # resume, in process
    a = json.loads((uninterrupted_run / "result.json").read_text())
    assert b["resumed_from_epoch"] == saved_epoch and b["resumed_from_step"] == saved_step
    assert b["epochs_run"] == a["epochs_run"] == 4 and b["steps"] == a["steps"] == 16
    assert b["best_val_loss"] == a["best_val_loss"]
    assert [r["val_loss"] for r in b["log"]] == [r["val_loss"] for r in a["log"]]
    wa = torch.load(uninterrupted_run / "best.pt", weights_only=True)
    wb = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_at_a_random_moment_then_resume(tmp_path, uninterrupted_run):
    """SIGKILL at a random moment of a run that checkpoints every step (so the kill may land in
    the middle of a checkpoint write); whatever it hit, the resumed run ends as the reference."""
    import random

    victim = _run_worker(tmp_path / "cut", "--checkpoint-every", "1", "--sample-delay", "0.003")
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoint.pt").exists() and victim.poll() is None:
        assert time.time() < deadline, "the training never wrote its first checkpoint"
        time.sleep(0.005)
    # the 15 steps left take >= 15 * 8 * 3 ms = 0.36 s of sample delay alone: the kill lands
    # before the end, at a random point (training, validation or a checkpoint write)
    time.sleep(random.uniform(0.0, 0.3))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    load_checkpoint(tmp_path / "cut" / "checkpoint.pt")  # readable, whatever the kill hit
    b = W.train_cnn(tmp_path / "cut", checkpoint_every=1)  # resume, in process
    a = json.loads((uninterrupted_run / "result.json").read_text())
    assert [r["val_loss"] for r in b["log"]] == [r["val_loss"] for r in a["log"]]
    wa = torch.load(uninterrupted_run / "best.pt", weights_only=True)
    wb = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list((tmp_path / "cut").glob(".*.tmp"))


# -- distributed -------------------------------------------------------------------------------
def test_ddp_two_processes_gloo_replicas_agree(tmp_path):
    """2 CPU processes (gloo) train a model that wraps a fixed XRayTransform; the replicas end
    identical, and equal to one process with the same global batch."""
    results = run_distributed(W.ddp_fn, 2, backend="gloo", args=(str(tmp_path / "ddp"),))
    r0, r1 = results
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert r0["state"].keys() == r1["state"].keys() and "A.angles" in r0["state"]
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["fit"]["best_val_loss"] == r1["fit"]["best_val_loss"]
    assert r0["fit"]["steps"] == 2 * 4  # 32 samples / global batch 8, 2 epochs
    assert "divisible" in r0["indivisible_error"] and "divisible" in r1["indivisible_error"]
    # one process, same global batch: the same optimisation up to rounding
    fit1, state1 = W.train_operator_model(str(tmp_path / "single"))
    for k in state1:
        torch.testing.assert_close(state1[k], r0["state"][k], rtol=1e-4, atol=1e-6)
    assert fit1["best_val_loss"] == pytest.approx(r0["fit"]["best_val_loss"], rel=1e-4)
    # evaluate(): each process takes a shard, every process gets the statistics of all samples
    e0, e1 = r0["evaluation"], r1["evaluation"]
    assert e0 == e1 and e0["val"]["mae"]["n"] == e0["val"]["loss"]["n"] == 16
    assert e0["one"]["mae"]["n"] == 1 and e0["one"]["mae"]["std"] == 0.0
    _, _, e_single = W.train_operator_model(str(tmp_path / "single"), evaluate=True)
    for part in ("val", "one"):
        assert e_single[part]["mae"]["mean"] == pytest.approx(e0[part]["mae"]["mean"], rel=1e-4)
    # rank 0 wrote the files
    assert (tmp_path / "ddp" / "best.pt").exists() and (tmp_path / "ddp" / "log.csv").exists()


@pytest.mark.skipif(not shutil.which(os.environ.get("CXX", "") or "g++"),
                    reason="Inductor on the CPU needs a C++ compiler")
@pytest.mark.skipif(not HAVE_CUSTOM_OPS, reason="compiling the operators needs torch >= 2.4")
def test_ddp_two_processes_with_compile_follow_eager(tmp_path):
    """TrainConfig(compile=True) under DistributedDataParallel (2 gloo processes): the replicas
    stay identical and follow the eager DDP run."""
    runs = {c: run_distributed(W.ddp_compile_fn, 2, backend="gloo",
                               args=(str(tmp_path / f"compile_{c}"), c)) for c in (False, True)}
    r0, r1 = runs[True]
    assert r0["graphs"] > 0 and r1["graphs"] > 0, "the training steps went through Dynamo"
    assert runs[False][0]["graphs"] == 0
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["fit"]["best_val_loss"] == pytest.approx(runs[False][0]["fit"]["best_val_loss"],
                                                       rel=1e-4)


def test_run_distributed_keeps_results_of_a_crash_in_teardown():
    """A process that dies after every rank has finished and saved (gloo's teardown abort) loses
    nothing: the results are returned with a warning. One that dies earlier is an error."""
    from torch.multiprocessing import ProcessExitedException
    with pytest.warns(RuntimeWarning, match="after every rank had finished"):
        assert run_distributed(W.abort_at_exit_fn, 2, backend="gloo") == [0, 10]
    with pytest.raises(ProcessExitedException, match="SIGABRT"):
        run_distributed(W.abort_before_finishing_fn, 2, backend="gloo")


def test_run_distributed_validates_arguments():
    with pytest.raises(ValueError, match="world_size"):
        run_distributed(W.ddp_fn, 0)
    with pytest.raises(ValueError, match="backend"):
        run_distributed(W.ddp_fn, 1, backend="mpi")


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "tr"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(WORKER), "torchrun", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s0 = torch.load(out / "state_rank0.pt", weights_only=True)
    s1 = torch.load(out / "state_rank1.pt", weights_only=True)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert json.loads((out / "result.json").read_text())["steps"] == 8


# -- seeds -------------------------------------------------------------------------------------
def test_train_seeds_and_summary(tmp_path):
    train_set, val_set = _sets()
    runs = train_seeds(lambda s: W.tiny_cnn(), [0, 1], train_set=train_set, val_set=val_set,
                       config=W.cnn_config(epochs=1), out_dir=tmp_path, test_set=val_set,
                       metrics_fn=lambda o, t: {"mae": (o - t).abs().mean(dim=(1, 2, 3))})
    assert [r.seed for r in runs] == [0, 1]
    assert (tmp_path / "seed0" / "best.pt").exists() and (tmp_path / "seed1" / "best.pt").exists()
    assert runs[0].fit.best_val_loss != runs[1].fit.best_val_loss
    summary = summarize_seeds(runs)
    vals = [r.test["mae"]["mean"] for r in runs]
    assert summary["test_mae"]["mean"] == pytest.approx(sum(vals) / 2)
    assert summary["test_mae"]["std"] == pytest.approx(abs(vals[0] - vals[1]) / 2)
    assert summary["best_val_loss"]["n"] == 2
    # plain dicts and evaluate()-style entries
    s = summarize_seeds([{"psnr": 30.0, "ssim": {"mean": 0.8}}, {"psnr": 32.0, "ssim": 0.9}],
                        ddof=1)
    assert s["psnr"]["mean"] == 31.0 and s["psnr"]["std"] == pytest.approx(math.sqrt(2))
    assert s["ssim"]["mean"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="distinct"):
        train_seeds(lambda s: W.tiny_cnn(), [1, 1], train_set=train_set, val_set=val_set,
                    config=W.cnn_config(), out_dir=tmp_path)
    with pytest.raises(TypeError):
        summarize_seeds([3.0])


# -- CUDA (run on a GPU machine; skipped elsewhere) --------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_cuda_fit_resume_and_load(tmp_path):
    train_set, val_set = _sets()
    seed_everything(0)
    model = W.tiny_cnn()
    res = Trainer(model, None, train_set, val_set, W.cnn_config(device="cuda"), tmp_path).fit()
    assert next(model.parameters()).device.type == "cuda"
    assert res.best_val_loss < res.log[0]["train_loss"]
    cpu_model = load_weights(W.tiny_cnn(), res.best_path)  # mapped to the CPU
    x, _ = val_set.tensors
    torch.testing.assert_close(cpu_model(x), model(x.cuda()).cpu(), rtol=1e-4, atol=1e-5)
    again = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(device="cpu"),
                    tmp_path).fit()  # a CUDA checkpoint resumes on the CPU (device is free)
    assert again.resumed_from_epoch == res.epochs_run and again.log == res.log


@pytest.mark.gpu
@cuda
def test_cuda_operator_model_in_one_process_nccl_group(tmp_path):
    (r0,) = run_distributed(W.ddp_fn, 1, backend="nccl", args=(str(tmp_path / "d"), "cuda"))
    fit1, state1 = W.train_operator_model(str(tmp_path / "single"), device="cpu")
    for k in state1:
        torch.testing.assert_close(r0["state"][k], state1[k], rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
@cuda
def test_ddp_two_processes_gloo_on_one_gpu(tmp_path):
    r0, r1 = run_distributed(W.ddp_fn, 2, backend="gloo", args=(str(tmp_path / "d"), "cuda:0"))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k


@pytest.mark.gpu
@cuda
def test_cuda_resident_dataset(tmp_path):
    x, y = W.conv_data(48)
    x, y = x.cuda(), y.cuda()
    seed_everything(0)
    res = Trainer(W.tiny_cnn(), None, TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:]),
                  W.cnn_config(device="cuda", epochs=2), tmp_path).fit()
    assert res.steps == 8 and math.isfinite(res.best_val_loss)
