"""A rich progress bar over items, shared by the long pairs steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress bar with ``total`` items; yields ``advance(n)``. Disabled: a no-op."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled
    )
    task = bar.add_task("", total=total)
    with bar:
        yield lambda n: bar.update(task, advance=n)
