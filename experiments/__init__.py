"""Experiments of known-operators: one module per paper figure or study, run by one command.

``python -m experiments list`` names them, ``python -m experiments run NAME|all [--tiny|--quick|
--full] [--out DIR] [--device DEV] [--seeds N] [--force]`` runs them into ``DIR/NAME/`` (default
``runs/``), and ``python -m experiments report [--out DIR]`` writes ``DIR/index.html`` and
``DIR/REPORT.md``. The protocol every experiment module follows is described in
:mod:`experiments.common`; the order of experiments is in :mod:`experiments.registry`.
"""
