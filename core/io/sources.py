"""Resolve what the user named (a file, a directory, a glob or ``-``; local, or a URI such as
``s3://bucket/prefix/``) into files of one format."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pyarrow.fs import FileType

from gaussnll.core.errors import InputError
from gaussnll.core.io.filesystems import (
    file_info,
    files_below,
    glob_files,
    has_wildcards,
    is_uri,
    name_part,
)

STDIN = "-"


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    IPC = "ipc"


_SUFFIXES = {
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
    ".csv": FileFormat.CSV,
    ".arrow": FileFormat.IPC,
    ".feather": FileFormat.IPC,
    ".ipc": FileFormat.IPC,
}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_NO_DATA_FILES = "the directory holds no .parquet, .csv or .arrow/.feather file"
_NO_MATCH = "the pattern matches no file"
_MISSING = "no such file or directory"
_NOT_A_FILE = "is not a regular file (a FIFO or a device); expected a file, or - for stdin"


@dataclass(frozen=True)
class Source:
    """One logical dataset: ``files`` read in order as if concatenated."""

    name: str
    format: FileFormat
    files: tuple[str, ...]

    @property
    def is_stdin(self) -> bool:
        return self.files == (STDIN,)


def format_of(path: str) -> FileFormat | None:
    """The format implied by a file name (``.csv.gz`` is CSV; a URI's path, not its query),
    or None if it names none."""
    suffixes = [s.lower() for s in Path(name_part(path)).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def _local_files(path: str) -> list[str]:
    """The files a local path names: a directory's data files, the file, or a glob's matches,
    in sorted order."""
    if os.path.isdir(path):
        files = sorted(f for f in _files_under(path) if format_of(f) is not None)
        if not files:
            raise InputError(_NO_DATA_FILES, path=path)
    elif os.path.isfile(path):  # an existing name is never a pattern: model[v2].parquet
        files = [path]
    elif os.path.exists(path):  # a FIFO or a device: reading it could wait forever
        raise InputError(_NOT_A_FILE, path=path)
    elif glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise InputError(_NO_MATCH, path=path)
    else:
        raise InputError(_MISSING, path=path)
    return files


def _uri_files(uri: str) -> list[str]:
    """As ``_local_files``, on the filesystem a URI names; a directory is a prefix of an
    object store too."""
    kind = file_info(uri).type
    if kind is FileType.Directory:
        files = [f for f in files_below(uri) if format_of(f) is not None]
        if not files:
            raise InputError(_NO_DATA_FILES, path=uri)
    elif kind is FileType.File:  # an existing name is never a pattern
        files = [uri]
    elif kind is FileType.Unknown:  # a FIFO or a device behind a file:// URI
        raise InputError(_NOT_A_FILE, path=uri)
    elif has_wildcards(uri):
        files = glob_files(uri)
        if not files:
            raise InputError(_NO_MATCH, path=uri)
    else:
        raise InputError(_MISSING, path=uri)
    return files


def _files_under(root: str) -> Iterator[str]:
    """Every file below ``root``, following symbolic links to directories; a directory
    reached again (a link loop, or two links to one place) is read once."""
    seen: set[tuple[int, int]] = set()
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:
            subdirectories.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        for name in names:
            file = os.path.join(directory, name)
            if os.path.isfile(file):
                yield file


def resolve_source(path: str) -> Source:
    """Find the data files behind ``path`` and check they share one known format."""
    if path == STDIN:
        return Source(name="<stdin>", format=FileFormat.CSV, files=(STDIN,))
    files = _uri_files(path) if is_uri(path) else _local_files(path)
    found = {format_of(f) for f in files}
    if None in found:
        unknown = next(f for f in files if format_of(f) is None)
        raise InputError(
            "unknown file type: expected .parquet, .csv (optionally .gz/.bz2/.zst) "
            "or .arrow/.feather",
            path=unknown,
        )
    formats = {fmt for fmt in found if fmt is not None}
    if len(formats) > 1:
        raise InputError(
            f"mixes file formats ({', '.join(sorted(f.value for f in formats))}); "
            "point at files of one format",
            path=path,
        )
    return Source(name=path, format=formats.pop(), files=tuple(files))
