"""Progress bars with rate and ETA for every stage slower than a few seconds (rich).

The one place outside the command layer that draws on the terminal: bars and spinners go to stderr, so stdout
stays clean for results, and each takes ``disable`` so library callers can keep quiet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)


def make_progress(*, disable: bool = False) -> Progress:
    """A rich Progress on stderr (stdout stays clean for results) with count, elapsed and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )


def track(iterable: Iterable[T], description: str, total: int | None = None, disable: bool = False) -> Iterator[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with make_progress(disable=disable) as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)


@contextlib.contextmanager
def status(description: str, disable: bool = False) -> Iterator[None]:
    """A spinner for a step whose length is unknown (e.g. a library call without its own progress)."""
    if disable:
        yield
        return
    with console.status(description, spinner="dots"):
        yield
