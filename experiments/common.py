"""What every experiment module shares: atomic writes, claims, figures, the experiment protocol.

An experiment is one module ``experiments/<name>.py`` (name with underscores; its public NAME uses
dashes) defining::

    NAME = "sparse-view"                 # what `python -m experiments run NAME` takes
    DESCRIPTION = "one line for `python -m experiments list`"
    REFERENCE = "Adler & Oktem 2018, IEEE TMI 37(6)"   # paper(s) it reproduces or adapts

    @dataclass(frozen=True)
    class Config: ...                    # every knob, with defaults = the full configuration

    PRESETS = {"tiny": Config(...), "quick": Config(...), "full": Config()}
    # tiny: seconds, for CI; quick: minutes on a 2-core CPU; full: the paper's scale (GPU)

    def run(config: Config, out: Path, *, device: torch.device, seeds: Sequence[int]) -> dict:
        # writes figures (PNG) and checkpoints into `out`, resumes from checkpoints found there,
        # and returns the metrics dict (JSON-serialisable); a "claims" list where it checks
        # claims of a paper: [{"claim": str, "held": bool, "numbers": {...}}, ...]

The runner (``experiments/__main__.py``) writes ``config.json`` and ``metrics.json`` itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

from operators._checks import integer, real
from recon.training.atomic import write_atomic

log = logging.getLogger(__name__)

__all__ = ["write_json_atomic", "write_bytes_atomic", "save_figure", "claim", "to_jsonable",
           "mean_std", "run_seeds", "read_json", "load_cache"]


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy and torch scalars/arrays, tuples and paths to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensor
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


#: Float fields of an experiment's Config that must be positive (learning rates, pixel sizes,
#: detector pitches, clipping norms), by name.
_POSITIVE_FIELD = re.compile(r"(^|_)lr$|^pixel|pitch|spacing|^grad_clip$")


def check_config(config) -> None:
    """Check an experiment's frozen ``Config`` by its field types, naming the field.

    ``int`` fields are counts (at least 1; seeds and worker counts at least 0), ``float``
    fields finite (and positive for the names of :data:`_POSITIVE_FIELD`), ``bool`` and ``str``
    fields exactly that, ``Optional[...]`` also ``None``, ``Tuple[...]`` element by element
    (integers in tuples at least 0). A wrong kind is a ``TypeError``, a value out of range a
    ``ValueError`` (``operators._checks``). Ranges particular to an experiment are checked by
    its ``__post_init__`` after this.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        name = f.name
        _check_typed(f"Config.{name}", getattr(config, name), hints[name], name)


def _check_typed(label: str, value: Any, hint: Any, name: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            _check_typed(label, value, rest[0], name)
        return
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{label} must be a tuple, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            element_hints = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise ValueError(f"{label} must have {len(args)} entries, got {value!r}")
            element_hints = list(args)
        for i, (item, item_hint) in enumerate(zip(value, element_hints)):
            if item_hint is int:
                integer(f"{label}[{i}]", item, minimum=0)
            else:
                _check_typed(f"{label}[{i}]", item, item_hint, name)
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{label} must be True or False, got {value!r}")
    elif hint is int:
        integer(label, value, minimum=0 if ("seed" in name or "workers" in name) else 1)
    elif hint is float:
        real(label, value, positive=bool(_POSITIVE_FIELD.search(name)))
    elif hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a string, got {type(value).__name__}")


def fit_summary(fit, root: Path) -> Dict[str, Any]:
    """A ``recon.train`` fit result as JSON, without its per-epoch log, with its paths relative
    to the experiment folder ``root`` (so that ``metrics.json`` stays true when the output
    folder is copied or moved)."""
    out = {k: v for k, v in fit.to_dict().items() if k != "log"}
    for key in ("best_path", "checkpoint_path", "out_dir"):
        if isinstance(out.get(key), str):
            out[key] = Path(os.path.relpath(out[key], root)).as_posix()
    return out


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    write_atomic(path, lambda f: f.write(data))


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``, or ``None`` if it is missing, unreadable or not an object."""
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def load_cache(path: Path) -> Optional[Any]:
    """What a cache file of this run holds (read with ``weights_only=True``), or ``None`` when it
    is missing or unreadable (damaged, or not ours): the caller then computes it afresh, with a
    warning that names the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is recomputed
        log.warning("cannot read the cache %s (%s: %s); computing it afresh", path,
                    type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(to_jsonable(obj), indent=2) + "\n").encode())


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it. Returns the path."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)


def claim(text: str, held: bool, **numbers) -> Dict[str, Any]:
    """One entry of a metrics ``"claims"`` list (see shared/CONVENTIONS.md)."""
    return {"claim": text, "held": bool(held), "numbers": to_jsonable(numbers)}


def mean_std(values: Iterable[float]) -> Dict[str, float]:
    """``{"mean": ..., "std": ..., "n": ...}`` (population std; 0 for a single value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    return {"mean": float(arr.mean()) if arr.size else float("nan"),
            "std": float(arr.std()) if arr.size else float("nan"), "n": int(arr.size)}


def run_seeds(config, config_type: type, out: Path, seeds, one_seed):
    """Run ``one_seed(out, seed, figures=first)`` for each seed and summarise over seeds.

    Checks that ``config`` is a ``config_type`` and that ``seeds`` is not empty, creates ``out``.
    ``one_seed`` returns a flat dict of numbers. Returns ``(per_seed, summary, mean)``:
    the list of dicts, ``{key: mean_std(...)}`` and ``{key: mean}``.
    """
    if not isinstance(config, config_type):
        raise TypeError(f"config must be a {config_type.__module__}.{config_type.__name__}, got "
                        f"{type(config).__name__}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = [one_seed(out, s, figures=(i == 0)) for i, s in enumerate(seeds)]
    summary = {k: mean_std([m[k] for m in per_seed]) for k in per_seed[0]}
    return per_seed, summary, {k: v["mean"] for k, v in summary.items()}
