"""How a report's dataclass fields declare what they are, once: a metric (a number a check can
name, with a human label and a description) or information about the run.

The metric catalogue (``catalogue``), the JSON (``to_dict``), the checks and the renderers all
read these declarations, so a new metric is one field with its ``metric(...)`` metadata.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Shape(StrEnum):
    """How a field's value is shaped."""

    SCALAR = "scalar"  # one number: a check names it as NAME
    PER_LEVEL = "per_level"  # one number per ``levels`` entry: a check names it as NAME@LEVEL
    VECTOR = "vector"  # a list no check can name (a histogram)
    SECTION = "section"  # a dataclass of metrics (or None), its own JSON object
    INFO = "info"  # not a metric: what was scored and how


@dataclass(frozen=True)
class FieldSpec:
    """What a report field is: its shape, its human label and a one-line description;
    ``in_groups``: whether a group's JSON entry repeats it."""

    shape: Shape
    label: str
    description: str
    in_groups: bool = False
    of: type | None = None  # the dataclass of a section
    calibrated: bool = False  # computed only with calibration (outside its own sections)
    count: bool = False  # a count or sum of weights, shown without decimals when whole
    family: str | None = None  # the metric family that computes it (``core.families``)
    levels: str = "levels"  # per level: the field of its section that holds the levels

    @property
    def checkable(self) -> bool:
        return self.shape in (Shape.SCALAR, Shape.PER_LEVEL)


_KEY = "gaussnll"


def metric(
    label: str,
    description: str,
    *,
    per_level: bool = False,
    vector: bool = False,
    in_groups: bool = True,
    calibrated: bool = False,
    count: bool = False,
    family: str | None = None,
    levels: str = "levels",
    **options: Any,
) -> Any:
    """A dataclass field holding a metric (``options`` go to ``dataclasses.field``);
    ``calibrated``: computed only with calibration (fields of the calibration and accuracy
    sections are anyway); ``count``: a count, though not typed ``int`` (a sum of weights);
    ``family``: the metric family that computes it (null when the family is not chosen);
    ``levels``: per level, the field of its section holding the levels (a calibration
    section's ``levels`` outside a section)."""
    shape = Shape.PER_LEVEL if per_level else Shape.VECTOR if vector else Shape.SCALAR
    spec = FieldSpec(
        shape,
        label,
        description,
        in_groups,
        calibrated=calibrated,
        count=count,
        family=family,
        levels=levels,
    )
    return dataclasses.field(metadata={_KEY: spec}, **options)


def info(
    description: str, *, in_groups: bool = False, family: str | None = None, **options: Any
) -> Any:
    """A dataclass field holding information about the run, not a metric (``family``: the
    metric family that computes it, if any)."""
    spec = FieldSpec(Shape.INFO, "", description, in_groups, family=family)
    return dataclasses.field(metadata={_KEY: spec}, **options)


def section(of: type, *, in_groups: bool = True, **options: Any) -> Any:
    """A dataclass field holding a section of metrics (``of``), or None when not computed."""
    spec = FieldSpec(Shape.SECTION, "", of.__doc__ or "", in_groups, of)
    return dataclasses.field(metadata={_KEY: spec}, **options)


def spec_of(field: dataclasses.Field[Any]) -> FieldSpec:
    """A field's declaration; a field without one is a bug the tests catch."""
    try:
        spec: FieldSpec = field.metadata[_KEY]
    except KeyError:
        raise TypeError(
            f"field {field.name!r} declares neither metric(...) nor info(...)"
        ) from None
    return spec


@functools.cache
def declared(cls: type) -> tuple[tuple[str, FieldSpec], ...]:
    """Every field of a report dataclass with its declaration, in order."""
    return tuple((field.name, spec_of(field)) for field in dataclasses.fields(cls))


def json_fields(
    record: Any, *, groups_only: bool = False, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A report dataclass as its JSON object: its fields in order, sections as objects (or
    null), tuples of records as lists of objects; ``groups_only``: only the fields a group's
    entry repeats; ``skip``: fields left out."""
    cls: type = type(record)  # as ``type``: mypy reads type[Any] as unhashable for the caches
    if _flat(cls) and not (groups_only or skip):
        return dict(vars(record))  # numbers and lists of them: the fast path for summaries
    entry: dict[str, Any] = {}
    for name, spec in declared(cls):
        if name in skip or (groups_only and not spec.in_groups):
            continue
        value = getattr(record, name)
        if spec.shape is Shape.SECTION:
            value = None if value is None else json_fields(value)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = [json_fields(item) for item in value]
        entry[name] = value
    return entry


@functools.cache
def _flat(cls: type) -> bool:
    """Whether a record's fields are all plain values, none computed after ``__init__``."""
    return all(
        spec_of(field).shape is not Shape.SECTION and field.init
        for field in dataclasses.fields(cls)
    )


@dataclass(frozen=True)
class Shared:
    """A field whose value every report of a batch shares (a by-column entry's leaf)."""

    value: Any


@dataclass(frozen=True)
class PerReport:
    """A field's value for each report of a batch, in order (a by-column entry's leaf): a
    NumPy array (a number a report, or a row of numbers) or a list of plain values."""

    values: Any  # np.ndarray | list[Any]


def json_columns(cls: type, values: dict[str, Any], *, groups_only: bool = False) -> dict[str, Any]:
    """The JSON objects of a batch of ``cls`` records by column, as ``json_fields`` writes one
    record: its fields in order (``groups_only``: those a group's entry repeats), each taken
    from ``values`` (a ``Shared``, an ``PerReport``, or a section's columns) or, not there, the
    field's default."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    entry: dict[str, Any] = {}
    for name, spec in declared(cls):
        if groups_only and not spec.in_groups:
            continue
        if name in values:
            entry[name] = values[name]
            continue
        field = fields[name]
        if field.default is not dataclasses.MISSING:
            entry[name] = Shared(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            entry[name] = Shared(field.default_factory())
        else:
            raise TypeError(f"no value of {cls.__name__}.{name}")
    return entry
