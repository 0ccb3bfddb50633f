"""Change fields of an experiment's frozen ``Config`` from the command line: ``--set FIELD=VALUE``.

A preset fixes every knob of a study (``tiny``, ``quick``, ``full``); a researcher who wants the
``quick`` study with longer training, another noise level or more views changes one field and
keeps the rest::

    python -m experiments run sparse-view --quick --set max_steps=1000 --set epochs=7

Each value is read by the field's type annotation:

* ``int``, ``float``, ``str``: as Python reads them (``1000``, ``1e-3``, ``hann``);
* ``bool``: ``true`` / ``false`` (also ``1`` / ``0``, ``yes`` / ``no``, ``on`` / ``off``);
* ``Optional[...]``: ``none`` for ``None``, else the inner type;
* tuples: comma-separated (``fbp_filters=ram-lak,hann``; ``noise_levels=0.01`` is a
  one-element tuple), or a Python literal for nested ones (``lesions=((1,2),(3,4))``).

The new config goes through the experiment's own checks (``__post_init__``: ranges, names), so
a value it refuses is refused here, with the field named. Fields of other types (none of the
experiments has one today) cannot be set and say so.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from typing import Any, Dict, Mapping, Sequence

__all__ = ["OverrideError", "parse_overrides", "apply_overrides", "preset_label"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class OverrideError(ValueError):
    """A ``--set`` item that cannot be applied; the message names the field."""


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    """``["a=1", "b=x,y"]`` -> ``{"a": "1", "b": "x,y"}`` (values still text).

    Raises
    ------
    OverrideError
        For an item without ``=``, an empty field name, or a field given twice.
    """
    out: Dict[str, str] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise OverrideError(f"expected FIELD=VALUE, got {item!r}")
        field, value = item.split("=", 1)
        field = field.strip()
        if not field:
            raise OverrideError(f"expected FIELD=VALUE, got {item!r} (no field name)")
        if field in out:
            raise OverrideError(f"field {field!r} is set twice")
        out[field] = value.strip()
    return out


def preset_label(preset: Any, overrides: Any = None) -> str:
    """``"quick"``, or ``"quick with max_steps=1000, epochs=7"`` for a run with ``--set``."""
    label = str(preset)
    if isinstance(overrides, Mapping) and overrides:
        label += " with " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    return label


def apply_overrides(config, overrides: Mapping[str, str]):
    """A copy of the frozen dataclass ``config`` with the fields of ``overrides`` replaced.

    Parameters
    ----------
    config : dataclass instance
        An experiment's ``Config`` (e.g. ``module.PRESETS["quick"]``).
    overrides : mapping of str to str
        Field name -> value as text (:func:`parse_overrides`).

    Raises
    ------
    OverrideError
        For an unknown field (the valid ones are listed), a value that does not parse as the
        field's type, or one the config's own checks refuse.
    """
    if not overrides:
        return config
    fields = [f.name for f in dataclasses.fields(config)]
    hints = typing.get_type_hints(type(config))
    values: Dict[str, Any] = {}
    for name, text in overrides.items():
        if name not in fields:
            raise OverrideError(f"the config has no field {name!r}; its fields: "
                                f"{', '.join(fields)}")
        values[name] = _parse(name, text, hints[name])
    try:
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError) as exc:
        raise OverrideError(str(exc)) from None


def _parse(name: str, text: str, hint) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        if len(inner) == 1:
            return _parse(name, text, inner[0])
    elif origin is tuple:
        return _parse_tuple(name, text, args)
    elif hint is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise OverrideError(f"{name}: expected true or false, got {text!r}")
    elif hint is int:
        try:
            return int(text)
        except ValueError:
            raise OverrideError(f"{name}: expected an integer, got {text!r}") from None
    elif hint is float:
        try:
            return float(text)
        except ValueError:
            raise OverrideError(f"{name}: expected a number, got {text!r}") from None
    elif hint is str:
        return text
    raise OverrideError(f"{name}: a field of type {hint!r} cannot be set from the command line")


def _parse_tuple(name: str, text: str, args) -> tuple:
    """Comma-separated elements, each read by its type; or a Python literal (nested tuples)."""
    if text.lstrip().startswith(("(", "[")):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise OverrideError(f"{name}: cannot read {text!r} as a tuple") from None
        return _as_tuple(value)
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if parts and parts[-1] == "":  # "0.01," is a one-element tuple, as in Python
        parts.pop()
    if len(args) == 2 and args[1] is Ellipsis:
        element_hints = [args[0]] * len(parts)
    else:
        if len(parts) != len(args):
            raise OverrideError(f"{name}: expected {len(args)} comma-separated values, got "
                                f"{len(parts)} in {text!r}")
        element_hints = list(args)
    return tuple(_parse(name, p, h) for p, h in zip(parts, element_hints))


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
