"""Run experiments into folders: frozen config, metrics, log; skip finished work, resume the rest.

One experiment ``NAME`` run into the output root ``DIR`` writes, in ``DIR/NAME/``:

- ``config.json``: the experiment's name, description and reference, the preset and the frozen
  config, the seeds, the device, package / torch / Python versions, the git commit (when the
  source is a git checkout), start and end times (UTC, ISO 8601), the wall time in seconds and a
  status (``"running"``, ``"finished"``, ``"failed"`` or ``"interrupted"``); written atomically
  when the run starts and again when it ends;
- ``metrics.json``: the dict the experiment's ``run`` returned, written atomically at the end;
- ``run.log``: the Python ``logging`` output of the run (appended to, one header per attempt, so
  an interrupted and resumed run keeps the log of both attempts);
- whatever the experiment writes itself (figures, checkpoints).

Skip and resume rules (:func:`run_experiment`):

- ``metrics.json`` exists and ``config.json`` holds the same experiment, preset, config and seeds:
  the experiment is skipped (``force=False``);
- ``config.json`` holds the same run but there is no ``metrics.json`` (interrupted or failed): the
  experiment runs again in the same folder, where it finds its checkpoints and resumes;
- a different preset, config or seeds: refused (:class:`RunnerError` naming ``--out``), so that
  a finished study is never replaced by another one by mistake (``run all --tiny`` into the
  folder of a three-seed ``--quick`` run); ``force=True`` deletes the folder's previous contents
  (checkpoints included) and starts from scratch. Only folders that the runner made (holding a
  ``config.json``) are cleared; a folder with files but no readable ``config.json`` is refused
  (its caches could not be matched to the run), or emptied with ``force=True``.

A run that starts deletes the temporaries of atomic writes killed before their rename
(``.NAME.*.tmp``) in its folder. ``config.json`` also records the host and process of the run
(``report`` marks a run whose process is gone as ``stopped``) and, for a resumed run, the
earlier attempts (status, times, commit and versions of each).

An experiment that uses fewer seeds than asked for (a module attribute ``SEEDS_USED``, e.g. 1
for the deterministic ones) runs with the first ones, and ``config.json`` records the seeds
it used.

The device is not part of the identity of a run: a result computed on the CPU is not recomputed
because a later call names a GPU.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from recon.training.atomic import probe_writable, remove_stale_temporaries_in

from . import registry
from .common import read_json, to_jsonable, write_json_atomic
from .overrides import OverrideError, apply_overrides, preset_label

__all__ = ["RunnerError", "RunOutcome", "resolve_device", "prepare_output", "resolve_seeds",
           "run_experiment", "run_all", "environment_info"]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "run.log"
DEFAULT_PRESET = "quick"
_IDENTITY_KEYS = ("experiment", "preset", "config", "seeds")


#: The most seeds one run takes (each seed is a full training of every model).
MAX_SEEDS = 1000


class RunnerError(ValueError):
    """A bad argument of the runner; ``argument`` names it (``"--device"``, ``"--out"``, ...)."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"argument {argument}: {message}")
        self.argument = argument


class ProtocolResultError(TypeError):
    """An experiment's ``run`` returned something other than a dict."""


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one experiment.

    Attributes
    ----------
    name : str
        Experiment name (dashes).
    status : str
        ``"finished"`` (ran now), ``"skipped"`` (finished before with the same config),
        ``"failed"`` (raised; see ``error``) or ``"missing"`` (module not written yet).
    folder : Path or None
        ``DIR/NAME``; ``None`` for a missing module.
    wall_time_s : float or None
        Seconds this call spent running it (``None`` when it did not run).
    error : str or None
        One-line error for ``"failed"`` / ``"missing"``.
    """

    name: str
    status: str
    folder: Optional[Path] = None
    wall_time_s: Optional[float] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status in ("finished", "skipped")


# --------------------------------------------------------------------------- argument checks
def resolve_device(spec: Any):
    """Parse and check a device spec such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Returns
    -------
    torch.device

    Raises
    ------
    RunnerError
        (argument ``--device``) for an unparsable spec or a device this machine does not have.
    """
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise RunnerError("--device", f"cannot parse device {spec!r} ({exc})") from None
    kind = device.type
    if kind == "cpu":
        return device
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RunnerError("--device", f"device {spec!r} requested but CUDA is not available "
                              f"(torch {torch.__version__}, built for CUDA "
                              f"{torch.version.cuda or 'none'}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RunnerError("--device", f"device {spec!r} requested but only {count} CUDA "
                              f"device(s) exist")
        return device
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RunnerError("--device", f"device {spec!r} requested but MPS is not available")
        return device
    backend = getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    if callable(available) and available():
        return device
    raise RunnerError("--device", f"device {spec!r} is not available on this machine")


def prepare_output(out: Any) -> Path:
    """Create the output root ``out`` if needed and check that files can be written in it.

    Raises
    ------
    RunnerError
        (argument ``--out``) when the folder cannot be created or written.
    """
    if out is None or str(out).strip() == "":
        raise RunnerError("--out", "an empty path would write into the current folder: name one")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise RunnerError("--out", f"{str(path)!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)
    except OSError as exc:
        raise RunnerError("--out", f"output folder {str(path)!r} is not writable "
                          f"({exc.strerror or exc})") from None
    return path


def resolve_seeds(seeds: Any, module=None, preset: str = DEFAULT_PRESET) -> List[int]:
    """The list of seeds for a run.

    Parameters
    ----------
    seeds : int, sequence of int or None
        ``N`` means seeds ``0 .. N-1``; a sequence is used as given; ``None`` takes the module's
        optional ``DEFAULT_SEEDS`` (an int, or a dict preset -> int) or else 1.

    Raises
    ------
    RunnerError
        (argument ``--seeds``) for a count below 1 or non-integer seeds.
    """
    if seeds is None:
        default = getattr(module, "DEFAULT_SEEDS", 1) if module is not None else 1
        if isinstance(default, Mapping):
            default = default.get(preset, 1)
        seeds = default
    if isinstance(seeds, bool):
        raise RunnerError("--seeds", f"expected a positive integer, got {seeds!r}")
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_SEEDS:
            raise RunnerError("--seeds", f"expected a count from 1 to {MAX_SEEDS}, got {seeds}")
        return list(range(seeds))
    try:
        values = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise RunnerError("--seeds", f"expected an integer count or integer seeds, got "
                          f"{seeds!r}") from None
    if not values:
        raise RunnerError("--seeds", "no seeds given")
    return values


# --------------------------------------------------------------------------- provenance
def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("known-operators")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib

        with open(pyproject, "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "unknown"


def _git_commit() -> Optional[Dict[str, Any]]:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(),
                "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> Dict[str, Any]:
    """Versions and source revision recorded in every ``config.json``."""
    import numpy
    import torch

    git = _git_commit()
    return {
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git["commit"] if git else None,
        "git_dirty": git["dirty"] if git else None,
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- folder handling
def _same_run(stored: Optional[Mapping[str, Any]], identity: Mapping[str, Any]) -> bool:
    return stored is not None and all(stored.get(k) == identity[k] for k in _IDENTITY_KEYS)


#: What ``config.json`` keeps of each earlier attempt of a resumed run.
_ATTEMPT_FIELDS = ("attempt", "status", "started", "finished", "wall_time_s", "error",
                   "git_commit", "git_dirty", "package_version", "torch_version", "device")


def _previous_attempts(stored: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    if not stored:
        return []
    earlier = list(stored.get("previous_attempts") or [])
    return earlier + [{k: stored.get(k) for k in _ATTEMPT_FIELDS if k in stored}]


def _describe_difference(stored: Mapping[str, Any], identity: Mapping[str, Any],
                         overrides: Optional[Mapping[str, str]] = None) -> str:
    """What differs between a stored run and the one asked for (with ``overrides``), in
    words."""
    def describe(run, changed):
        return f"preset {preset_label(run.get('preset', '?'), changed)}, seeds " \
               f"{run.get('seeds', '?')}"
    before, now = describe(stored, stored.get("overrides")), describe(identity, overrides)
    if before != now:
        return f"{before}; this one: {now}"
    return (f"{before}, with other settings: the preset's config has changed since "
            "(another version of the code)")


def _clear_folder(folder: Path) -> None:
    """Delete the contents of a run folder (only one the runner made: it has a config.json)."""
    if not (folder / CONFIG_FILE).exists():
        return
    _delete_contents(folder)


def _delete_contents(folder: Path) -> None:
    try:
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as exc:
        raise RunnerError("--out", f"cannot delete the previous run's files in {str(folder)!r} "
                                   f"({exc.strerror or type(exc).__name__}: "
                                   f"{exc.filename or ''}); make it writable or choose "
                                   "another --out") from None


def _check_writable(folder: Path) -> None:
    """Fail before any work when ``folder`` cannot take new files (a read-only copy of a run)."""
    try:
        probe_writable(folder)
    except OSError as exc:
        raise RunnerError("--out", f"cannot write into {str(folder)!r} "
                                   f"({exc.strerror or type(exc).__name__}); make it writable "
                                   "or choose another --out") from None


@contextlib.contextmanager
def _log_to(path: Path):
    """Send the root logger's records (INFO and up) and warnings to ``path`` for the block."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


# --------------------------------------------------------------------------- running
def run_experiment(name: str, out: Any, *, preset: str = DEFAULT_PRESET, device: Any = "cpu",
                   seeds: Any = None, force: bool = False,
                   overrides: Optional[Mapping[str, str]] = None) -> RunOutcome:
    """Run (or skip, or resume) one experiment into ``out/NAME``.

    Parameters
    ----------
    name : str
        Registered experiment name (dashes or underscores).
    out : path
        Output root; the experiment writes into ``out/NAME``.
    preset : {"tiny", "quick", "full"}
    device : str or torch.device
        Checked with :func:`resolve_device`.
    seeds : int, sequence of int or None
        See :func:`resolve_seeds`.
    force : bool
        Run from scratch even if a finished or resumable run with the same config exists.
    overrides : mapping of str to str, optional
        Fields of the preset's config to change, as text (``--set FIELD=VALUE``, read by
        :func:`experiments.overrides.apply_overrides`); recorded in ``config.json``. The
        changed config is the run's identity, so a folder holding the plain preset's run is
        not reused for it.

    Returns
    -------
    RunOutcome
        ``"finished"``, ``"skipped"`` or ``"failed"`` (the exception is logged into ``run.log``
        and recorded in ``config.json``; it is not raised).

    Raises
    ------
    UnknownExperimentError
        For an unregistered name.
    ModuleNotFoundError
        For a registered experiment whose module does not exist yet.
    RunnerError
        For a bad preset, device, output folder, seeds or override (``--set``).
    ProtocolError
        For a module that does not follow the protocol.
    """
    import torch

    entry = registry.get(name)
    if preset not in registry.PRESET_NAMES:
        raise RunnerError("--preset", f"unknown preset {preset!r}; valid: "
                          f"{', '.join(registry.PRESET_NAMES)}")
    torch_device = resolve_device(device)
    module = entry.load()
    seed_list = resolve_seeds(seeds, module, preset)
    root = prepare_output(out)
    most = getattr(module, "SEEDS_USED", None)  # experiments that use fewer seeds say so
    if most is not None and len(seed_list) > most:
        log.warning("%s uses %d seed(s): running with %s, not %s", entry.name, most,
                    seed_list[:most], seed_list)
        seed_list = seed_list[:most]
    config = module.PRESETS[preset]
    if overrides:
        try:
            config = apply_overrides(config, overrides)
        except OverrideError as exc:
            raise RunnerError("--set", f"{entry.name}: {exc}") from None
    identity = {"experiment": entry.name, "preset": preset, "config": to_jsonable(config),
                "seeds": seed_list}

    folder = root / entry.name
    config_path, metrics_path = folder / CONFIG_FILE, folder / METRICS_FILE
    if folder.exists() and not folder.is_dir():
        raise RunnerError("--out", f"{str(folder)!r} exists and is not a folder: remove it or "
                                   "choose another --out")
    stored = read_json(config_path)
    if stored is None and folder.is_dir() and any(folder.iterdir()):
        # Files without a readable config.json: caches of an unknown run (checkpoints, data)
        # that would be resumed as if they were this one's.
        if not force:
            raise RunnerError("--out", f"{str(folder)!r} holds files but no readable "
                                       f"{CONFIG_FILE}, so they cannot be matched to this run: "
                                       "remove them, or pass --force to delete them")
        log.warning("%s: deleting the contents of %s (no readable %s; --force)", entry.name,
                    folder, CONFIG_FILE)
        _delete_contents(folder)
    if not force and metrics_path.exists() and _same_run(stored, identity) \
            and stored.get("status") == "finished":
        log.info("%s: finished before with the same config, skipped (use --force to rerun)",
                 entry.name)
        return RunOutcome(entry.name, "skipped", folder)
    if stored is not None and not force and not _same_run(stored, identity):
        difference = _describe_difference(stored, identity, overrides)
        raise RunnerError("--out", f"{str(folder)!r} holds a {stored.get('status', 'previous')} "
                                   f"run of another configuration ({difference}); it is kept: "
                                   "choose another --out, or pass --force to replace it")
    if force:
        _clear_folder(folder)
        stored = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerError("--out", f"cannot create {str(folder)!r} "
                                   f"({exc.strerror or type(exc).__name__})") from None
    _check_writable(folder)
    if metrics_path.exists():  # stale metrics of another config, from a folder not ours
        metrics_path.unlink()
    stale = remove_stale_temporaries_in(folder)  # the run that starts here is the only writer
    if stale:
        log.info("%s: removed %d temporary file(s) of an interrupted write", entry.name, stale)

    record: Dict[str, Any] = {
        **identity,
        **({"overrides": dict(overrides)} if overrides else {}),
        "description": module.DESCRIPTION,
        "reference": module.REFERENCE,
        "module": entry.qualified,
        "device": str(torch_device),
        **environment_info(),
        "attempt": int(stored.get("attempt", 0)) + 1 if stored else 1,
        "status": "running",
        "started": _now(),
        "finished": None,
        "wall_time_s": None,
        "error": None,
        "host": platform.node(),
        "pid": os.getpid(),
        # The attempts before this one (a resumed run may span several code states).
        "previous_attempts": _previous_attempts(stored),
    }
    write_json_atomic(config_path, record)

    start = time.perf_counter()
    with _log_to(folder / LOG_FILE):
        log.info("=== %s, preset %s, attempt %d, device %s, seeds %s, commit %s ===",
                 entry.name, preset_label(preset, overrides), record["attempt"],
                 torch_device, seed_list, record.get("git_commit") or "unknown")
        try:
            torch.manual_seed(seed_list[0])
            metrics = module.run(config, folder, device=torch_device, seeds=seed_list)
            if not isinstance(metrics, Mapping):
                raise ProtocolResultError(f"{entry.qualified}.run returned "
                                          f"{type(metrics).__name__}, expected a dict")
            write_json_atomic(metrics_path, dict(metrics))
        except KeyboardInterrupt:
            record.update(status="interrupted", finished=_now(),
                          wall_time_s=time.perf_counter() - start, error="KeyboardInterrupt")
            write_json_atomic(config_path, record)
            log.warning("%s interrupted; rerun the same command to resume", entry.name)
            raise
        except Exception as exc:  # one experiment failing must not stop the others
            wall = time.perf_counter() - start
            message = f"{type(exc).__name__}: {exc}"
            log.error("%s failed after %.1f s: %s\n%s", entry.name, wall, message,
                      traceback.format_exc())
            record.update(status="failed", finished=_now(), wall_time_s=wall, error=message)
            write_json_atomic(config_path, record)
            return RunOutcome(entry.name, "failed", folder, wall, message)
        wall = time.perf_counter() - start
        record.update(status="finished", finished=_now(), wall_time_s=wall)
        write_json_atomic(config_path, record)
        log.info("%s finished in %.1f s", entry.name, wall)
    return RunOutcome(entry.name, "finished", folder, wall)


def run_all(out: Any, *, preset: str = DEFAULT_PRESET, device: Any = "cpu", seeds: Any = None,
            force: bool = False, names: Optional[Sequence[str]] = None,
            report: bool = True) -> List[RunOutcome]:
    """Run every registered experiment (or ``names``) in registry order, then write the report.

    A failing experiment is recorded and the others continue; a registered module that does not
    exist yet is reported as ``"missing"``. Argument errors (device, output folder, seeds) are
    raised before anything runs.

    Returns
    -------
    list of RunOutcome
        In run order.
    """
    resolve_device(device)
    if seeds is not None:
        resolve_seeds(seeds)
    root = prepare_output(out)
    entries = [registry.get(n) for n in names] if names is not None else list(registry.EXPERIMENTS)
    outcomes: List[RunOutcome] = []
    for i, entry in enumerate(entries, 1):
        log.info("[%d/%d] %s", i, len(entries), entry.name)
        if not entry.available():
            note = f"{entry.path_hint} does not exist yet"
            log.warning("%s skipped: %s", entry.name, note)
            outcomes.append(RunOutcome(entry.name, "missing", None, None, note))
            continue
        try:
            outcome = run_experiment(entry.name, root, preset=preset, device=device, seeds=seeds,
                                     force=force)
        except (ImportError, registry.ProtocolError, RunnerError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.error("%s could not start: %s", entry.name, message)
            outcome = RunOutcome(entry.name, "failed", root / entry.name, None, message)
        outcomes.append(outcome)
    if report:
        from .report import write_report

        write_report(root, notes={o.name: o.error for o in outcomes if o.error})
    return outcomes
