"""CSV input: a regular file read in ranges parsed in parallel gives what one pyarrow read gives,
and a bad row is named by the same row and column as when the file is streamed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import report_numbers

from gaussnll.core import ColumnSpec, InputError, ScoreOptions, score
from gaussnll.core.io import csv_input
from gaussnll.core.io.csv_input import (
    ByteRange,
    CsvRead,
    csv_batches,
    csv_header,
    first_range_types,
)

COLUMNS = ("mean", "target", "var")
READ = CsvRead(columns=(*COLUMNS, "id"), numeric=COLUMNS, delimiter=",", chunk_size=1_000)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 256 bytes to 1 KB: a file of a few thousand rows spans hundreds of ranges."""
    monkeypatch.setattr(csv_input, "MIN_BLOCK_BYTES", 256)
    monkeypatch.setattr(csv_input, "MAX_BLOCK_BYTES", 1024)


def csv_text(rows: int, newline: str = "\n", blank_every: int = 0, seed: int = 0) -> str:
    """A header and ``rows`` rows of mean, target, var and a quoted string id."""
    generator = np.random.default_rng(seed)
    values = generator.normal(size=(rows, 3)).tolist()
    lines = ['mean,target,var,"id"']
    for i, (mean, target, var) in enumerate(values):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(f'{mean!r},{target!r},{abs(var)!r},"row {i}"')
    return newline.join(lines) + newline


def read_whole(path: Path) -> pa.Table:
    """The reference: pyarrow parsing the whole file at once."""
    return pacsv.read_csv(path, convert_options=READ.convert_options())


@pytest.mark.parametrize(
    ("text", "encoding_prefix"),
    [
        (csv_text(3_000), b""),
        (csv_text(3_000, newline="\r\n"), b""),
        (csv_text(3_000, blank_every=7), b""),
        (csv_text(3_000).rstrip("\n"), b""),  # no line end after the last row
        (csv_text(3_000), b"\xef\xbb\xbf"),  # a UTF-8 byte order mark
    ],
    ids=["lf", "crlf", "blank-lines", "no-final-newline", "bom"],
)
def test_ranges_read_what_one_read_gives(tmp_path, small_blocks, text, encoding_prefix):
    path = tmp_path / "preds.csv"
    path.write_bytes(encoding_prefix + text.encode())
    batches = list(csv_batches(str(path), READ))
    assert len(batches) > 50  # many ranges, so their boundaries are exercised
    assert pa.Table.from_batches(batches).equals(read_whole(path))


@pytest.mark.parametrize(
    "text",
    [
        csv_text(400),
        csv_text(400, newline="\r\n"),
        csv_text(400, newline="\r"),
        csv_text(400, blank_every=7),
        csv_text(400).rstrip("\n"),
        "\ufeff" + csv_text(400),
    ],
    ids=["lf", "crlf", "cr", "blank-lines", "no-final-newline", "bom"],
)
@pytest.mark.parametrize("part_bytes", [23, 61, 1_000, 10**9])
def test_byte_range_parts_hold_each_row_once(tmp_path, small_blocks, text, part_bytes):
    """Parts cut anywhere (mid-line, between CR and LF, inside the header) read, in order, what
    the file read whole gives: every line in the part where it starts."""
    path = tmp_path / "preds.csv"
    path.write_bytes(text.encode())
    size = path.stat().st_size
    types = first_range_types(str(path), READ, blocks=2)
    header = csv_header(str(path), READ.delimiter)
    parts = [ByteRange(start, start + part_bytes, types) for start in range(0, size, part_bytes)]
    batches = [batch for part in parts for batch in csv_batches(str(path), READ, header, part=part)]
    assert pa.Table.from_batches(batches).equals(read_whole(path))


def test_a_byte_range_holds_the_lines_that_start_in_it(tmp_path):
    path = tmp_path / "preds.csv"
    path.write_text(csv_text(3))
    text = path.read_bytes()
    second = text.index(b"\n", text.index(b"\n") + 1) + 1  # where the second row starts
    read = [
        pa.Table.from_batches(list(csv_batches(str(path), READ, part=ByteRange(*ends)))).num_rows
        for ends in ((0, second), (second, len(text)), (0, second + 1), (second + 1, len(text)))
    ]
    assert read == [1, 2, 2, 1]


def test_batches_hold_about_half_a_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_input, "MIN_BLOCK_BYTES", 1024)
    path = tmp_path / "preds.csv"
    path.write_text(csv_text(20_000))
    rows = [batch.num_rows for batch in csv_batches(str(path), READ)]
    assert sum(rows) == 20_000
    assert max(rows) <= 1.25 * READ.chunk_size / 2  # judged from the first lines' length
    assert np.median(rows) >= 0.75 * READ.chunk_size / 2


def test_block_bytes_follow_the_line_length_within_bounds():
    head = b"0.123456789,0.5,1.0\n" * 1000  # 20 bytes a line
    assert csv_input._block_bytes(head, 200_000) == 2_000_000
    assert csv_input._block_bytes(head, 10) == csv_input.MIN_BLOCK_BYTES
    assert csv_input._block_bytes(head, 10**9) == csv_input.MAX_BLOCK_BYTES
    assert csv_input._block_bytes(b"x" * 100, 10) == csv_input.MIN_BLOCK_BYTES  # no line end


def error_of(path: Path, data: bytes) -> str:
    """The error scoring ``data`` written to ``path`` gives, without the path."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    options = ScoreOptions(device="cpu", chunk_size=100, columns=ColumnSpec(id="id"))
    with pytest.raises(InputError) as caught:
        score(str(path), options)
    return str(caught.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (b"1.0,oops,1.0,x", "column 'target': row {row}: expected a number, got 'oops'"),
        (b"1.0,2.0", "row {row}: expected 4 fields, got 2: '1.0,2.0'"),
    ],
    ids=["not-a-number", "ragged"],
)
@pytest.mark.parametrize("bad_row", [1, 2_345])
def test_bad_row_is_named_as_when_streamed(tmp_path, small_blocks, broken, expected, bad_row):
    lines = csv_text(3_000, blank_every=5).encode().splitlines()
    data_lines = [i for i, line in enumerate(lines) if i and line]
    lines[data_lines[bad_row - 1]] = broken
    data = b"\n".join(lines) + b"\n"
    ranged = error_of(tmp_path / "bad.csv", data)
    streamed = error_of(tmp_path / "bad.csv.gz", data)  # compressed files are streamed
    assert ranged == streamed == expected.format(row=bad_row)


def test_later_ranges_keep_the_first_ranges_column_types(tmp_path, small_blocks):
    """Types are inferred from the first range, as the streamed read infers them from its
    first block: later ranges convert to them, and a value that does not fit is named."""
    lines = [b"mean,target,var,id"] + [b"0.5,1.0,2.0,%d" % i for i in range(3_000)]
    lines[2_500] = b"0.5,1.0,2.0,x"
    data = b"\n".join(lines) + b"\n"
    assert (
        error_of(tmp_path / "int.csv", data) == "column 'id': row 2500: expected a number, got 'x'"
    )
    lines = csv_text(3_000).encode().splitlines()
    lines[2_700] = b'0.5,1.0,2.0,"\xff"'
    message = error_of(tmp_path / "text.csv", b"\n".join(lines) + b"\n")
    assert message == "column 'id': row 2700: CSV conversion error to string: invalid UTF8 data"
    lines = [b"mean,target,var,id"] + [b"0.5,1.0,2.0," for _ in range(3_000)]
    lines[2_900] = b"0.5,1.0,2.0,abc"
    message = error_of(tmp_path / "empty.csv", b"\n".join(lines) + b"\n")
    assert (
        message
        == "column 'id': row 2900: expected an empty cell, as in the column's first rows, got 'abc'"
    )


def test_a_row_longer_than_a_block_is_a_one_line_error(tmp_path, small_blocks):
    lines = csv_text(3_000).splitlines()
    lines[1_500] = f'0.5,1.0,2.0,"{"x" * 5_000}"'
    message = error_of(tmp_path / "long.csv", ("\n".join(lines) + "\n").encode())
    assert message.startswith("holds a row longer than ")


def test_score_of_ranges_equals_score_of_the_stream(tmp_path, small_blocks):
    text = csv_text(5_000, seed=3)
    ranged = tmp_path / "preds.csv"
    ranged.write_text(text)
    streamed = tmp_path / "preds.csv.gz"
    streamed.write_bytes(gzip.compress(text.encode()))
    reports = [score(str(path), ScoreOptions(device="cpu")) for path in (ranged, streamed)]
    assert reports[0].rows == 5_000
    assert report_numbers(reports[0]) == pytest.approx(report_numbers(reports[1]), rel=1e-12)
