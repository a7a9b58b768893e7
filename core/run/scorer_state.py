"""A scorer's state: the ScoreState its options make, and the state as a portable document
(``run.state_document`` says its schema) and back: what ``Scorer.state_dict`` writes,
``Scorer.from_state`` reads, a state file holds and Dask tasks return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from gaussnll.core.errors import InputError
from gaussnll.core.io.grouping import GroupKeys
from gaussnll.core.options import ScoreOptions
from gaussnll.core.run.ensemble_members import MemberInput
from gaussnll.core.run.state_document import (
    STATE_SCHEMA,
    applied_recalibration,
    check_document,
    malformed,
    options_document,
    options_from_document,
    plain_keys,
)
from gaussnll.core.state import portable
from gaussnll.core.state.bootstrap import Bootstrap
from gaussnll.core.state.score_state import ScoreState

# Makes the state of so many outputs (on the scorer's device, or the one given).
NewState = Callable[[int, torch.device | None], ScoreState]


@dataclass(frozen=True)
class Shape:
    """What a document says of its scorer besides the options and sums: ``outputs`` (None: no
    row yet), ``members`` per row (None: not an ensemble), whether rows were ``weighted``."""

    outputs: int | None
    members: int | None
    weighted: bool


def new_state(
    options: ScoreOptions,
    outputs: int,
    device: torch.device,
    grouped: bool,
    members: MemberInput,
    weighted: bool,
) -> ScoreState:
    """The empty state of ``outputs`` outputs that ``options`` choose: its families, levels,
    bins, members (samples: their draws) and whether rows are grouped and weighted."""
    samples = options.samples
    return ScoreState(
        outputs,
        device,
        levels=options.levels if options.calibration else None,
        pit_bins=options.pit_bins,
        grouped=grouped,
        members=None if samples else members.weights,
        draws=members.count if samples else None,
        weighted=weighted,
        selection=options.selection,
        quantiles=options.quantiles,
        bootstrap=None
        if options.ci is None
        else Bootstrap(options.ci, options.ci_replicates, options.ci_seed),
    )


def state_document(
    options: ScoreOptions,
    state: ScoreState | None,
    shape: Shape,
    group_keys: GroupKeys | None,
    unseen_rows: int,
) -> dict[str, Any]:
    """The document of a scorer's state, in plain numbers."""
    recalibration = options.recalibration
    applied = None
    if recalibration is not None:
        applied = {"file": recalibration.path, "unseen_rows": unseen_rows}
    return {
        "schema": STATE_SCHEMA,
        "options": options_document(options),
        "outputs": shape.outputs,
        "members": shape.members,
        "weighted": shape.weighted,
        "groups": None if group_keys is None else plain_keys(group_keys.keys),
        "max_groups": options.max_groups,
        "sums": {} if state is None else portable.exported(state),
        "recalibration": applied,
    }


def document_options(
    document: dict[str, Any], device: str, path: str | None
) -> tuple[ScoreOptions, int]:
    """The options a checked ``document`` was scored with (on ``device``, the recalibration
    map named by its file), and the rows whose key the map had not seen."""
    check_document(document, path)
    options = replace(options_from_document(document["options"], path), device=device)
    if document.get("max_groups") is not None:
        options = replace(options, max_groups=document["max_groups"])
    file, unseen_rows = applied_recalibration(document, path)
    if options.recalibration is not None:  # named by its file, not the state's
        options = replace(options, recalibration=replace(options.recalibration, path=file))
    return options, unseen_rows


def document_shape(
    document: dict[str, Any], options: ScoreOptions, group_keys: GroupKeys | None, path: str | None
) -> Shape:
    """The document's shape, checked against its options; its groups added to ``group_keys``."""
    outputs, groups, members = document["outputs"], document["groups"], document.get("members")
    if (groups is None) != (group_keys is None):
        raise malformed("its groups contradict its options", path)
    weighted = document.get("weighted", False)
    if outputs is None:
        return Shape(None, None, False)
    if group_keys is not None:
        group_keys.add(tuple(key) for key in groups)
    if (members is None) == options.per_row_members:
        raise malformed("its members contradict its options", path)
    if not isinstance(weighted, bool):
        raise malformed("'weighted' must be true or false", path)
    return Shape(outputs, members, weighted)


def restored_state(
    document: dict[str, Any],
    outputs: int,
    new_state: NewState,
    group_keys: GroupKeys | None,
    path: str | None,
) -> ScoreState:
    """The document's sums in a new state (their shapes checked on the meta device, without
    memory, before any is made)."""
    try:
        portable.restore(new_state(outputs, torch.device("meta")), document["sums"])
        state = new_state(outputs, None)
        portable.restore(state, document["sums"])
    except ValueError as error:
        raise InputError(
            f"not a gaussnll state file of these options: {error} (a state written by "
            "another version of gaussnll: score its input again)",
            path=path,
        ) from None
    if group_keys is not None and state.totals(True)["rows"].shape[0] != len(group_keys.keys):
        raise malformed("its sums and groups differ in number", path)
    return state
