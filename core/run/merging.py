"""State files and merging states: shards scored anywhere (a job array, Spark, Dask) add up to
the report of the whole input. See ``state_document`` for the format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gaussnll.core.errors import InputError, UsageError
from gaussnll.core.io.writers import writing
from gaussnll.core.run.scorer import Scorer
from gaussnll.core.run.state_document import check_document, difference, from_json, to_json


def save_state(document: dict[str, Any], path: str) -> None:
    """Write a state document (``Scorer.state_dict()``) to ``path`` as JSON (the CLI gives a
    temporary of its ``PlannedOutputs``, put in place with the run's other outputs)."""
    text = to_json(document)
    with writing(path), open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_state(path: str) -> dict[str, Any]:
    """The state document in the file ``path`` (written by ``save_state``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise InputError(f"cannot read the state: {error.strerror or error}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not a gaussnll state file: not UTF-8 text", path=path) from None
    return from_json(text, path)


def merge_states(
    documents: Sequence[dict[str, Any]],
    labels: Sequence[str] | None = None,
    *,
    device: str = "cpu",
) -> Scorer:
    """One scorer holding the sum of the states ``documents`` (``labels`` name them in errors,
    e.g. their files). States made with different options, or of different numbers of
    outputs, refuse to merge with a UsageError naming the first difference."""
    if not documents:
        raise UsageError("give at least one state to merge")
    names = list(labels or [f"state {k + 1}" for k in range(len(documents))])
    for document, name in zip(documents, names, strict=True):
        check_document(document, name)
    first = documents[0]
    outputs = {d["outputs"] for d in documents} - {None}
    for document, name in zip(documents[1:], names[1:], strict=True):
        found = difference(first["options"], document["options"])
        if found is not None:
            raise UsageError(
                f"{names[0]} and {name} were scored with different options: {found}; "
                "score every shard with the same options"
            )
    scored = {name: d for d, name in zip(documents, names, strict=True) if d["outputs"]}
    weighted = [name for name, document in scored.items() if document.get("weighted")]
    if weighted and len(weighted) < len(scored):
        unweighted = next(name for name in scored if name not in weighted)
        raise UsageError(
            f"{weighted[0]} holds weighted rows and {unweighted} does not; score every shard "
            "with the same weights"
        )
    if len(outputs) > 1:
        raise UsageError(
            f"the states hold different numbers of outputs ({', '.join(map(str, sorted(outputs)))})"
        )
    _check_key_kinds(documents, names)
    merged = Scorer.from_state(first, device=device, path=names[0])
    for document, name in zip(documents[1:], names[1:], strict=True):
        merged.merge(Scorer.from_state(document, device=device, path=name))
    return merged


def _check_key_kinds(documents: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """A by column must hold one kind of key (text, numbers or booleans; missing keys aside) in
    every state, as in every file of one run: keys of different kinds cannot be ordered."""
    seen: dict[int, tuple[str, str]] = {}  # by column → the first kind seen, and where
    for document, name in zip(documents, names, strict=True):
        for key in document.get("groups") or ():
            for column, value in enumerate(key):
                kind = _key_kind(value)
                if kind is None:
                    continue
                first_kind, first_name = seen.setdefault(column, (kind, name))
                if kind != first_kind:
                    by = document["options"]["columns"]["by"][column]
                    raise UsageError(
                        f"{name}: the by column {by!r} holds {kind} where {first_name} holds "
                        f"{first_kind}; a by column must hold one type in every file and state"
                    )


def _key_kind(value: Any) -> str | None:
    """The kind of a group key value as a state keeps it (None: a missing value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "booleans"
    return "text" if isinstance(value, str) else "numbers"
