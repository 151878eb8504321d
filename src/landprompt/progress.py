"""One rich progress bar for the long loops of every stage (counts, time left and a note)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Advance:
    """What a :func:`progress_bar` yields: call it per item, or pass ``(done, total)`` to :meth:`to`."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self._bar, self._task = bar, task

    def __call__(self, n: int = 1, note: str | None = None) -> None:
        """Move the bar on by ``n`` items and, when given, replace its note (a rate, a loss, a status)."""
        fields: dict[str, Any] = {} if note is None else {"note": note}
        self._bar.update(self._task, advance=n, **fields)

    def to(self, done: int, total: int | None = None) -> None:
        """Set the count to ``done`` of ``total``: the ``progress(done, total)`` callback of chunk loops."""
        self._bar.update(self._task, completed=done, total=total)


@contextmanager
def progress_bar(
    label: str,
    total: int | None = None,
    enabled: bool = True,
    *,
    done: int = 0,
    transient: bool = False,
    unit: str = "",
    console: Console | None = None,
) -> Iterator[Advance]:
    """A bar ``label [###  ] done/total unit time-left note``; yields its :class:`Advance`.

    Args:
        label: What is counted (``"embedding chunks"``).
        total: Items in all; None until the loop says (:meth:`Advance.to`).
        enabled: False: a no-op bar.
        done: Items already done (a resumed run starts there).
        transient: Remove the bar when finished; off a terminal such a bar shows nothing at all (not even
            the blank line a removed bar leaves).
        unit: What an item is (``"pixels"``), shown after the counts.
        console: Where the bar goes (rich's default console, stdout, unless given).
    """
    from rich import get_console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        *((TextColumn(unit),) if unit else ()),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    console = console or get_console()
    shown = enabled and (console.is_terminal or not transient)
    with Progress(*columns, console=console, transient=transient, disable=not shown) as bar:
        yield Advance(bar, bar.add_task("", total=total, completed=done, note=""))
