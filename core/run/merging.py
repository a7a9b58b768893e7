"""State files and merging states: shards scored anywhere (a job array, Spark, Dask) add up to
the report of the whole input. See ``state_document`` for the document, ``state_arrow`` for its
Arrow IPC form."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pyarrow.fs import FileType

from gaussnll.core.errors import InputError, UsageError
from gaussnll.core.io.filesystems import file_info, is_uri, open_input_file
from gaussnll.core.io.writers import writing
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_arrow import is_arrow, read_arrow, write_arrow
from gaussnll.core.run.state_document import (
    check_document,
    difference,
    from_json,
    identity_key,
    to_json,
)
from gaussnll.core.untrusted import check_regular_file, read_at_most

JSON, ARROW = "json", "arrow"
ARROW_SUFFIXES = (".arrow", ".ipc", ".feather")
MAX_STATE_BYTES = 4 * 2**30  # a JSON state of 10^5 groups takes about 0.4 GB, Arrow 35 MB


def state_format(name: str | os.PathLike[str]) -> str:
    """How a state file called ``name`` is written: Arrow IPC for ``.arrow``, ``.ipc`` and
    ``.feather``, else JSON."""
    return ARROW if os.fspath(name).lower().endswith(ARROW_SUFFIXES) else JSON


def save_state(document: dict[str, Any], path: str, file_format: str | None = None) -> None:
    """Write a state document (``Scorer.state_dict()``) to ``path``, as ``file_format``
    (``json`` or ``arrow``; None: as ``state_format`` of ``path``). The CLI gives a temporary
    of its ``PlannedOutputs``, put in place with the run's other outputs, and the format of the
    name the user gave."""
    if (file_format or state_format(path)) == ARROW:
        write_arrow(document, path)
        return
    text = to_json(document)
    with writing(path), open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_state(path: str) -> dict[str, Any]:
    """The state document in the file ``path`` (written by ``save_state``; a local path or a
    URI, as inputs are named), JSON or Arrow IPC told apart by their first bytes, whatever the
    file's name. The file is untrusted: it must be a regular file of at most
    ``MAX_STATE_BYTES``, and what it holds is checked before anything is made of it."""
    try:
        if is_uri(path):
            if file_info(path).type is not FileType.File:
                raise InputError("cannot read the state: it is not a file", path=path)
        else:
            check_regular_file(path, "the state")
        with open_input_file(path) as handle:
            data = read_at_most(handle, MAX_STATE_BYTES, path, "the state")
    except OSError as error:
        reason = error.strerror or str(error).splitlines()[0]
        raise InputError(f"cannot read the state: {reason}", path=path) from None
    if is_arrow(data[:8]):
        return read_arrow(data, path)
    return from_json(data, path)


class StateMerger:
    """Merges states one at a time, in order: each is checked against the first (its options)
    and the others (their outputs), turned into a scorer and added, so a merge holds the sum so
    far and one state, never every state at once.

    ``max_groups``: the most groups of the merged state; None: the largest the states record
    (``Scorer.state_dict``'s ``max_groups``; a state without one, scored under the memory
    budget or older, lets the budget decide), checked once
    every state is in, as the limit that applies is known only then. The merged report's
    ``seconds`` count from the merger's making: the merge's wall time. A state given twice (of
    the same identity, ``state_document.identity_key``) is refused, as it would count its
    rows twice, unless ``allow_duplicates``.
    """

    def __init__(
        self, *, max_groups: int | None = None, device: str = "cpu", allow_duplicates: bool = False
    ) -> None:
        self._started = time.perf_counter()
        self._limit, self._device = max_groups, device
        self._seen: dict[tuple[str, int, str], str] | None = None if allow_duplicates else {}
        self._first: tuple[str, dict[str, Any]] | None = None  # label and options of the first
        self._outputs: int | None = None
        # the largest max_groups recorded (None: a state limited by the memory budget)
        self._recorded: int | None = 0
        self._merged: Scorer | None = None
        self._weighted: tuple[bool, str] | None = (
            None  # of the first state with rows, and its label
        )
        self._key_kinds: dict[int, tuple[str, str]] = {}  # by column → first kind seen, and where
        self._members: tuple[int, str] | None = None  # members or draws per row, and where

    def add(self, document: dict[str, Any], label: str) -> None:
        """Add the state ``document`` (its file called ``label`` in errors); a UsageError names
        the first option in which it differs from the first state, or its outputs."""
        check_document(document, label)
        self._check_duplicate(document, label)
        if self._first is None:
            self._first = (label, document["options"])
        found = difference(self._first[1], document["options"])
        if found is not None:
            raise options_differ(self._first[0], label, found)
        outputs = document["outputs"]
        if outputs is not None and self._outputs not in (None, outputs):
            raise outputs_differ(self._outputs, outputs)
        self._outputs = self._outputs if outputs is None else outputs
        if outputs is not None:
            self._check_weighting(bool(document.get("weighted")), label)
            self._check_members(document.get("members"), label)
        _check_key_kinds(document, label, self._key_kinds)
        scorer = Scorer.from_state(document, device=self._device, path=label)
        limit = scorer.options.max_groups
        if self._recorded is not None:
            self._recorded = None if limit is None else max(self._recorded, limit)
        if self._merged is None:
            self._merged = scorer
            scorer.limit_groups(sys.maxsize if self._limit is None else self._limit)
        else:
            self._merged.merge(scorer)

    def state(self) -> dict[str, Any]:
        """The merged state document, recording the limit that applies (not checked: a part of
        a larger merge)."""
        document = self._scorer().state_dict()
        return {**document, "max_groups": self._applied_limit()}

    def result(self) -> Scorer:
        """The merged scorer, its groups checked against the limit (an OptionError naming
        ``max_groups`` when there are more)."""
        merged = self._scorer()
        merged.limit_groups(self._applied_limit())
        merged.started = self._started
        return merged

    def _check_duplicate(self, document: dict[str, Any], label: str) -> None:
        key = identity_key(document)
        if self._seen is None or key is None:
            return
        if key in self._seen:
            raise duplicated(self._seen[key], label, key)
        self._seen[key] = label

    def _check_weighting(self, weighted: bool, label: str) -> None:
        """Weighted and unweighted rows do not add up (a state without rows takes either)."""
        first = self._weighted = self._weighted or (weighted, label)
        if weighted != first[0]:
            with_weights, without = (first[1], label) if first[0] else (label, first[1])
            raise UsageError(
                f"{with_weights} holds weighted rows and {without} does not; score every shard "
                "with the same weights"
            )

    def _check_members(self, members: int | None, label: str) -> None:
        """An ensemble's members, or samples' draws, per row must be the same in every state
        with rows (their sums are shaped by them)."""
        if members is None:
            return
        first = self._members = self._members or (members, label)
        if members != first[0]:
            raise UsageError(
                f"{label} holds {members} members or draws per row and {first[1]} {first[0]}; "
                "only states of the same number merge"
            )

    def _applied_limit(self) -> int | None:
        return self._recorded if self._limit is None else self._limit

    def _scorer(self) -> Scorer:
        if self._merged is None:
            raise UsageError("give at least one state to merge")
        return self._merged


def _check_key_kinds(
    document: dict[str, Any], label: str, seen: dict[int, tuple[str, str]]
) -> None:
    """A by column must hold one kind of key (text, numbers or booleans; missing keys aside) in
    every state, as in every file of one run: keys of different kinds cannot be ordered.
    ``seen``: the first kind of each column so far, and where, updated."""
    for key in document.get("groups") or ():
        for column, value in enumerate(key):
            kind = _key_kind(value)
            if kind is None:
                continue
            first_kind, first_label = seen.setdefault(column, (kind, label))
            if kind != first_kind:
                by = document["options"]["columns"]["by"][column]
                raise UsageError(
                    f"{label}: the by column {by!r} holds {kind} where {first_label} holds "
                    f"{first_kind}; a by column must hold one type in every file and state"
                )


def _key_kind(value: Any) -> str | None:
    """The kind of a group key value as a state keeps it (None: a missing value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "booleans"
    return "text" if isinstance(value, str) else "numbers"


def options_differ(first: str, other: str, found: str) -> UsageError:
    """The error of states ``first`` and ``other`` of options that differ in ``found``."""
    return UsageError(
        f"{first} and {other} were scored with different options: {found}; "
        "score every shard with the same options"
    )


def duplicated(first: str, other: str, key: tuple[str, int, str]) -> UsageError:
    """The error of ``other``, a state of the same identity ``key`` as ``first``."""
    source, rows, _ = key
    return UsageError(
        f"{other} holds the same state as {first} ({rows:,} rows of {source}): merging both "
        "would count its rows twice; give each shard once, or allow duplicates "
        "(--allow-duplicates) to merge it again"
    )


def outputs_differ(first: int, other: int) -> UsageError:
    """The error of states of ``first`` and ``other`` outputs."""
    shown = ", ".join(map(str, sorted({first, other})))
    return UsageError(f"the states hold different numbers of outputs ({shown})")


def merge_states(
    documents: Iterable[dict[str, Any]],
    labels: Sequence[str] | None = None,
    *,
    device: str = "cpu",
    max_groups: int | None = None,
    allow_duplicates: bool = False,
) -> Scorer:
    """One scorer holding the sum of the states ``documents`` (``labels`` name them in errors,
    e.g. their files), as ``StateMerger`` merges them: states made with different options, or
    of different numbers of outputs, or a state given twice (unless ``allow_duplicates``),
    refuse to merge with a UsageError naming the first difference."""
    merger = StateMerger(max_groups=max_groups, device=device, allow_duplicates=allow_duplicates)
    for k, document in enumerate(documents):
        merger.add(document, labels[k] if labels else f"state {k + 1}")
    return merger.result()


def merge_state_files(
    paths: Sequence[str],
    *,
    max_groups: int | None = None,
    allow_duplicates: bool = False,
    on_progress: Callable[[int, int | None, int | None, int | None], None] | None = None,
) -> Scorer:
    """Merge the state files ``paths`` (``merge_states``), loading one at a time;
    ``on_progress(files_done, files, None, None)`` after each."""
    merger = StateMerger(max_groups=max_groups, allow_duplicates=allow_duplicates)
    for done, path in enumerate(paths, start=1):
        merger.add(load_state(path), path)
        if on_progress is not None:
            on_progress(done, len(paths), None, None)
    return merger.result()
