"""Argument types shared by the benchmark scripts' command lines (``argparse`` ``type=``)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An ``int`` of at least 1, or argparse's error naming the flag (exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
