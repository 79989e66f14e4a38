"""Consecutive slices of a sequence: batches of API calls, chunks of statement parameters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` cut into consecutive slices of at most `size`, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
