"""Which columns hold the prediction, and how the spread is expressed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gaussnll.core.errors import UsageError


class Spread(StrEnum):
    """How the file gives the predictive spread; every kind is turned into a variance."""

    VAR = "var"
    STD = "std"
    LOG_VAR = "log_var"


@dataclass(frozen=True)
class ColumnSpec:
    """Column names per role; several names per role make a multi-output ``(N, D)`` prediction."""

    mean: tuple[str, ...] = ("mean",)
    target: tuple[str, ...] = ("target",)
    spread: tuple[str, ...] = ("var",)
    spread_kind: Spread = Spread.VAR
    id: str | None = None
    by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "spread_kind", Spread(self.spread_kind))

    @classmethod
    def from_options(
        cls,
        *,
        mean: str = "mean",
        target: str = "target",
        var: str | None = None,
        std: str | None = None,
        log_var: str | None = None,
        id: str | None = None,
        by: tuple[str, ...] = (),
    ) -> ColumnSpec:
        """Build from comma-separated option values; one of var/std/log_var (default var)."""
        given = {
            kind: names
            for kind, names in ((Spread.VAR, var), (Spread.STD, std), (Spread.LOG_VAR, log_var))
            if names is not None
        }
        if len(given) > 1:
            flags = " and ".join(f"--{kind.value.replace('_', '-')}-col" for kind in given)
            raise UsageError(f"{flags} contradict each other: give the spread one way")
        kind, names = next(iter(given.items()), (Spread.VAR, "var"))
        return cls(
            mean=split_names(mean, "--mean-col"),
            target=split_names(target, "--target-col"),
            spread=split_names(names, f"--{kind.value.replace('_', '-')}-col"),
            spread_kind=kind,
            id=id,
            by=tuple(by),
        )

    @property
    def numeric(self) -> tuple[str, ...]:
        """Every column read as numbers, each once, in role order."""
        return tuple(dict.fromkeys((*self.mean, *self.target, *self.spread)))

    @property
    def needed(self) -> tuple[str, ...]:
        """Every column the reader must project."""
        extra = ((self.id,) if self.id else ()) + self.by
        return tuple(dict.fromkeys(self.numeric + extra))


def split_names(value: str, option: str) -> tuple[str, ...]:
    """``"a, b"`` → ``("a", "b")``; an empty name is a usage error."""
    names = tuple(name.strip() for name in value.split(","))
    if not all(names):
        raise UsageError(f"{option} must be column names separated by commas. Got {value!r}.")
    return names
