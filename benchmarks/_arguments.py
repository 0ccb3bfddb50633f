"""Argument types shared by the benchmark scripts' command lines (``argparse`` ``type=``)."""

from __future__ import annotations

import argparse
from typing import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an ``int`` of at least ``low``, or argparse's error naming the flag
    (exit status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"must be a positive integer, got {value}" if low == 1
                else f"must be an integer >= {low}, got {value}")
        return value
    return parse


#: An ``int`` of at least 1.
positive_int = int_at_least(1)
