"""One rich progress bar for the long loops of every stage (counts, time left and a note)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Advance(Protocol):
    """The callback a :func:`progress_bar` yields."""

    def __call__(self, n: int = 1, note: str | None = None) -> None:
        """Move the bar on by ``n`` items and, when given, replace its note (a rate, a loss, a status)."""


@contextmanager
def progress_bar(
    label: str, total: int, enabled: bool = True, *, done: int = 0, transient: bool = False
) -> Iterator[Advance]:
    """A bar ``label [####  ] done/total time-left note`` over ``total`` items; yields its :class:`Advance`.

    Args:
        label: What is counted (``"embedding chunks"``).
        total: Items in all.
        enabled: False: a no-op bar.
        done: Items already done (a resumed run starts there).
        transient: Remove the bar when finished.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, disable=not enabled, transient=transient) as bar:
        task = bar.add_task("", total=total, completed=done, note="")

        def advance(n: int = 1, note: str | None = None) -> None:
            fields: dict[str, Any] = {} if note is None else {"note": note}
            bar.update(task, advance=n, **fields)

        yield advance
