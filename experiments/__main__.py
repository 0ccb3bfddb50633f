"""Command line: ``python -m experiments list | run NAME|all | report``.

Exit codes: 0 success; 1 one or more experiments failed (the others still ran); 2 a bad argument
(unknown experiment, unwritable output folder, unavailable device, bad seed count, a ``--set``
field the config lacks or a value it refuses), with a message naming the argument; 130
interrupted (Ctrl-C: the run is marked "interrupted" and the same command resumes it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import registry
from .overrides import OverrideError, parse_overrides
from .runner import DEFAULT_PRESET, RunnerError, run_all, run_experiment

DEFAULT_OUT = Path("runs")


def _folder(text: str) -> Path:
    """``--out``: a folder path; an empty one (``Path("")`` is the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path would write into the current folder: "
                                         "name one")
    return Path(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce the figures and claims of known-operators' papers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,report}")

    sub.add_parser("list", help="name every experiment with a one-line description")

    run = sub.add_parser("run", help="run one experiment, or all of them and write the report")
    run.add_argument("name", metavar="NAME", help="experiment name (see `list`) or 'all'")
    size = run.add_mutually_exclusive_group()
    for preset, text in (("tiny", "seconds, for tests and CI"),
                         ("quick", "minutes on a 2-core CPU (default)"),
                         ("full", "the paper's scale (a GPU helps)")):
        size.add_argument(f"--{preset}", dest="preset", action="store_const", const=preset,
                          help=text)
    run.set_defaults(preset=DEFAULT_PRESET)
    run.add_argument("--out", type=_folder, default=DEFAULT_OUT,
                     help="output root; each experiment writes into OUT/NAME (default: runs)")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 "
                     "(default: cpu)")
    run.add_argument("--seeds", type=int, default=None, metavar="N",
                     help="run with seeds 0..N-1 (default: the experiment's own default, or 1)")
    run.add_argument("--force", action="store_true",
                     help="rerun from scratch even if finished results or checkpoints exist")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="FIELD=VALUE",
                     help="change one field of the preset's config (repeatable; one experiment "
                          "only), e.g. --set max_steps=1000; tuples comma-separated, none for "
                          "None (see experiments/overrides.py)")

    report = sub.add_parser("report", help="write OUT/index.html and OUT/REPORT.md")
    report.add_argument("--out", type=_folder, default=DEFAULT_OUT, help="output root (default: runs)")
    return parser


def _usage_error(message: str) -> int:
    print(f"python -m experiments: error: {message}", file=sys.stderr)
    return 2


def _cmd_list() -> int:
    rows = []
    for entry in registry.EXPERIMENTS:
        if not entry.available():
            rows.append((entry.name, f"(not available yet: {entry.path_hint} does not exist)"))
            continue
        try:
            module = entry.load()
            rows.append((entry.name, f"{module.DESCRIPTION}  [{module.REFERENCE}]"))
        except Exception as exc:  # list must name every experiment even if one is broken
            rows.append((entry.name, f"(cannot be loaded: {type(exc).__name__}: {exc})"))
    width = max(len(n) for n, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    extra = registry.unregistered_modules()
    if extra:
        print(f"\nnote: not in the registry (not run by `run all`): "
              f"{', '.join('experiments/' + m + '.py' for m in extra)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        overrides = parse_overrides(args.overrides)
    except OverrideError as exc:
        return _usage_error(f"argument --set: {exc}")
    if overrides and args.name == "all":
        return _usage_error("argument --set: the experiments' configs have different fields; "
                            "name one experiment")
    try:
        if args.name == "all":
            outcomes = run_all(args.out, preset=args.preset, device=args.device, seeds=args.seeds,
                               force=args.force)
        else:
            outcomes = [run_experiment(args.name, args.out, preset=args.preset,
                                       device=args.device, seeds=args.seeds, force=args.force,
                                       overrides=overrides)]
    except RunnerError as exc:
        return _usage_error(str(exc))
    except registry.UnknownExperimentError as exc:
        return _usage_error(f"argument NAME: {exc} (or 'all')")
    except ModuleNotFoundError as exc:
        if args.name != "all" and exc.name == registry.get(args.name).qualified:
            return _usage_error(f"argument NAME: {exc}")
        raise
    for outcome in outcomes:
        detail = ""
        if outcome.wall_time_s is not None:
            detail = f" in {outcome.wall_time_s:.1f} s"
        if outcome.error:
            detail += f": {outcome.error}"
        where = f" -> {outcome.folder}" if outcome.folder is not None and outcome.ok else ""
        print(f"{outcome.name}: {outcome.status}{detail}{where}")
    if args.name == "all":
        print(f"report: {args.out / 'index.html'} and {args.out / 'REPORT.md'}")
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    if not args.out.is_dir():
        return _usage_error(f"argument --out: {str(args.out)!r} is not a folder")
    try:
        html, md = write_report(args.out)
    except OSError as exc:  # permissions, a read-only or pseudo file system, ...
        return _usage_error(f"argument --out: cannot write the report "
                            f"({exc.strerror or type(exc).__name__})")
    print(f"report: {html} and {md}")
    return 0


def _interrupt_on_sigterm():
    """Treat SIGTERM (``kill``, ``timeout``, a batch system's time limit) as Ctrl-C, so that the
    run is recorded as interrupted and resumes; returns the previous handler (``None`` where
    handlers cannot be set: not the main thread)."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        return _cmd_list()
    if args.command == "run":
        previous = _interrupt_on_sigterm()
        try:
            return _cmd_run(args)
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume", file=sys.stderr)
            return 130
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return _cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
