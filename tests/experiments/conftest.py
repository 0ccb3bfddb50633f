"""Fixtures of the experiments' tests."""

from __future__ import annotations

import sys

import pytest

from experiments import registry

from .fake_experiments import fake_module


@pytest.fixture
def fakes(monkeypatch):
    """Register fake experiments (replacing the real registry) and return a dict of modules."""
    mods = {}

    def add(module_name, behaviour="ok", register_only=False):
        entry = registry.Entry(module_name)
        if not register_only:
            mod = fake_module(module_name, behaviour)
            monkeypatch.setitem(sys.modules, entry.qualified, mod)
            mods[entry.name] = mod
        monkeypatch.setattr(registry, "EXPERIMENTS", registry.EXPERIMENTS + (entry,))
        return mods.get(entry.name)

    monkeypatch.setattr(registry, "EXPERIMENTS", ())
    return add
