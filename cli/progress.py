"""A transient progress bar on stderr, shown only when stderr is a terminal: rows of the total
when the input records its row count (Parquet, Arrow), else bytes read of the total (CSV
files), else rows read so far (stdin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from gaussnll.core import ProgressCallback


class AmountColumn(ProgressColumn):
    """``1,000/2,500 rows``, ``12.3/45.6 MB`` or ``1,000 rows`` (total unknown)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return self.bytes.render(task)
        rows, total = f"{int(task.completed):,}", task.fields.get("rows_total")
        return Text(f"{rows} rows" if total is None else f"{rows}/{total:,} rows")


def progress_update(task_update: Callable[..., None]) -> ProgressCallback:
    """The engine's ``on_progress``, told to a progress task: by rows when their total is
    known, else by bytes when theirs is, else rows so far."""

    def update(
        rows_done: int, total_rows: int | None, bytes_read: int | None, bytes_total: int | None
    ) -> None:
        if total_rows is None and bytes_read is not None and bytes_total is not None:
            task_update(completed=bytes_read, total=bytes_total, unit="bytes")
        else:
            task_update(completed=rows_done, total=total_rows, unit="rows", rows_total=total_rows)

    return update


@contextmanager
def progress_callback(label: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """Yield ``on_progress`` for the engine, or None when disabled."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        AmountColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None, unit="rows")
        yield progress_update(lambda **values: progress.update(task, **values))
