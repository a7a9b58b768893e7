"""Tables that never cut what they show: a ``Grid`` is drawn as a rich table when it fits the
console's width, and otherwise laid out vertically (one block per row, or plain lines), so a
name, a key or a number is always printed whole, in a pipe or CI log of 80 columns too.

Every cell is data shown literally (``literal``): control characters escaped, no rich markup
or emoji codes read from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rich.cells import cell_len
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from gaussnll.cli.literal import literal

_UNBOUNDED = 1 << 20
_GAP = 4  # columns between two grids side by side
_ALIGNED = 24  # longer values (a sentence) are not padded to align the numbers below them


@dataclass(frozen=True)
class Grid:
    """A table as data. ``keys``: the leading columns that name a row (left-aligned; every
    other column is right-aligned); ``sections``: indexes of rows that start a new section;
    ``styles``: a rich style per row index.
    ``optional``: columns left out first when the table is too wide (a label beside a name);
    ``row_blocks``: when still too wide, a block per row (a table of many columns) rather than
    one line per row (a table that already lists one number per row)."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    keys: int = 1
    show_header: bool = True
    sections: frozenset[int] = frozenset()
    styles: dict[int, str] = field(default_factory=dict)
    box: bool = True
    row_blocks: bool = True
    optional: tuple[int, ...] = ()

    def without_optional(self) -> Grid:
        """The grid without its optional columns."""
        kept = [i for i in range(len(self.headers)) if i not in self.optional]
        return replace(
            self,
            headers=[self.headers[i] for i in kept],
            rows=[[row[i] for i in kept] for row in self.rows],
            keys=sum(1 for i in kept if i < self.keys),
            optional=(),
        )


def table_of(grid: Grid) -> Table:
    """``grid`` as a rich table, cells never wrapped (a caller checks that it fits)."""
    table = Table(show_header=grid.show_header, box=Table().box if grid.box else None)
    for index, header in enumerate(grid.headers):
        justify: JustifyMethod = "left" if index < grid.keys else "right"
        table.add_column(Text(literal(header)), justify=justify, no_wrap=True)
    for index, row in enumerate(grid.rows):
        if index in grid.sections:
            table.add_section()
        cells = [Text(literal(cell)) for cell in row]
        table.add_row(*cells, style=grid.styles.get(index))
    return table


def width_of(console: Console, renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing in it wraps."""
    options = console.options.update(max_width=_UNBOUNDED)
    return Measurement.get(console, options, renderable).maximum


def blocks(console: Console, grid: Grid) -> list[RenderableType]:
    """The title line, then the table if it fits the console (without its optional columns if
    need be), else its rows one by one."""
    title = [Text(literal(grid.title), style="bold")] if grid.title else []
    for candidate in (grid, grid.without_optional()) if grid.optional else (grid,):
        table = table_of(candidate)
        if width_of(console, table) <= console.width:
            return [*title, table]
    return [*title, stacked(grid)]


def stacked(grid: Grid) -> Text:
    """``grid`` laid out vertically: a block per row (its key cells, then one line per other
    column: header and value), or one aligned line per row (its optional columns left out)."""
    if not grid.row_blocks:
        grid = grid.without_optional()
    rows = [[literal(cell) for cell in row] for row in grid.rows]
    if not grid.row_blocks:
        if grid.show_header:
            rows.insert(0, [literal(header) for header in grid.headers])
        widths = [max(cell_len(row[i]) for row in rows) for i in range(len(grid.headers))]
        lines = [
            "  ".join(
                _pad(cell, width, right=i >= grid.keys)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        return Text("\n".join(lines))
    headers = [literal(header) for header in grid.headers]
    keys = max(grid.keys, 1)  # a row is named by its first cell at least
    label_width = max(cell_len(header) for header in headers[keys:])
    lines = []
    for row in rows:
        named = row[:keys] if grid.keys else [f"{headers[0]} {row[0]}"]
        lines.append("  ".join(cell for cell in named if cell))
        value_width = max((cell_len(c) for c in row[keys:] if cell_len(c) <= _ALIGNED), default=0)
        lines += [
            f"  {_pad(header, label_width)}  {_pad(cell, value_width, right=True)}"
            for header, cell in zip(headers[keys:], row[keys:], strict=True)
            if cell
        ]
    return Text("\n".join(lines))


def _pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded to ``width`` terminal cells (a wide character takes two)."""
    fill = " " * max(0, width - cell_len(text))
    return fill + text if right else text + fill


def side_by_side(console: Console, left: Grid, right: Grid) -> list[RenderableType]:
    """Two grids beside each other when both fit as tables, else one after the other."""
    parts = [Group(*blocks(console, grid)) for grid in (left, right)]
    tables = [table_of(grid) for grid in (left, right)]
    if sum(width_of(console, table) for table in tables) + _GAP <= console.width:
        row = Table.grid(padding=(0, _GAP))
        row.add_row(*parts)
        return [row]
    return [*blocks(console, left), *blocks(console, right)]


def show(console: Console, renderables: Sequence[RenderableType]) -> None:
    """Print each renderable; text is never wrapped or cropped by rich (a terminal may fold a
    long line, which still holds every character)."""
    for renderable in renderables:
        console.print(renderable, soft_wrap=isinstance(renderable, Text))
