"""The sparse-view learned-reconstruction experiment at its tiny preset (CPU, seconds)."""

import dataclasses
import json

import pytest
import torch

from experiments import sparse_view as sv
from experiments.common import write_json_atomic


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse_view")
    metrics = sv.run(sv.PRESETS["tiny"], out, device=torch.device("cpu"), seeds=[0])
    write_json_atomic(out / "metrics.json", metrics)  # what the runner does
    return out, metrics


def test_protocol():
    assert sv.NAME == "sparse-view"
    assert set(sv.PRESETS) == {"tiny", "quick", "full"}
    assert sv.PRESETS["full"] == sv.Config()
    quick = sv.PRESETS["quick"]
    assert (quick.size, quick.views, quick.noise) == (128, 30, 0.05)
    assert quick.detectors == 183


def test_tiny_outputs(tiny_run):
    out, m = tiny_run
    json.loads((out / "metrics.json").read_text())  # JSON-serialisable
    assert set(m["methods"]) == set(sv.METHODS)
    for method, s in m["methods"].items():
        assert 0 < s["psnr"]["mean"] < 100, method
        assert 0 < s["ssim"]["mean"] <= 1, method
        assert s["psnr"]["std_test"] >= 0
        assert len(s["psnr"]["per_seed"]) == (1 if method in ("fbp", "tv") else 1)
        for case in ("shepp_logan", "ct_small"):
            assert s[case]["psnr"]["n"] == 1
    for method in sv.LEARNED:
        assert m["methods"][method]["seconds_per_step"]["mean"] > 0
        assert m["methods"][method]["steps"] == [2]
        folder = out / "models" / method / "seed0"
        assert (folder / "checkpoint.pt").is_file() and (folder / "best.pt").is_file()
    claims = {c["claim"]: c for c in m["claims"]}
    assert len(claims) == 2
    for c in claims.values():
        assert isinstance(c["held"], bool) and "lpd" in c["numbers"]
    assert (out / "examples.png").stat().st_size > 0
    assert (out / "psnr.png").stat().st_size > 0
    assert m["tv_choice"]["lam"] in sv.PRESETS["tiny"].tv_lams


def test_resume_reuses_results(tiny_run, monkeypatch):
    out, m = tiny_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr("recon.train.Trainer.fit", no_training)
    again = sv.run(sv.PRESETS["tiny"], out, device=torch.device("cpu"), seeds=[0])
    assert again["methods"]["lpd"]["psnr"] == m["methods"]["lpd"]["psnr"]
    assert again["methods"]["tv"]["psnr"] == m["methods"]["tv"]["psnr"]


def test_killed_training_resumes(tmp_path):
    """A model folder with a checkpoint but no eval.json continues from the checkpoint."""
    cfg = dataclasses.replace(sv.PRESETS["tiny"], methods=("lpd",), epochs=2, max_steps=4)
    sv.run(cfg, tmp_path, device=torch.device("cpu"), seeds=[0])
    folder = tmp_path / "models" / "lpd" / "seed0"
    first = json.loads((folder / "eval.json").read_text())
    (folder / "eval.json").unlink()  # as if killed after training, before evaluation
    again = sv.run(cfg, tmp_path, device=torch.device("cpu"), seeds=[0])
    second = json.loads((folder / "eval.json").read_text())
    assert second["fit"]["resumed_from_step"] == 4
    assert second["test"] == first["test"]
    assert again["methods"]["lpd"]["psnr"]["mean"] == pytest.approx(
        sum(first["test"]["psnr"]) / len(first["test"]["psnr"]))


def test_bad_config():
    with pytest.raises(ValueError, match="methods"):
        sv.Config(methods=("lpd", "magic"))
    with pytest.raises(ValueError, match="size"):
        sv.Config(size=0)
