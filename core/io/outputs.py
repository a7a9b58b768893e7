"""The output files of one run, all or nothing.

:class:`PlannedOutputs` checks every output path against the inputs, the standard output and
each other before any work starts (through symlinks and hard links), then hands out a
temporary file beside each target (``.<name>.<random>.partial``, created with the user's umask,
or with the mode of the file it will replace) and renames them all into place at the end with
:meth:`~PlannedOutputs.commit`; leaving the ``with`` block without committing removes them.
A character device or FIFO (``/dev/null``, a named pipe) is written through, never replaced.
An output may be a directory (``directories``): a new temporary directory beside it, renamed
onto it at the end, which must then be missing or empty.

Temporaries (files and directories) left by a killed run are removed by the next run that writes
the same target. A temporary is stale when it is named as ours for that target, is a real file
or directory (never a symlink, nor followed through one), was last modified before this run
began, and is not locked: a run holds an ``flock`` on each of its temporaries while it lives,
which the kernel releases when the run dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import stat
import string
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from gaussnll.core.errors import OutputError, UsageError
from gaussnll.core.io.filesystems import is_uri, local_path
from gaussnll.core.io.sources import STDIN
from gaussnll.core.io.writers import writing

T = TypeVar("T")

_RANDOM_CHARACTERS = string.ascii_lowercase + string.digits + "_"
_RANDOM_LENGTH = 8


def partial_name(target_name: str) -> re.Pattern[str]:
    """The names of temporary files for a target called ``target_name``, and nothing else."""
    return re.compile(
        rf"\.{re.escape(target_name)}\.[{re.escape(_RANDOM_CHARACTERS)}]{{{_RANDOM_LENGTH}}}"
        r"\.partial"
    )


@dataclass
class _Output:
    """One planned output: ``path`` as given, ``target`` the file it resolves to."""

    path: str
    target: str
    special: bool
    directory: bool = False
    temporary: str | None = None
    handle: int | None = None  # holds a lock on the temporary, so no other run removes it

    @property
    def sink(self) -> str:
        """Where to write: the temporary file, or a special file itself."""
        if self.special:
            return self.target
        if self.temporary is None:
            raise RuntimeError(f"{self.path}: write outputs inside the PlannedOutputs block")
        return self.temporary


class PlannedOutputs:
    """The outputs of one run, by label (``{"--per-row": "rows.csv"}``; a None path is no output).

    The constructor checks the paths and raises :class:`UsageError` naming both sides of a
    clash: an output that is one of ``inputs`` (``-`` is standard input), is the standard output
    (when ``stdout`` carries a report and is a regular file), or is another output; or one that
    is a directory, unless its label is among ``directories`` (then it must be a new or empty
    directory). Entering the ``with`` block creates the temporary files and directories.
    """

    def __init__(
        self,
        paths: Mapping[str, str | None],
        inputs: Iterable[str],
        *,
        stdout: bool = False,
        directories: Collection[str] = (),
    ) -> None:
        self._started = time.time()
        self._outputs: dict[str, _Output] = {}
        taken = [(f"the input file {path!r}", _input_identity(path)) for path in inputs]
        if stdout:
            taken.append(("the standard output, which carries the report", _descriptor_identity(1)))
        for label, path in paths.items():
            if path is None:
                continue
            if is_uri(path):
                raise UsageError(f"{label} {path!r} is a URI; outputs are local files: name a path")
            output = (
                _planned_directory(label, path) if label in directories else _planned(label, path)
            )
            identity = _identity(path)
            for name, other in taken:
                if other is not None and other == identity:
                    raise UsageError(f"{label} {path!r} is {name}; choose another path")
            taken.append((f"the same file as {label} {path!r}", identity))
            self._outputs[label] = output

    def __enter__(self) -> PlannedOutputs:
        try:
            for output in self._outputs.values():
                if output.special:
                    continue
                _remove_stale(output.target, self._started)
                create = _create_temporary_directory if output.directory else _create_temporary
                output.temporary, output.handle = create(output)
        except BaseException:
            self.discard()
            raise
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.discard()

    def __contains__(self, label: str) -> bool:
        return label in self._outputs

    def sink(self, label: str) -> str:
        """The path to write output ``label`` to until :meth:`commit`."""
        return self._outputs[label].sink

    def write_text(self, label: str, text: str) -> None:
        """Write ``text`` (UTF-8) as output ``label``."""
        output = self._outputs[label]
        with writing(output.path), open(output.sink, "w", encoding="utf-8") as file:
            file.write(text)

    def commit(self) -> None:
        """Rename every temporary file onto its target, after everything was written."""
        for output in self._outputs.values():
            if output.temporary is not None:
                with writing(output.path):
                    os.replace(output.temporary, output.target)
                output.temporary = None
        self.discard()

    def discard(self) -> None:
        """Remove the temporary files not committed (idempotent)."""
        for output in self._outputs.values():
            if output.temporary is not None and output.directory:
                shutil.rmtree(output.temporary, ignore_errors=True)
            elif output.temporary is not None:
                with suppress(OSError):
                    os.unlink(output.temporary)
            output.temporary = None
            if output.handle is not None:
                os.close(output.handle)
                output.handle = None


def _planned(label: str, path: str) -> _Output:
    """Where output ``label`` goes: a regular file (existing or not, through symlinks) is
    replaced, a character device or FIFO written through at ``path`` itself (``/dev/stdout`` on
    a pipe resolves to no real path); anything else cannot take output."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return _Output(path, os.path.realpath(path), special=False)
    except OSError as error:
        raise OutputError(f"cannot create {path}: {error.strerror or error}") from error
    if stat.S_ISDIR(mode):
        raise UsageError(f"{label} {path!r} is a directory; name a file")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return _Output(path, path, special=True)
    if not stat.S_ISREG(mode):
        raise UsageError(f"{label} {path!r} is not a file, a character device or a FIFO")
    return _Output(path, os.path.realpath(path), special=False)


def _planned_directory(label: str, path: str) -> _Output:
    """Where directory output ``label`` goes: a new directory, or an empty one it replaces."""
    if os.path.lexists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise UsageError(f"{label} {path!r} exists: give a new or empty directory")
    return _Output(path, os.path.realpath(path), special=False, directory=True)


def _create_temporary_directory(output: _Output) -> tuple[str, int]:
    """A new, locked directory beside the target, mode 0777 less the umask."""
    temporary, _ = _claimed(output, lambda path: os.mkdir(path, 0o777))
    try:
        return temporary, _locked(temporary, os.O_DIRECTORY)
    except BaseException as error:  # a signal too: the caller does not know this directory yet
        os.rmdir(temporary)
        if isinstance(error, OSError):
            raise _not_created(output, error) from error
        raise


def _claimed(output: _Output, create: Callable[[str], T]) -> tuple[str, T]:
    """A new name beside the target, ``.<name>.<random>.partial``, and what ``create`` made of
    it (``create`` raises FileExistsError for a name taken, and another is drawn)."""
    directory, name = os.path.split(output.target)
    while True:
        suffix = "".join(secrets.choice(_RANDOM_CHARACTERS) for _ in range(_RANDOM_LENGTH))
        temporary = os.path.join(directory, f".{name}.{suffix}.partial")
        try:
            return temporary, create(temporary)
        except FileExistsError:
            continue
        except OSError as error:
            raise _not_created(output, error) from error


def _not_created(output: _Output, error: OSError) -> OutputError:
    """The error of ``output``'s temporary that could not be made."""
    return OutputError(f"cannot create {output.path}: {error.strerror or error}")


def _locked(path: str, flags: int = 0) -> int:
    """``path`` opened for reading (not through a symlink) and locked, so no other run takes it
    for a killed run's leftover; the lock lasts until the descriptor is closed."""
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(handle)
        raise
    return handle


def _input_identity(path: str) -> tuple[object, ...] | None:
    """An input's identity; ``-`` is the file on standard input, if it is one; a URI is its
    local file (``file://``), if it names one."""
    if path == STDIN:
        return _descriptor_identity(0)
    local = local_path(path)
    return None if local is None else _identity(local)


def _identity(path: str) -> tuple[object, ...]:
    """What makes two paths the same file: device and inode when it exists (through symlinks
    and hard links), else the resolved path."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", status.st_dev, status.st_ino)


def _descriptor_identity(descriptor: int) -> tuple[object, ...] | None:
    """The file behind an open descriptor when it is a regular file (a pipe or terminal cannot
    be clobbered by renaming a file onto it)."""
    try:
        status = os.fstat(descriptor)
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return ("inode", status.st_dev, status.st_ino)


def _create_temporary(output: _Output) -> tuple[str, int]:
    """A new, locked, empty file beside the target: mode 0666 less the umask, or the mode of
    the file it replaces."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    temporary, handle = _claimed(output, lambda path: os.open(path, flags, 0o666))
    try:
        with suppress(FileNotFoundError):
            os.fchmod(handle, stat.S_IMODE(os.stat(output.target).st_mode))
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException as error:  # a signal too: the caller does not know this file yet
        os.close(handle)
        os.unlink(temporary)
        if isinstance(error, OSError):
            raise _not_created(output, error) from error
        raise
    return temporary, handle


def _remove_stale(target: str, started: float) -> None:
    """Remove temporaries of ``target`` that a killed run left: named as ours, a real file or
    directory older than this run, and not locked by a run still going (see the module
    docstring). A directory's tree is removed without following a symlink in it."""
    directory, name = os.path.split(target)
    pattern = partial_name(name)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return  # creating the temporary reports why the directory cannot take output
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with suppress(OSError):
            is_directory = entry.is_dir(follow_symlinks=False)
            if not (is_directory or entry.is_file(follow_symlinks=False)):
                continue
            if entry.stat(follow_symlinks=False).st_mtime >= started:
                continue
            handle = _locked(entry.path, os.O_DIRECTORY if is_directory else 0)
            try:
                if is_directory:
                    shutil.rmtree(entry.path)  # refuses a symlink; never follows one inside
                else:
                    os.unlink(entry.path)
            finally:
                os.close(handle)
