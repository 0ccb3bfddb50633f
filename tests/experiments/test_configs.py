"""Every experiment's Config refuses bad values by field name (``experiments.common.check_config``
plus the experiment's own ranges): they used to pass (``fbp-demo`` had no checks at all) and
fail later inside ``run`` with an error about an operator argument, or not at all."""

import dataclasses
import math
import typing

import pytest

from experiments import registry

MODULES = [entry.load() for entry in registry.EXPERIMENTS]
IDS = [entry.name for entry in registry.EXPERIMENTS]


def _fields(module, kind):
    hints = typing.get_type_hints(module.Config)
    return [f.name for f in dataclasses.fields(module.Config) if hints[f.name] is kind]


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_every_preset_is_a_valid_config(module):
    for preset in ("tiny", "quick", "full"):
        assert isinstance(module.PRESETS[preset], module.Config)


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_wrong_kinds_and_out_of_range_values_are_named(module):
    base = module.PRESETS["tiny"]
    cases = []
    for name in _fields(module, int):
        cases += [(name, 2.5, TypeError), (name, "3", TypeError), (name, True, TypeError),
                  (name, -1, ValueError)]
        if "seed" not in name and "workers" not in name:
            cases.append((name, 0, ValueError))
    for name in _fields(module, float):
        cases += [(name, math.nan, ValueError), (name, math.inf, ValueError),
                  (name, "1.0", TypeError)]
    for name in _fields(module, bool):
        cases.append((name, "yes", TypeError))
    for name in _fields(module, str):
        cases.append((name, 3, TypeError))
    assert cases
    for name, value, error in cases:
        with pytest.raises(error, match=f"Config.{name}"):
            dataclasses.replace(base, **{name: value})


@pytest.mark.parametrize("module, changes", [
    ("limited_angle", dict(source_to_isocenter=-1.0)),
    ("limited_angle", dict(lesions=())),
    ("limited_angle", dict(fbp_filter="nonsense")),
    ("sparse_view", dict(pixel_mm=-1.0)),
    ("sparse_view", dict(fbp_filters=("x",))),
    ("sparse_view", dict(lpd_update_init="nonsense")),
    ("sparse_view", dict(grad_clip=math.nan)),
    ("fbp_demo", dict(pixel=0.0)),
    ("learned_filter", dict(lr=-1.0)),
    ("trainable_fbp", dict(limited_arc_deg=400.0)),
])
def test_experiment_specific_ranges(module, changes):
    config_module = next(m for m in MODULES if m.__name__ == f"experiments.{module}")
    with pytest.raises(ValueError, match=f"Config.{next(iter(changes))}|{next(iter(changes))}"):
        dataclasses.replace(config_module.PRESETS["tiny"], **changes)
