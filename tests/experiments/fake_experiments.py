"""Fake experiment modules that follow the runner's protocol (used by the runner's tests and the
``--set`` tests through the ``fakes`` fixture of ``conftest.py``)."""

from __future__ import annotations

import importlib.machinery
import logging
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class FakeConfig:
    size: int = 3


def fake_module(module_name: str, behaviour: str = "ok") -> types.ModuleType:
    """A protocol-following experiment module; ``behaviour``: "ok", "fail", "fail_once"
    (fails after writing a checkpoint, then resumes from it) or "not_a_dict"."""
    qualified = f"experiments.{module_name}"
    mod = types.ModuleType(qualified)
    mod.__spec__ = importlib.machinery.ModuleSpec(qualified, loader=None)
    mod.NAME = module_name.replace("_", "-")
    mod.DESCRIPTION = f"fake experiment {module_name}"
    mod.REFERENCE = "Nobody et al. 2099 | a pipe"
    mod.Config = FakeConfig
    mod.PRESETS = {"tiny": FakeConfig(1), "quick": FakeConfig(2), "full": FakeConfig(3)}
    mod.calls = []

    def run(config, out, *, device, seeds):
        mod.calls.append({"config": config, "out": out, "device": device, "seeds": list(seeds)})
        logging.getLogger(qualified).info("fake experiment running with size %d", config.size)
        ckpt = out / "checkpoint.txt"
        resumed = ckpt.exists()
        if behaviour == "fail":
            raise RuntimeError("deliberate failure")
        if behaviour == "fail_once" and not resumed:
            ckpt.write_text("half done")
            raise RuntimeError("interrupted half way")
        if behaviour == "not_a_dict":
            return [1, 2, 3]
        ckpt.write_text("done")
        from matplotlib.figure import Figure

        from experiments.common import claim, save_figure
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1], [0, config.size])
        save_figure(fig, out / "line.png")
        return {"size": config.size, "resumed": resumed, "nested": {"a": 1.5, "b": [1, 2]},
                "claims": [claim("size is positive", config.size > 0, size=config.size)]}

    mod.run = run
    return mod
