"""A transient progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


@contextmanager
def progress_callback(
    label: str, enabled: bool
) -> Iterator[Callable[[int, int | None], None] | None]:
    """Yield ``on_progress(rows_done, total_rows)`` for the engine, or None when disabled."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(rows_done: int, total_rows: int | None) -> None:
            progress.update(task, completed=rows_done, total=total_rows)

        yield update
