"""Write the report of an output root: ``DIR/index.html`` and its Markdown twin ``DIR/REPORT.md``.

The report is built from the files the runner left in ``DIR/NAME/`` (``config.json``,
``metrics.json`` and every PNG, see :mod:`experiments.runner`), so it can be rewritten at any
time without running anything (``python -m experiments report --out DIR``). It contains

- a summary table: every experiment, its status, preset, wall time and claims held;
- a global claims table: experiment, claim, held (yes / no) and the measured numbers;
- per experiment: description, reference, preset, device, seeds, wall time, revision, its
  claims again, every figure (PNG) in its folder, and its metrics as a two-column table
  (nested dicts flattened to dotted keys, long lists summarised).

All links are relative to ``DIR`` and point only at files that exist; the HTML carries its own
CSS and no script, so the folder can be copied and opened anywhere.
"""

from __future__ import annotations

import html as _html
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from . import registry
from .common import read_json, write_bytes_atomic
from .overrides import preset_label

__all__ = ["ExperimentRecord", "collect", "flatten_metrics", "format_value", "claims_table",
           "render_html", "render_markdown", "write_report"]

HTML_FILE = "index.html"
MARKDOWN_FILE = "REPORT.md"
_LIST_INLINE = 8      # lists up to this length are shown in full
_LIST_OF_DICTS = 32   # lists of dicts up to this length are flattened item by item


@dataclass
class ExperimentRecord:
    """What the report shows about one experiment folder (or a registered experiment without one).

    Attributes
    ----------
    name : str
        Experiment name, also the folder name under the output root.
    config : dict or None
        Content of ``config.json`` (None if absent or unreadable).
    metrics : dict or None
        Content of ``metrics.json``.
    figures : list of str
        PNG files, as POSIX paths relative to the output root, sorted.
    links : list of (label, path)
        Other files of the run worth linking (config, metrics, log), relative to the output root.
    note : str or None
        Why there are no results (module missing, run failed, ...).
    """

    name: str
    config: Optional[Dict[str, Any]] = None
    metrics: Optional[Dict[str, Any]] = None
    figures: List[str] = field(default_factory=list)
    links: List[Tuple[str, str]] = field(default_factory=list)
    note: Optional[str] = None

    @property
    def status(self) -> str:
        if self.config is None:
            return "not run"
        status = str(self.config.get("status", "unknown"))
        if status == "finished" and self.metrics is None:
            return "metrics missing"
        if status == "running" and _process_gone(self.config):
            return "stopped"  # killed (SIGKILL, out of memory, power): rerun to resume
        return status

    @property
    def claims(self) -> List[Dict[str, Any]]:
        """The claims of a finished run (none from a folder without a finished config: its
        metrics.json, if any, does not belong to a run the report can vouch for)."""
        if self.status != "finished":
            return []
        claims = (self.metrics or {}).get("claims") or []
        if not isinstance(claims, list):
            return []
        return [c for c in claims if isinstance(c, dict) and "claim" in c]


def _process_gone(config: Dict[str, Any]) -> bool:
    """Whether the process that wrote a ``"running"`` config is known to have ended (it ran on
    this host and its pid is gone); ``False`` when that cannot be told."""
    pid, host = config.get("pid"), config.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 \
            or host != platform.node():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but is not ours, or cannot be asked
        return False
    return False


def _record(root: Path, name: str) -> ExperimentRecord:
    folder = root / name
    rec = ExperimentRecord(name=name)
    if not folder.is_dir():
        return rec
    rec.config = read_json(folder / "config.json")
    rec.metrics = read_json(folder / "metrics.json")
    rec.figures = sorted(
        p.relative_to(root).as_posix() for p in folder.rglob("*.png")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    for label, fname in (("config", "config.json"), ("metrics", "metrics.json"),
                         ("log", "run.log")):
        if (folder / fname).is_file():
            rec.links.append((label, f"{name}/{fname}"))
    if rec.config is not None and rec.config.get("error"):
        rec.note = str(rec.config["error"])
    return rec


def collect(root: Path, notes: Optional[Dict[str, str]] = None) -> List[ExperimentRecord]:
    """Records for every registered experiment (registry order), then any other run folder.

    Parameters
    ----------
    root : Path
        Output root.
    notes : dict, optional
        Extra notes by experiment name (e.g. why one could not start), shown where a folder
        has none.
    """
    root = Path(root)
    notes = dict(notes or {})
    records = []
    known = set()
    for entry in registry.EXPERIMENTS:
        known.add(entry.name)
        rec = _record(root, entry.name)
        if rec.config is None and rec.note is None:
            rec.note = notes.get(entry.name) or (
                f"{entry.path_hint} does not exist yet" if not entry.available()
                else "no results in this folder yet")
        records.append(rec)
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in known and (folder / "config.json").is_file():
                records.append(_record(root, folder.name))
    return records


# --------------------------------------------------------------------------- formatting
def format_value(value: Any, digits: int = 4) -> str:
    """A short text for one metric value (numbers to ``digits`` significant digits, bools
    yes/no). The numbers of one dict or list get more digits where 4 would print two different
    values alike (PSNRs of 24.7306 and 24.7292 compared by a claim), up to 8."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return _format_list(list(value))
    if isinstance(value, dict):
        if not value:
            return "{}"
        d = _distinguishing_digits(list(value.values()))
        return ", ".join(f"{k}={format_value(v, d)}" for k, v in value.items())
    return str(value)


def _distinguishing_digits(values: List[Any], lowest: int = 4, highest: int = 8) -> int:
    """The fewest significant digits (``lowest`` .. ``highest``) at which the different finite
    floats among ``values`` print differently."""
    floats = {float(v) for v in values if isinstance(v, float) and math.isfinite(v)}
    for digits in range(lowest, highest + 1):
        if len({format_value(v, digits) for v in floats}) == len(floats):
            return digits
    return highest


def _format_list(values: List[Any]) -> str:
    if len(values) <= _LIST_INLINE:
        d = _distinguishing_digits(values)
        return "[" + ", ".join(format_value(v, d) for v in values) + "]"
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        finite = [float(v) for v in numbers if math.isfinite(v)]
        summary = f"{len(values)} values: first {format_value(values[0])}, " \
                  f"last {format_value(values[-1])}"
        if finite:
            summary += f", min {format_value(min(finite))}, max {format_value(max(finite))}"
        return summary
    return f"{len(values)} items: " + ", ".join(format_value(v) for v in values[:3]) + ", ..."


def flatten_metrics(metrics: Dict[str, Any], prefix: str = "",
                    skip: Sequence[str] = ("claims",)) -> List[Tuple[str, str]]:
    """Flatten nested metrics into ``(dotted key, formatted value)`` rows.

    Nested dicts become ``outer.inner``; lists of dicts (e.g. one entry per seed) become
    ``key[i].inner`` (up to 32 items, then summarised); lists of numbers are shown in full up to
    8 values, else summarised (count, first, last, min, max). Top-level keys in ``skip`` are left
    out (the claims have their own table).
    """
    rows: List[Tuple[str, str]] = []
    for key, value in metrics.items():
        if not prefix and key in skip:
            continue
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            rows.extend(flatten_metrics(value, name, skip=()))
        elif (isinstance(value, list) and value and len(value) <= _LIST_OF_DICTS
              and all(isinstance(v, dict) for v in value)):
            for i, item in enumerate(value):
                rows.extend(flatten_metrics(item, f"{name}[{i}]", skip=()))
        else:
            rows.append((name, format_value(value)))
    return rows


def _preset(config: Optional[Mapping[str, Any]]) -> str:
    """The run's preset as the report shows it, with the fields ``--set`` changed."""
    config = config or {}
    return preset_label(config.get("preset", "-"), config.get("overrides"))


def claims_table(records: Sequence[ExperimentRecord]) -> List[Tuple[str, str, str, bool, str]]:
    """All claims: ``(experiment, preset, claim, held, numbers as text)``, in report order.

    The preset is part of every row: a claim checked at "tiny" scale says little about the paper.
    """
    rows = []
    for rec in records:
        preset = _preset(rec.config)
        for c in rec.claims:
            numbers = c.get("numbers") or {}
            text = ", ".join(f"{k} = {format_value(v)}" for k, v in numbers.items()) \
                if isinstance(numbers, dict) else format_value(numbers)
            rows.append((rec.name, preset, str(c["claim"]), c.get("held") is True, text))
    return rows


def _wall(rec: ExperimentRecord) -> str:
    wall = (rec.config or {}).get("wall_time_s")
    if not isinstance(wall, (int, float)):
        return "n/a"
    return f"{wall:.1f} s" if wall < 120 else f"{wall / 60:.1f} min"


def _summary_rows(records: Sequence[ExperimentRecord]) -> List[Tuple[str, ...]]:
    rows = []
    for rec in records:
        cfg = rec.config or {}
        claims = rec.claims
        held = f"{sum(bool(c.get('held')) for c in claims)} / {len(claims)}" if claims else "-"
        rows.append((rec.name, rec.status, _preset(cfg), _wall(rec), held))
    return rows


def _details(rec: ExperimentRecord) -> List[Tuple[str, str]]:
    cfg = rec.config or {}
    out = []
    if cfg.get("preset") is not None:
        out.append(("preset", _preset(cfg)))
    for label, key in (("device", "device"), ("seeds", "seeds"),
                       ("started", "started"), ("package", "package_version"),
                       ("torch", "torch_version"), ("git commit", "git_commit")):
        if cfg.get(key) is not None:
            out.append((label, format_value(cfg[key])))
    out.append(("wall time", _wall(rec)))
    return out


def _href(path: str) -> str:
    return "/".join(quote(part) for part in PurePosixPath(path).parts)


# --------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
td.num { font-variant-numeric: tabular-nums; }
.yes { color: #0a6b16; font-weight: 600; }
.no { color: #a3140e; font-weight: 600; }
.status-failed, .status-interrupted, .status-stopped { color: #a3140e; font-weight: 600; }
figure { display: inline-block; margin: .4rem .8rem .8rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .8rem; color: #555; }
.meta { color: #555; font-size: .9rem; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: .3rem .6rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _e(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], raw_cols=()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f"<td>{cell if i in raw_cols else _e(cell)}</td>"
                        for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(records: Sequence[ExperimentRecord], title: str = "known-operators: report") -> str:
    """The self-contained HTML report (inline CSS, no scripts, relative links)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>"]
    claims = claims_table(records)
    held = sum(1 for c in claims if c[3])
    parts.append(f"<p class=\"meta\">{len(records)} experiments; {held} of {len(claims)} "
                 f"claims held. Written by <code>python -m experiments report</code>.</p>")

    parts.append("<h2 id=\"summary\">Summary</h2>")
    rows = []
    for name, status, preset, wall, nheld in _summary_rows(records):
        link = f"<a href=\"#exp-{_e(name)}\">{_e(name)}</a>"
        rows.append((link, f"<span class=\"status-{_e(status)}\">{_e(status)}</span>",
                     _e(preset), _e(wall), _e(nheld)))
    parts.append(_html_table(("experiment", "status", "preset", "wall time", "claims held"),
                             rows, raw_cols=(0, 1, 2, 3, 4)))

    parts.append("<h2 id=\"claims\">Claims</h2>")
    if claims:
        rows = [(_e(exp), _e(preset), _e(text),
                 f"<span class=\"{'yes' if ok else 'no'}\">{'yes' if ok else 'no'}</span>",
                 _e(numbers)) for exp, preset, text, ok, numbers in claims]
        parts.append(_html_table(("experiment", "preset", "claim", "held", "numbers"), rows,
                                 raw_cols=(0, 1, 2, 3, 4)))
    else:
        parts.append("<p>No claims checked yet.</p>")

    for rec in records:
        cfg = rec.config or {}
        parts.append(f"<h2 id=\"exp-{_e(rec.name)}\">{_e(rec.name)}</h2>")
        if cfg.get("description"):
            parts.append(f"<p>{_e(cfg['description'])}</p>")
        if cfg.get("reference"):
            parts.append(f"<p class=\"meta\">Reference: {_e(cfg['reference'])}</p>")
        if rec.note:
            parts.append(f"<p class=\"note\">{_e(rec.status)}: {_e(rec.note)}</p>")
        if rec.config is None:
            continue
        meta = "; ".join(f"{k}: {v}" for k, v in _details(rec))
        links = " · ".join(f"<a href=\"{_href(path)}\">{_e(label)}</a>"
                           for label, path in rec.links)
        parts.append(f"<p class=\"meta\">{_e(meta)}" + (f"<br>{links}" if links else "") + "</p>")
        own = [c for c in claims if c[0] == rec.name]
        if own:  # the experiment's claims again, next to its figures
            rows = [(_e(text), f"<span class=\"{'yes' if ok else 'no'}\">"
                     f"{'yes' if ok else 'no'}</span>", _e(numbers))
                    for _, _, text, ok, numbers in own]
            parts.append(_html_table(("claim", "held", "numbers"), rows, raw_cols=(0, 1, 2)))
        for fig in rec.figures:
            href = _href(fig)
            caption = PurePosixPath(fig).name
            parts.append(f"<figure><a href=\"{href}\"><img src=\"{href}\" alt=\"{_e(caption)}\" "
                         f"loading=\"lazy\"></a><figcaption>{_e(caption)}</figcaption></figure>")
        if rec.metrics is not None:
            rows = flatten_metrics(rec.metrics)
            if rows:
                parts.append(_html_table(("metric", "value"), rows))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- Markdown
def _md_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(records: Sequence[ExperimentRecord],
                    title: str = "known-operators: report") -> str:
    """The Markdown twin of :func:`render_html` (same content, relative links)."""
    claims = claims_table(records)
    held = sum(1 for c in claims if c[3])
    out = [f"# {title}", "",
           f"{len(records)} experiments; {held} of {len(claims)} claims held. "
           f"Written by `python -m experiments report`.", "", "## Summary", "",
           _md_table(("experiment", "status", "preset", "wall time", "claims held"),
                     _summary_rows(records)), "", "## Claims", ""]
    if claims:
        out.append(_md_table(("experiment", "preset", "claim", "held", "numbers"),
                             [(e, p, t, "yes" if ok else "no", n) for e, p, t, ok, n in claims]))
    else:
        out.append("No claims checked yet.")
    for rec in records:
        cfg = rec.config or {}
        out += ["", f"## {rec.name}", ""]
        if cfg.get("description"):
            out += [str(cfg["description"]), ""]
        if cfg.get("reference"):
            out += [f"Reference: {cfg['reference']}", ""]
        if rec.note:
            out += [f"> **{rec.status}**: {rec.note}", ""]
        if rec.config is None:
            continue
        out += ["; ".join(f"{k}: {v}" for k, v in _details(rec)), ""]
        if rec.links:
            out += [" · ".join(f"[{label}]({_href(path)})" for label, path in rec.links), ""]
        own = [c for c in claims if c[0] == rec.name]
        if own:
            out += [_md_table(("claim", "held", "numbers"),
                              [(t, "yes" if ok else "no", n) for _, _, t, ok, n in own]), ""]
        for fig in rec.figures:
            out += [f"![{PurePosixPath(fig).name}]({_href(fig)})", ""]
        if rec.metrics is not None:
            rows = flatten_metrics(rec.metrics)
            if rows:
                out += [_md_table(("metric", "value"), rows), ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(root: Path, notes: Optional[Dict[str, str]] = None) -> Tuple[Path, Path]:
    """Write ``root/index.html`` and ``root/REPORT.md`` atomically.

    Parameters
    ----------
    root : Path
        Output root holding one folder per experiment.
    notes : dict, optional
        Notes by experiment name for experiments without a folder (see :func:`collect`).

    Returns
    -------
    (Path, Path)
        The HTML and Markdown files.
    """
    root = Path(root)
    records = collect(root, notes)
    html_path, md_path = root / HTML_FILE, root / MARKDOWN_FILE
    write_bytes_atomic(html_path, render_html(records).encode("utf-8"))
    write_bytes_atomic(md_path, render_markdown(records).encode("utf-8"))
    return html_path, md_path
