"""``--set FIELD=VALUE``: reading values by the config's field types, refusing bad ones by name,
every field of every real experiment settable from the command line, and the runner recording
the change (config.json, the refusal of a folder holding another run, the report)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import pytest

from experiments import registry
from experiments.__main__ import main
from experiments.overrides import OverrideError, apply_overrides, parse_overrides, preset_label


@dataclass(frozen=True)
class Knobs:
    steps: int = 10
    lr: float = 1e-3
    name: str = "hann"
    flag: bool = False
    patience: Optional[int] = 3
    scale: Optional[float] = None
    filters: Tuple[str, ...] = ("ram-lak",)
    levels: Tuple[float, ...] = (0.1, 0.2)
    box: Tuple[int, int] = (1, 2)
    lesions: Tuple[Tuple[float, float], ...] = ((8.0, 850.0),)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"Config.steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class WithDict:
    table: Dict[str, float] = dataclasses.field(default_factory=dict)


def test_parse_overrides_splits_at_the_first_equals_sign():
    assert parse_overrides(["a=1", " b = x,y ", "c=k=v", "d="]) == {
        "a": "1", "b": "x,y", "c": "k=v", "d": ""}
    for bad, why in ((["steps"], "expected FIELD=VALUE"), (["=3"], "no field name"),
                     (["a=1", "a=2"], "set twice")):
        with pytest.raises(OverrideError, match=why):
            parse_overrides(bad)


def test_values_are_read_by_the_field_type():
    k = apply_overrides(Knobs(), {
        "steps": "1000", "lr": "5e-4", "name": "shepp-logan", "flag": "true",
        "patience": "none", "scale": "2.5", "filters": "ram-lak, hann", "levels": "0.05,",
        "box": "3,4", "lesions": "((4, 100.0), (6.5, -50))"})
    assert k == Knobs(steps=1000, lr=5e-4, name="shepp-logan", flag=True, patience=None,
                      scale=2.5, filters=("ram-lak", "hann"), levels=(0.05,), box=(3, 4),
                      lesions=((4, 100.0), (6.5, -50)))
    assert apply_overrides(Knobs(), {"flag": "off", "patience": "7", "levels": ""}) == Knobs(
        flag=False, patience=7, levels=())
    assert apply_overrides(Knobs(), {}) == Knobs()


@pytest.mark.parametrize("field, text, message", [
    ("step", "3", "no field 'step'; its fields: steps, lr, name"),
    ("steps", "1.5", "steps: expected an integer, got '1.5'"),
    ("lr", "fast", "lr: expected a number, got 'fast'"),
    ("flag", "maybe", "flag: expected true or false"),
    ("patience", "many", "patience: expected an integer"),
    ("box", "1,2,3", "box: expected 2 comma-separated values, got 3"),
    ("levels", "0.1,x", "levels: expected a number, got 'x'"),
    ("lesions", "((1, 2)", "lesions: cannot read"),
    ("steps", "0", "Config.steps must be at least 1"),  # the config's own check
])
def test_bad_values_are_refused_naming_the_field(field, text, message):
    with pytest.raises(OverrideError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(Knobs(), {field: text})


def test_fields_of_other_types_say_they_cannot_be_set():
    with pytest.raises(OverrideError, match="table: a field of type .* cannot be set"):
        apply_overrides(WithDict(), {"table": "{}"})


def _as_text(value) -> str:
    """A field's value as a user would type it after ``--set FIELD=``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if any(isinstance(v, tuple) for v in value):
            return repr(value)
        return ",".join(_as_text(v) for v in value) + ("," if len(value) == 1 else "")
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("entry", registry.EXPERIMENTS, ids=lambda e: e.name)
def test_every_field_of_every_experiment_can_be_set_to_its_own_value(entry):
    config = entry.load().PRESETS["quick"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        text = _as_text(value)
        assert apply_overrides(config, {field.name: text}) == config, (field.name, text)


def test_the_runner_records_the_change_and_keeps_it_apart(fakes, tmp_path, capsys):
    mod = fakes("fake_ok")
    assert main(["run", "fake-ok", "--tiny", "--set", "size=5", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "fake-ok"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["config"] == {"size": 5}
    assert cfg["overrides"] == {"size": "5"} and mod.calls[-1]["config"].size == 5
    assert "preset tiny with size=5" in (folder / "run.log").read_text()
    # the same command is skipped; the plain preset into that folder is refused, naming both
    assert main(["run", "fake-ok", "--tiny", "--set", "size=5", "--out", str(tmp_path)]) == 0
    assert len(mod.calls) == 1
    capsys.readouterr()
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 2
    assert "preset tiny with size=5, seeds [0]; this one: preset tiny, seeds [0]" in \
        capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path)]) == 0
    assert "tiny with size=5" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["run", "fake-ok", "--set", "sise=5"], "argument --set: fake-ok: the config has no field "
                                            "'sise'; its fields: size"),
    (["run", "fake-ok", "--set", "size=big"], "argument --set: fake-ok: size: expected an "
                                              "integer, got 'big'"),
    (["run", "fake-ok", "--set", "size"], "argument --set: expected FIELD=VALUE"),
    (["run", "all", "--set", "size=5"], "argument --set: the experiments' configs have "
                                        "different fields; name one experiment"),
])
def test_bad_overrides_are_usage_errors_before_any_work(fakes, tmp_path, capsys,
                                                         argv, message):
    mod = fakes("fake_ok")
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert mod.calls == [] and not (tmp_path / "fake-ok").exists()


def test_preset_label():
    assert preset_label("quick") == "quick"
    assert preset_label("quick", {"max_steps": "1000", "epochs": "7"}) == \
        "quick with max_steps=1000, epochs=7"
