"""Cache files of an experiment's folder (data sets, learned filters): read weights-only, and a
damaged or foreign one is recomputed with a warning that names it, never executed or fatal."""

import logging
import pickle

import torch

from experiments.common import load_cache


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {"response": torch.zeros(3)}


def test_a_cache_round_trips_and_a_missing_one_is_none(tmp_path):
    assert load_cache(tmp_path / "absent.pt") is None
    blob = {"key": {"size": 4}, "train_y": torch.arange(6.0).reshape(2, 3), "meta": [None, 1.5]}
    torch.save(blob, tmp_path / "data.pt")
    back = load_cache(tmp_path / "data.pt")
    assert back["key"] == blob["key"] and back["meta"] == blob["meta"]
    assert torch.equal(back["train_y"], blob["train_y"])


def test_damaged_or_pickled_caches_are_recomputed_not_run(tmp_path, caplog):
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 not a whole archive")
    with open(tmp_path / "planted.pt", "wb") as f:
        pickle.dump(_Payload(), f)
    with caplog.at_level(logging.WARNING, logger="experiments.common"):
        assert load_cache(tmp_path / "truncated.pt") is None
        assert load_cache(tmp_path / "planted.pt") is None
    assert not _Payload.ran
    text = caplog.text
    assert str(tmp_path / "truncated.pt") in text and str(tmp_path / "planted.pt") in text
    assert "computing it afresh" in text
