"""The ordered list of experiments and their lazy loading.

Every experiment is a module ``experiments/<module>.py`` following the protocol described in
:mod:`experiments.common` (``NAME``, ``DESCRIPTION``, ``REFERENCE``, ``Config``, ``PRESETS`` with
``"tiny"``, ``"quick"`` and ``"full"``, and ``run(config, out, *, device, seeds) -> dict``).
The registry names them in a fixed order (the seed paper's figures first, then the CT experiments);
a module is imported only when it is needed, and a registered module that does not exist yet is
reported as missing instead of breaking the rest (:func:`status`).

Names use dashes (``"seed-xor"``); the module name is the same with underscores (``seed_xor``).
:func:`get` accepts either spelling.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import List, Optional, Tuple

__all__ = ["Entry", "EXPERIMENTS", "PRESET_NAMES", "UnknownExperimentError", "ProtocolError",
           "names", "get", "load", "validate", "unregistered_modules"]

PACKAGE = "experiments"
PRESET_NAMES = ("tiny", "quick", "full")

#: Module names in the order `list`, `run all` and the report use.
_ORDER: Tuple[str, ...] = (
    # Maier et al. 2019, the seed paper's computational figures
    "seed_xor",
    "seed_decision_tree",
    "seed_activations",
    "seed_backprop",
    # CT reconstruction with known operators
    "fbp_demo",
    "baselines",
    "sparse_view",
    "learned_filter",
    "trainable_fbp",
    "rebinning",
    "limited_angle",
)

#: Modules of the package that are infrastructure, not experiments.
_INFRASTRUCTURE = frozenset({"__init__", "__main__", "common", "registry", "runner", "report"})


class UnknownExperimentError(KeyError):
    """An experiment name that is not registered (the message lists the valid names)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class ProtocolError(TypeError):
    """An experiment module that does not follow the protocol of :mod:`experiments.common`."""


@dataclass(frozen=True)
class Entry:
    """One registered experiment.

    Attributes
    ----------
    module : str
        Module name inside the ``experiments`` package (underscores), e.g. ``"seed_xor"``.
    """

    module: str

    @property
    def name(self) -> str:
        """The command-line name (dashes), e.g. ``"seed-xor"``."""
        return self.module.replace("_", "-")

    @property
    def qualified(self) -> str:
        return f"{PACKAGE}.{self.module}"

    @property
    def path_hint(self) -> str:
        return f"{PACKAGE}/{self.module}.py"

    def available(self) -> bool:
        """Whether the module's file exists (without importing it)."""
        try:
            return importlib.util.find_spec(self.qualified) is not None
        except (ImportError, ValueError):
            return False

    def load(self) -> ModuleType:
        """Import the module and check the protocol.

        Raises
        ------
        ModuleNotFoundError
            If the module does not exist (yet).
        ProtocolError
            If it misses a required attribute.
        """
        if not self.available():
            raise ModuleNotFoundError(
                f"experiment {self.name!r} is registered but {self.path_hint} does not exist yet",
                name=self.qualified)
        module = importlib.import_module(self.qualified)
        validate(module, expected_name=self.name)
        return module


EXPERIMENTS: Tuple[Entry, ...] = tuple(Entry(m) for m in _ORDER)


def names() -> List[str]:
    """All registered experiment names (dashes), in order, whether or not their module exists."""
    return [e.name for e in EXPERIMENTS]


def get(name: str) -> Entry:
    """The registry entry for ``name`` (dashes or underscores).

    Raises
    ------
    UnknownExperimentError
        If ``name`` is not registered; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().replace("_", "-")
    for entry in EXPERIMENTS:
        if entry.name == key:
            return entry
    raise UnknownExperimentError(
        f"unknown experiment {name!r}; valid names: {', '.join(names())}")


def load(name: str) -> ModuleType:
    """Import the experiment ``name`` and check its protocol (see :meth:`Entry.load`)."""
    return get(name).load()


def validate(module: ModuleType, expected_name: Optional[str] = None) -> None:
    """Check that ``module`` follows the experiment protocol.

    Raises
    ------
    ProtocolError
        Naming the module and what is missing or wrong.
    """
    where = getattr(module, "__name__", repr(module))
    missing = [a for a in ("NAME", "DESCRIPTION", "REFERENCE", "Config", "PRESETS", "run")
               if not hasattr(module, a)]
    if missing:
        raise ProtocolError(f"{where} misses {', '.join(missing)} (see experiments/common.py)")
    if expected_name is not None and module.NAME != expected_name:
        raise ProtocolError(f"{where}.NAME is {module.NAME!r}, the registry expects "
                            f"{expected_name!r}")
    if not (isinstance(module.Config, type) and dataclasses.is_dataclass(module.Config)):
        raise ProtocolError(f"{where}.Config must be a dataclass")
    presets = module.PRESETS
    absent = [p for p in PRESET_NAMES if p not in presets]
    if absent:
        raise ProtocolError(f"{where}.PRESETS misses {', '.join(absent)}")
    for key, cfg in presets.items():
        if not isinstance(cfg, module.Config):
            raise ProtocolError(f"{where}.PRESETS[{key!r}] is not a {where}.Config")
    if not callable(module.run):
        raise ProtocolError(f"{where}.run is not callable")


def unregistered_modules() -> List[str]:
    """Experiment-like modules of the ``experiments`` package that are not registered.

    Found from the package's files without importing them: a module counts as an experiment if
    its source defines ``NAME = `` and ``def run(`` at top level (helper modules such as a
    shared measurement module do not), so that `list` can say it is not run by `run all`.
    """
    import re
    from pathlib import Path

    package = importlib.import_module(PACKAGE)
    registered = set(_ORDER)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _INFRASTRUCTURE or info.name in registered or info.name.startswith("_"):
            continue
        path = Path(info.module_finder.path) / f"{info.name}.py"
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if re.search(r"^NAME\s*=", source, re.M) and re.search(r"^def run\(", source, re.M):
            found.append(info.name)
    return sorted(found)
