"""Trainer contracts that no other test pins down: clipping, min_delta, temporaries, best.pt
on resume, the global RNG on resume, atomic writes (found by mutation testing)."""

import os
import stat
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from recon.train import Trainer, load_checkpoint, seed_everything
from recon.training.atomic import write_atomic
from recon.training.checkpoint import save_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ddp_worker as W  # noqa: E402


def _sets(n_train=32, n_val=16):
    x, y = W.conv_data(n_train + n_val)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def test_gradient_clipping_clips_the_gradient_the_optimizer_sees(tmp_path):
    seen = []

    def hook(opt, args, kwargs):
        g = [p.grad for grp in opt.param_groups for p in grp["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([x.norm() for x in g]))))

    from torch.optim.optimizer import register_optimizer_step_pre_hook
    handle = register_optimizer_step_pre_hook(hook)
    try:
        train_set, val_set = _sets()
        seed_everything(0)
        Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1, grad_clip=1e-3),
                tmp_path).fit()
    finally:
        handle.remove()
    assert seen and max(seen) <= 1e-3 * (1 + 1e-5)


def test_min_delta_small_improvements_do_not_count(tmp_path):
    train_set, val_set = _sets()
    seed_everything(0)
    res = Trainer(W.tiny_cnn(), None, train_set, val_set,
                  W.cnn_config(epochs=6, patience=2, min_delta=1e6), tmp_path).fit()
    assert res.best_epoch == 1 and res.stopped_early and res.epochs_run == 3
    assert [r["improved"] for r in res.log] == [True, False, False]


def test_fit_removes_stale_temporaries_of_a_killed_writer(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.abc123.tmp", out / ".best.pt.xyz.tmp"]
    for p in stale:
        p.write_bytes(b"half written")
    train_set, val_set = _sets()
    seed_everything(0)
    Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=1), out).fit()
    assert not any(p.exists() for p in stale)


def test_resume_rewrites_best_pt_from_the_checkpoint(tmp_path):
    # A kill between writing best.pt and checkpoint.pt leaves best.pt one epoch ahead; the
    # resume must rewrite it from the checkpoint's best weights.
    train_set, val_set = _sets()
    seed_everything(0)
    res = Trainer(W.tiny_cnn(), None, train_set, val_set, W.cnn_config(epochs=2), tmp_path).fit()
    stray = {k: torch.zeros_like(v) for k, v in W.tiny_cnn().state_dict().items()}
    torch.save(stray, res.best_path)
    model = W.tiny_cnn()
    Trainer(model, None, train_set, val_set, W.cnn_config(epochs=2), tmp_path).fit()
    best = load_checkpoint(res.best_path)
    ck = load_checkpoint(res.checkpoint_path)["best_model"]
    assert all(torch.equal(best[k], ck[k]) for k in ck)


def _dropout_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3),
                         nn.Conv2d(4, 1, 3, padding=1))


def test_resume_restores_the_global_rng_for_a_model_with_dropout(tmp_path):
    train_set, val_set = _sets()
    seed_everything(0)
    ref = Trainer(_dropout_cnn(), None, train_set, val_set, W.cnn_config(epochs=2),
                  tmp_path / "ref").fit()

    class Stop(Exception):
        pass

    class Interrupting(torch.utils.data.Dataset):
        calls = 0

        def __len__(self):
            return len(train_set)

        def __getitem__(self, i):
            Interrupting.calls += 1
            if Interrupting.calls > 8 * 6:
                raise Stop()
            return train_set[i]

    seed_everything(0)
    t = Trainer(_dropout_cnn(), None, Interrupting(), val_set,
                W.cnn_config(epochs=2, checkpoint_every=3), tmp_path / "cut")
    with pytest.raises(Stop):
        t.fit()
    seed_everything(5)          # another global RNG state: the checkpoint's must win
    res = Trainer(_dropout_cnn(), None, train_set, val_set,
                  W.cnn_config(epochs=2, checkpoint_every=3), tmp_path / "cut").fit()
    assert res.resumed_from_step == 6
    assert [r["train_loss"] for r in res.log] == pytest.approx(
        [r["train_loss"] for r in ref.log], rel=1e-12)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"epoch": 1}, path)

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        write_atomic(path, boom)
    assert load_checkpoint(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_written_file_has_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_atomic({"a": 1}, tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
