"""Inputs named by URI: ``file://``, ``s3://``, ``gs://``, ``hdfs://`` (every scheme pyarrow's
``FileSystem.from_uri`` knows) through pyarrow, any other scheme through fsspec when it is
installed (``memory://``, ``az://``, ``http://``...; fsspec comes with Dask and is never
required). A plain path is none of this: it is opened as a local file, exactly as before.

Credentials and endpoints come as each filesystem takes them: its usual environment
(``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, fsspec's configuration) or the URI's query
(``s3://bucket/key?region=eu-west-1``). A filesystem is made once per URI and process, as
making one may ask the store where a bucket lives. A listed file is named by a URI like the one
given (scheme, authority, query), so a Dask worker can open it on its own.

A store that never answers gives up within ``--timeout`` (``timeouts``): each S3 request's
connect and stall timeouts are a third of it (three attempts), GCS retries for that long, and
the calls that first reach a store (opening, listing, asking what a name is) are abandoned
when it passes, whatever the filesystem.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import os
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from gaussnll.core.errors import InputError
from gaussnll.core.io.timeouts import answered, timeout_seconds

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_UNKNOWN_TO_PYARROW = "Unrecognized filesystem type"
_UNKNOWN_TO_FSSPEC = "Protocol not known"
_UNPARSED = "Cannot parse URI"
_PATH_SAFE = "/:@!$&'()+,;=~"  # characters a URI's path may hold as they are (RFC 3986)
READ_ERRORS = (pa.ArrowException, OSError)
_FILE_URI = (
    "a file:// URI takes an absolute path, file:///home/me/preds.parquet (three slashes: "
    "what follows file:// is a host name); give a relative path without file://"
)
T = TypeVar("T")


def is_uri(path: str) -> bool:
    """Whether ``path`` names its filesystem by a scheme (``s3://bucket/key``)."""
    return _SCHEME.match(path) is not None


def name_part(path: str) -> str:
    """What names the file in ``path``: a URI's path, decoded, without its query."""
    return unquote(urlsplit(path).path) if is_uri(path) else path


def locate(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem behind ``uri`` and the path it names there: pyarrow's, else fsspec's
    (wrapped as a pyarrow filesystem) for a scheme pyarrow does not know or was built without."""
    return _located(uri, timeout_seconds())


@functools.lru_cache(maxsize=64)
def _located(uri: str, seconds: float) -> tuple[pafs.FileSystem, str]:
    try:
        filesystem, path = _first_answer(uri, lambda: pafs.FileSystem.from_uri(uri))
        return _bounded(filesystem, seconds), path
    except pa.ArrowNotImplementedError:
        pass
    except pa.ArrowInvalid as error:
        if uri.startswith("file://") and not uri.startswith("file:///"):  # a host, or nothing
            raise InputError(_FILE_URI, path=uri) from error
        if _known_to_pyarrow(uri, error):
            hint = "; write a space as %20, [ as %5B" if _UNPARSED in str(error) else ""
            raise InputError(first_line(error) + hint, path=uri) from error
    except READ_ERRORS as error:  # e.g. hdfs:// without a Java runtime
        raise InputError(first_line(error), path=uri) from error
    return _through_fsspec(uri)


def _bounded(filesystem: pafs.FileSystem, seconds: float) -> pafs.FileSystem:
    """``filesystem`` with its requests bounded by ``seconds``, where pyarrow lets a caller set
    it (S3, GCS: not from the URI, so the filesystem is made again with its own arguments)."""
    s3, gcs = getattr(pafs, "S3FileSystem", None), getattr(pafs, "GcsFileSystem", None)
    if s3 is not None and isinstance(filesystem, s3):
        rebuild, (arguments,) = filesystem.__reduce__()
        arguments.update(connect_timeout=seconds / 3, request_timeout=seconds / 3)
        arguments["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=3)
    elif gcs is not None and isinstance(filesystem, gcs):
        rebuild, (arguments,) = filesystem.__reduce__()
        arguments["retry_time_limit"] = timedelta(seconds=seconds)
    else:
        return filesystem
    return rebuild(arguments)


def _first_answer(uri: str, call: Callable[[], T]) -> T:
    """``call()``, a request to the filesystem of ``uri``, given up (one line) when it has not
    answered within ``--timeout``."""
    try:
        return answered(call)
    except TimeoutError as error:
        message = f"{error}; expected its filesystem to answer (a slow one: raise --timeout)"
        raise InputError(message, path=uri) from None


def _known_to_pyarrow(uri: str, error: pa.ArrowInvalid) -> bool:
    """Whether pyarrow knows the scheme of ``uri``, which it refused with ``error``. One it
    cannot parse (a space, a bracket: fsspec's URIs may hold them) is asked again as its
    scheme alone."""
    if _UNKNOWN_TO_PYARROW in str(error):
        return False
    if _UNPARSED not in str(error):
        return True
    try:
        pafs.FileSystem.from_uri(uri.split("://", 1)[0] + ":///")
    except pa.ArrowNotImplementedError:
        return False
    except pa.ArrowInvalid as bare:
        return _UNKNOWN_TO_PYARROW not in str(bare)
    except READ_ERRORS:
        return True
    return True


def _through_fsspec(uri: str) -> tuple[pafs.FileSystem, str]:
    scheme = uri.split("://", 1)[0]
    unknown = f"unknown URI scheme {scheme!r}: neither pyarrow nor fsspec opens it"
    try:
        import fsspec.core
    except ImportError as error:
        raise InputError(f"{unknown} (fsspec is not installed)", path=uri) from error
    try:
        filesystem, path = fsspec.core.url_to_fs(uri)
    except ImportError as error:  # a scheme fsspec knows, whose package is missing
        message = f"the {scheme}:// filesystem needs a package: {first_line(error)}"
        raise InputError(message, path=uri) from error
    except ValueError as error:
        message = unknown if _UNKNOWN_TO_FSSPEC in str(error) else first_line(error)
        raise InputError(message, path=uri) from error
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def filesystem_and_path(path: str) -> tuple[pafs.FileSystem | None, str]:
    """A URI's filesystem and path there; a local path with no filesystem, for pyarrow to open
    as it always has."""
    return locate(path) if is_uri(path) else (None, path)


def open_input_file(path: str) -> pa.NativeFile:
    """``path`` for random access: a local file by ordinary reads (never a memory map, which a
    file truncated while it is read turns into SIGBUS), a URI through its filesystem."""
    if not is_uri(path):
        return pa.OSFile(path)
    filesystem, inner = locate(path)
    return _first_answer(path, lambda: filesystem.open_input_file(inner))


def open_input_stream(path: str, compression: str | None) -> pa.NativeFile:
    """``path`` read from start to end, decompressed with ``compression`` (None: as it is)."""
    if not is_uri(path):
        return pa.input_stream(path, compression=compression)
    filesystem, inner = locate(path)
    return _first_answer(path, lambda: filesystem.open_input_stream(inner, compression=compression))


def file_size(path: str) -> int | None:
    """The bytes of a regular file or an object; None for anything else (stdin, a pipe, a file
    that is not there)."""
    if not is_uri(path):
        return os.path.getsize(path) if os.path.isfile(path) else None
    info = file_info(path)
    return info.size if info.type is pafs.FileType.File else None


def file_info(uri: str) -> pafs.FileInfo:
    """What ``uri`` names: a file, a directory (a prefix of an object store), or nothing."""
    filesystem, inner = locate(uri)
    try:
        return _first_answer(uri, lambda: filesystem.get_file_info(inner))
    except READ_ERRORS as error:
        raise InputError(first_line(error), path=uri) from error


def local_path(path: str) -> str | None:
    """The local file ``path`` names: itself, or a ``file://`` URI's path; None when another
    filesystem holds it (or its URI cannot be opened)."""
    if not is_uri(path):
        return path
    try:
        filesystem, inner = locate(path)
    except InputError:
        return None
    return inner if isinstance(filesystem, pafs.LocalFileSystem) else None


def files_below(uri: str) -> list[str]:
    """Every file below the directory (or prefix) ``uri`` names, as URIs, in sorted order."""
    filesystem, root = locate(uri)
    found = _listed(uri, filesystem, root, recursive=True)
    return _named(uri, root, sorted(info.path for info in found))


def has_wildcards(uri: str) -> bool:
    """Whether the path ``uri`` names holds a wildcard (``*``, ``?`` or ``[``, decoded)."""
    return glob.has_magic(locate(uri)[1])


def glob_files(uri: str) -> list[str]:
    """The files a URI with wildcards matches, as URIs, in sorted order. As ``glob``'s
    recursive patterns: ``*`` and ``?`` stay within one name, ``**`` is any number of
    directories, and a wildcard does not match a name that starts with a dot."""
    filesystem, pattern = locate(uri)
    parts = pattern.split("/")
    fixed = next(k for k, part in enumerate(parts) if glob.has_magic(part))
    base = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else "")
    wanted = parts[fixed:]
    recursive = len(wanted) > 1 or "**" in wanted
    found = _listed(uri, filesystem, base, recursive=recursive)
    matched = [
        info.path
        for info in found
        if _matches(wanted, info.path[len(base) :].strip("/").split("/"))
    ]
    return _named(uri, pattern, sorted(matched))


def _listed(
    uri: str, filesystem: pafs.FileSystem, directory: str, *, recursive: bool
) -> list[pafs.FileInfo]:
    """The files in ``directory`` (none when it is not there)."""
    selector = pafs.FileSelector(directory, recursive=recursive, allow_not_found=True)
    try:
        infos = _first_answer(uri, lambda: filesystem.get_file_info(selector))
    except READ_ERRORS as error:
        raise InputError(first_line(error), path=uri) from error
    return [info for info in infos if info.type is pafs.FileType.File]


def _matches(pattern: Sequence[str], names: Sequence[str]) -> bool:
    """Whether the names of a relative path match the pattern's, name by name."""
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        if _matches(rest, names):
            return True
        return bool(names) and not names[0].startswith(".") and _matches(pattern, names[1:])
    if not names or not fnmatch.fnmatchcase(names[0], head):
        return False
    if names[0].startswith(".") and not head.startswith("."):
        return False
    return _matches(rest, names[1:])


def _named(uri: str, inner: str, paths: list[str]) -> list[str]:
    """Each of ``paths``, on the filesystem of ``uri`` (which names ``inner`` there), as a URI
    like ``uri``. A filesystem's path is the URI's path after a prefix of its own
    (``s3://bucket/key`` is ``bucket/key``, ``memory://d/f`` is ``/d/f``). pyarrow's URIs keep
    their authority and query, their paths percent-encoded; fsspec's are literal text after the
    scheme."""
    scheme, rest = uri.split("://", 1)
    literal = isinstance(locate(uri)[0], pafs.PyFileSystem)  # through fsspec
    parts = urlsplit(uri)
    head = f"{scheme}://" if literal else f"{scheme}://{parts.netloc}"
    named = rest if literal else unquote(parts.path)
    query = f"?{parts.query}" if parts.query and not literal else ""
    root, named = inner.rstrip("/"), named.rstrip("/")
    if not root.endswith(named):
        raise InputError(
            "its filesystem names files otherwise than the URI does: name each file", path=uri
        )
    prefix = len(root) - len(named)
    if literal:
        return [head + path[prefix:] for path in paths]
    return [head + quote("/" + path[prefix:].lstrip("/"), _PATH_SAFE) + query for path in paths]


def first_line(error: BaseException) -> str:
    """An error's message on one line: its first, whitespace collapsed."""
    lines = str(error).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(error).__name__
