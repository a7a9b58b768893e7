"""A scorer's state as a portable document: plain numbers, group keys and the options that
shape them. Version 4 (``schema: "gaussnll.state/4"``; version 3 is read as version 4, its
null ``group_metrics`` as the families its default gave groups, the calibration curves
included; version 1 kept every metric family's sums, laid out otherwise, version 2 had no
one-sided calibration sums (``quantile``, and an ensemble's one-sided counts): both are refused
with a line saying so)::

    {"schema": "gaussnll.state/4",
     "options": {"columns": {"mean": [...], "target": [...], "spread": [...],
                             "spread_kind": "var", "by": [...], "weight": name or null,
                             "quantiles": [...] (absent in older files)},
                 "full": false, "eps": 1e-06, "reduction": "mean", "dtype": "float64",
                 "nan_policy": "error", "calibration": true, "levels": [...], "pit_bins": 20,
                 "uncertainty_bins": 10, "intervals": {"COLUMN": [edges]},
                 "recalibration": {map} or null, "ensemble": false, "samples": false,
                 "member_weights": [weights] or null,
                 "metrics": [families] or null (all), "group_metrics": [families] (those
                 each group computed, written out) or null (no --by; in version 3, also the
                 default),
                 "quantiles": [levels] or null (absent in older files),
                 with --ci only: "ci": level, "ci_replicates": B, "ci_seed": seed and
                 "columns.id": the id column keying the replicates, or null},
     "outputs": D or null (no row yet),
     "members": M (an ensemble's members, or samples' draws, per row) or null,
     "weighted": true when the rows were weighted (absent: false),
     "groups": [[key values], ...] or null (no --by),
     "max_groups": the most groups the run allowed (absent in older files),
     "recalibration": {"file": the map's file or null, "unseen_rows": N} with a map (the
                      rows whose key it had not seen; absent in older files),
     "identity": {"input": the input scored, "rows": rows held, "digest": "sha256:..."}
                 (absent in older files),
     "sums": {"PATH:PART": array}}

``sums`` holds every running sum of the state (``state.portable``): in memory NumPy arrays
(float64 sums with their compensation, int64 counts; per group, a row per entry of
``groups``); in a file each array is ``{"dtype", "shape", "values"}`` with the values flat in
C order. Python's JSON writes a non-finite sum as ``NaN``/``Infinity``. Group key values are
JSON's (null, booleans, numbers, text); others are saved as their text.

A state file is untrusted input: reading one checks every key against this schema with its
bounds, the sums against their declared dtypes and shapes, and the identity's ``digest`` (of
everything but ``max_groups`` and the identity, ``digest``) against what the file holds. The
identity tells a state given twice to a merge (``merging.StateMerger``).

States merge when their options are equal: sums add, groups merge by key. ``max_groups`` does
not shape the sums, so states of different limits merge (under the largest, by default).
A file holds the document as JSON text (this module) or as Arrow IPC (``state_arrow``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gaussnll.core.errors import InputError, OptionError
from gaussnll.core.families import FAMILIES
from gaussnll.core.options import DEFAULT_REPLICATES, ColumnSpec, ScoreOptions
from gaussnll.core.recalibration import RecalibrationMap
from gaussnll.core.report.report import Report
from gaussnll.core.untrusted import parse_json

STATE_SCHEMA = "gaussnll.state/4"
# Version 3 is version 4 but for what a null ``group_metrics`` (the default) meant: its groups
# also kept both calibration curves (and a quantile model's, its quantiles). Such a state reads
# as having chosen them.
_SCHEMA_3 = "gaussnll.state/3"
_SCHEMA_3_GROUP_DEFAULT = (
    "nll",
    "accuracy",
    "var_scale",
    "crps",
    "coverage",
    "calibration",
    "one_sided",
    "quantiles",
)
# Sums laid out otherwise (2: without the one-sided calibration's): score the shard again.
_OLDER_SCHEMAS = ("gaussnll.state/1", "gaussnll.state/2")
_DTYPES = ("float64", "int64")
_APPLIED = ("file", "unseen_rows")  # what a state records of the recalibration map applied
_KINDS = {"float64": "fi", "int64": "i"}  # the NumPy kinds of values each dtype takes
_MAX_COUNT = 2**63 - 1  # a count, a size or a limit: an int64
_MAX_AXES = 8
_DIGEST = re.compile("sha256:[0-9a-f]{64}")


# The options that do not shape a state's sums: how the input is read and where it is scored
# (``max_groups`` is recorded beside the options, as the limit the run allowed). Every other
# option is in ``options_document`` (tests/test_state_files.py keeps the two in step).
NOT_SHAPING = frozenset({"chunk_size", "delimiter", "device", "workers", "max_groups"})


def options_document(options: ScoreOptions) -> dict[str, Any]:
    """The options that shape a state (and its report), as JSON values."""
    columns = options.columns
    recalibration, weights = options.recalibration, options.member_weights
    document: dict[str, Any] = {
        "columns": {
            "mean": list(columns.mean),
            "target": list(columns.target),
            "spread": list(columns.spread),
            "spread_kind": columns.spread_kind.value,
            "by": list(columns.by),
            "weight": columns.weight,
            "quantiles": list(columns.quantiles),
        },
        "full": options.full,
        "eps": options.eps,
        "reduction": options.reduction,
        "dtype": options.dtype,
        "nan_policy": options.nan_policy,
        "calibration": options.calibration,
        "levels": list(options.levels),
        "pit_bins": options.pit_bins,
        "uncertainty_bins": options.uncertainty_bins,
        "intervals": {name: list(edges) for name, edges in options.edges().items()},
        "recalibration": None if recalibration is None else recalibration.to_dict(),
        "ensemble": options.ensemble,
        "samples": options.samples,
        "member_weights": None if weights is None else list(weights),
        "metrics": None if options.metrics is None else list(options.metrics),
        "group_metrics": _group_families(options),
        "quantiles": None if options.quantiles is None else list(options.quantiles),
    }
    if options.ci is None:  # as before intervals: the states of earlier versions still merge
        return document
    document["columns"]["id"] = columns.id  # it keys the replicates
    document.update(ci=options.ci, ci_replicates=options.ci_replicates, ci_seed=options.ci_seed)
    return document


def options_from_document(document: dict[str, Any], path: str | None) -> ScoreOptions:
    """The options ``options_document`` wrote; anything malformed is an InputError."""
    try:
        columns = document["columns"]
        recalibration, weights = document["recalibration"], document["member_weights"]
        return ScoreOptions(
            columns=ColumnSpec(
                mean=columns["mean"],
                target=columns["target"],
                spread=columns["spread"],
                spread_kind=columns["spread_kind"],
                by=columns["by"],
                weight=columns.get("weight"),
                quantiles=columns.get("quantiles", ()),
                id=columns.get("id"),
            ),
            full=document["full"],
            eps=document["eps"],
            reduction=document["reduction"],
            dtype=document["dtype"],
            nan_policy=document["nan_policy"],
            calibration=document["calibration"],
            levels=tuple(document["levels"]),
            pit_bins=document["pit_bins"],
            uncertainty_bins=document["uncertainty_bins"],
            intervals={name: tuple(edges) for name, edges in document["intervals"].items()},
            recalibration=None
            if recalibration is None
            else RecalibrationMap.from_dict(recalibration, path),
            ensemble=document["ensemble"],
            samples=document.get("samples", False),
            member_weights=None if weights is None else tuple(weights),
            metrics=document["metrics"],
            group_metrics=document["group_metrics"],
            quantiles=document.get("quantiles"),
            ci=document.get("ci"),
            ci_replicates=document.get("ci_replicates", DEFAULT_REPLICATES),
            ci_seed=document.get("ci_seed", 0),
        )
    except OptionError as error:
        raise malformed(f"its options are invalid ({error})", path) from None
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as error:
        raise malformed(f"its options are incomplete ({error})", path) from None


def plain_keys(keys: Sequence[tuple[Hashable, ...]]) -> list[list[Any]]:
    """Group keys as lists of JSON values (others as text)."""
    return [[_plain(value) for value in key] for key in keys]


def check_document(document: Any, path: str | None) -> None:
    """Raise an InputError unless ``document`` has the shape of a state document: each key
    of its schema of the type and within the bounds it must be (the options are checked by
    ``options_from_document``, the sums by ``sum_array``, their sizes by ``Scorer.from_state``)."""
    if isinstance(document, dict) and document.get("schema") in _OLDER_SCHEMAS:
        raise InputError(
            f"a state of an older gaussnll ({document['schema']}): its sums are laid out "
            f"otherwise than {STATE_SCHEMA}'s; score its shard again to merge it",
            path=path,
        )
    if not isinstance(document, dict) or document.get("schema") not in (STATE_SCHEMA, _SCHEMA_3):
        raise malformed(f"its schema must be {STATE_SCHEMA!r}", path)
    for key, kind in (("options", dict), ("sums", dict)):
        if not isinstance(document.get(key), kind):
            raise malformed(f"{key!r} must be an object", path)
    for key in ("outputs", "members", "max_groups"):
        count = document.get(key)
        if count is not None and not (type(count) is int and 1 <= count <= _MAX_COUNT):
            raise malformed(f"{key!r} must be a positive whole number or null", path)
    if not isinstance(document.get("weighted", False), bool):
        raise malformed("'weighted' must be true or false", path)
    groups = document.get("groups")
    if groups is not None and not (
        isinstance(groups, list)
        and all(isinstance(key, list) and all(map(_is_scalar, key)) for key in groups)
    ):
        raise malformed("'groups' must be a list of keys (lists of JSON values) or null", path)
    applied_recalibration(document, path)
    _check_identity(document.get("identity"), path)


def _check_identity(identity: Any, path: str | None) -> None:
    """An identity (``identified``) is absent (an older state) or complete."""
    if identity is None:
        return
    if not (
        isinstance(identity, dict)
        and isinstance(identity.get("input"), str)
        and type(identity.get("rows")) is int
        and 0 <= identity["rows"] <= _MAX_COUNT
        and isinstance(identity.get("digest"), str)
        and _DIGEST.fullmatch(identity["digest"])
    ):
        raise malformed(
            "'identity' must be an object of 'input' (text), 'rows' (a whole number) and "
            "'digest' ('sha256:' and 64 hexadecimal digits)",
            path,
        )


def applied_recalibration(document: dict[str, Any], path: str | None) -> tuple[str | None, int]:
    """The file of the recalibration map a state applied (None: not recorded) and the rows
    whose key the map had not seen."""
    applied = document.get("recalibration")
    if applied is None:
        return None, 0
    file, unseen = (applied.get(key) if isinstance(applied, dict) else None for key in _APPLIED)
    if not (file is None or isinstance(file, str)) or not (type(unseen) is int and unseen >= 0):
        raise malformed("'recalibration' must hold a 'file' and a count of 'unseen_rows'", path)
    return file, unseen


def difference(first: dict[str, Any], other: dict[str, Any], prefix: str = "") -> str | None:
    """The first option (a dotted name, with both values) in which two option documents
    differ, or None when they are equal."""
    for key in sorted(set(first) | set(other)):
        mine, theirs = first.get(key), other.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict) and key != "recalibration":
            found = difference(mine, theirs, f"{prefix}{key}.")
            if found is not None:
                return found
        elif mine != theirs:
            shown = _map_text if key == "recalibration" else _shown
            texts = (shown(mine), shown(theirs))
            if texts[0] == texts[1]:  # maps alike in what names them
                alike = f"two maps like {texts[0]}, different in a group's scale or an output"
                return f"{prefix}{key} ({alike})"
            return f"{prefix}{key} ({texts[0]} and {texts[1]})"
    return None


def _map_text(document: dict[str, Any] | None) -> str:
    """A recalibration map named by what tells two apart: the data it was fitted on, its
    scales, and how many groups it has."""
    if document is None:
        return "no map"
    fitted = document.get("fitted_on") or {}
    source = f" fitted on {fitted['path']}" if fitted.get("path") else ""
    scales = ", ".join(f"{scale:.6g}" for scale in document.get("scale", ()))
    groups = document.get("groups") or ()
    per_group = f", {len(groups)} groups by {', '.join(document['by'])}" if groups else ""
    return f"the map{source} (scale {scales}{per_group})"


def to_json(document: dict[str, Any]) -> str:
    """The document as JSON text: each array as ``{"dtype", "shape", "values"}``."""
    sums = {
        name: {
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "values": array.reshape(-1).tolist(),
        }
        for name, array in document["sums"].items()
    }
    return json.dumps({**document, "sums": sums}, separators=(",", ":")) + "\n"


def from_json(data: bytes, path: str) -> dict[str, Any]:
    """A state document from its JSON text, its arrays as NumPy arrays (``validated``)."""
    document = parse_json(data, lambda what: malformed(what, path))
    check_document(document, path)
    sums = {}
    for name, encoded in document["sums"].items():
        values = encoded.get("values") if isinstance(encoded, dict) else None
        sums[name] = sum_array(name, encoded, values, path)
    return validated({**document, "sums": sums}, path)


def sum_array(name: str, encoded: Any, values: Any, path: str) -> np.ndarray:
    """The array of sum ``name`` from its ``values`` (a list of numbers, or a flat NumPy array
    of the declared dtype) and ``encoded``'s ``dtype`` and ``shape``; an InputError unless the
    values are numbers of that dtype, as many as the shape holds."""
    try:
        if not isinstance(encoded, dict):
            raise TypeError("not an object")
        dtype, shape = encoded.get("dtype"), encoded.get("shape")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= _MAX_AXES
            and all(type(size) is int and 0 <= size <= _MAX_COUNT for size in shape)
        ):
            raise ValueError("its shape must be a list of whole numbers >= 0")
        if isinstance(values, np.ndarray):
            if values.dtype != dtype:
                raise ValueError(f"values of dtype {values.dtype}, not {dtype}")
            array = values
        elif isinstance(values, list):
            array = np.asarray(values) if values else np.zeros(0, dtype=dtype)
        else:
            raise KeyError("values")
        if array.ndim != 1 or array.dtype.kind not in _KINDS[dtype]:
            raise ValueError(f"its values must be {dtype} numbers")
        if array.size != math.prod(shape):
            raise ValueError(f"{array.size} values for the shape {shape}")
        return array.astype(dtype, copy=False).reshape(shape)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise malformed(f"sum {name!r} is malformed ({error})", path) from None


def validated(document: dict[str, Any], path: str) -> dict[str, Any]:
    """A state document read from a file (its sums as arrays, ``check_document`` passed), its
    options normalised (as ``options_document`` writes them, so nothing else in them is
    carried or compared) and its identity's digest checked against what it holds: a state
    changed since it was written, or damaged, is an InputError."""
    options = options_from_document(document["options"], path)
    by, members = options.columns.by, document.get("members")
    if any(len(key) != len(by) for key in document.get("groups") or ()):
        raise malformed(f"each group key must hold {len(by)} value(s), one per by column", path)
    values = sum(array.size for array in document["sums"].values())
    if members is not None and options.member_weights is None and members > values:
        raise malformed(f"'members' is {members:,}, more than its sums hold", path)
    written = options_document(options)
    if document["schema"] == _SCHEMA_3:  # its group_metrics as given (null: the default)
        written["group_metrics"] = document["options"]["group_metrics"]
    document = {**document, "options": written}
    identity = document.get("identity")
    if identity is not None and identity["digest"] != digest(document):
        raise malformed(
            "what it holds does not match its identity's digest: it was changed or damaged "
            "after it was written",
            path,
        )
    return _as_current(document, options)


def _group_families(options: ScoreOptions) -> list[str] | None:
    """The families each group computed, in ``FAMILIES`` order (None without ``--by``): written
    out, not as null for the default, so a state means the same when the default changes."""
    if not options.columns.by:
        return None
    return [name for name in FAMILIES if name in options.selection.groups]


def _as_current(document: dict[str, Any], options: ScoreOptions) -> dict[str, Any]:
    """A version 3 ``document`` (its digest checked) as version 4: its groups' families written
    out, a null ``group_metrics`` as those version 3's default gave (among those computed)."""
    if document["schema"] != _SCHEMA_3:
        return document
    if options.group_metrics is None and options.columns.by:
        overall = options.selection.overall
        chosen = tuple(name for name in _SCHEMA_3_GROUP_DEFAULT if name in overall)
        options = replace(options, group_metrics=chosen)
    return {**document, "schema": STATE_SCHEMA, "options": options_document(options)}


def identified(document: dict[str, Any], report: Report) -> dict[str, Any]:
    """``document`` with its identity: the input it was scored from, the rows it holds (scored
    or skipped, as ``report`` of it says) and the digest of what it holds (``digest``), which
    tell a state given twice to a merge."""
    rows = report.rows + report.skipped_rows
    identity = {"input": report.path, "rows": rows, "digest": digest(document)}
    return {**document, "identity": identity}


def identity_key(document: dict[str, Any]) -> tuple[str, int, str] | None:
    """What tells the same state given twice: its identity, for a state that holds rows (a
    state without rows adds nothing, however often it is merged); None for an older state."""
    identity = document.get("identity")
    if identity is None or document.get("outputs") is None:
        return None
    return identity["input"], identity["rows"], identity["digest"]


def digest(document: dict[str, Any]) -> str:
    """SHA-256 of what a state holds, whichever form its file takes: its options, outputs,
    members, weighting, group keys and recalibration record (as canonical JSON) and each sum's
    name, dtype, shape and little-endian bytes (every NaN as one NaN: JSON keeps no NaN's
    bits). ``max_groups`` and the identity are left out: they do not shape the sums."""
    held = ("options", "outputs", "members", "groups", "recalibration")
    shaping = {key: document.get(key) for key in held}
    shaping["weighted"] = bool(document.get("weighted"))
    hashed = hashlib.sha256(json.dumps(shaping, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(document["sums"]):
        array = np.asarray(document["sums"][name])
        if array.dtype.kind == "f" and np.isnan(array).any():
            array = np.where(np.isnan(array), np.nan, array)
        hashed.update(json.dumps([name, str(array.dtype), list(array.shape)]).encode())
        hashed.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).data)
    return "sha256:" + hashed.hexdigest()


def malformed(what: str, path: str | None) -> InputError:
    """A state file's error: ``what`` is wrong with it."""
    return InputError(f"not a gaussnll state file: {what}", path=path)


def _plain(value: Any) -> Any:
    return value if _is_scalar(value) else str(value)


def _is_scalar(value: Any) -> bool:
    """A JSON scalar: null, a boolean, a number or text."""
    return value is None or isinstance(value, bool | int | float | str)


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
