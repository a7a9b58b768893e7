"""Metric families: the units a run computes, chosen per scope (the whole input, each group).

A family is what a user selects (``--metrics`` for the whole input, ``--group-metrics`` for each
group of ``--by``) and what the engine accumulates: a family that is not chosen keeps no sums,
costs no work per chunk and reports null. ``nll`` is always computed (every other number needs
its row counts). Light on purpose (no torch), so options and the CLI can validate names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gaussnll.core.errors import OptionError

NLL = "nll"
ENSEMBLE = "ensemble"
SAMPLES = "samples"
QUANTILES = "quantiles"
CI = "ci"
ALL = "all"
ADDED = "+"  # ``--group-metrics +F,...``: the default families and F, ...

# Every family with what it computes, in the order the report lists them.
FAMILIES: dict[str, str] = {
    NLL: "NLL mean and sum, DSS (always computed)",
    "accuracy": "MAE, RMSE, bias",
    "var_scale": "z mean and std, z² mean, var_scale, NLL at var_scale, sharpness, NLL full",
    "crps": "CRPS",
    "coverage": "coverage, elements inside, interval width and interval score at --levels",
    "calibration": "calibration curve, MACE, RMSCE, miscalibration area",
    "one_sided": "one-sided calibration: the frequency of u <= tau, its MACE, RMSCE and area",
    "pit": "PIT histogram",
    "scores": "check score and interval score averaged over 99 levels",
    "uncertainty": "ENCE, error-vs-uncertainty bins, sigma histogram",
    ENSEMBLE: "the mixture's NLL, CRPS, coverage and PIT, member NLLs (--ensemble)",
    SAMPLES: "the draws' CRPS (energy and fair), coverage, rank and PIT histograms, quantile "
    "MACE (--samples)",
    QUANTILES: "pinball losses, WIS, interval and one-sided coverage, CRPS (--quantiles)",
    CI: "bootstrap intervals of the headline metrics, whole input only (--ci)",
}
# The families that need an input form or an option: the option each needs.
_FORM_FAMILIES = {
    ENSEMBLE: "--ensemble",
    SAMPLES: "--samples",
    QUANTILES: "--quantiles",
    CI: "--ci",
}
# A quantile model has no density: only these apply (the NLL's numbers are null).
QUANTILE_FAMILIES = (NLL, QUANTILES)
# What ``--no-calibration`` leaves: the families that need no calibration sums.
UNCALIBRATED = frozenset({NLL, ENSEMBLE, QUANTILES})
# The cheap, most-used families, each group's by default: 368 bytes a group (the two
# calibration curves, 1 KB more, and the σ bins only when asked for; a quantile model's
# groups get its quantiles family).
GROUP_DEFAULT = ("nll", "accuracy", "var_scale", "crps", "coverage")


@dataclass(frozen=True)
class Selection:
    """The families computed for the whole input and for each group (a subset of the former)."""

    overall: frozenset[str]
    groups: frozenset[str]

    def scope(self, grouped: bool) -> frozenset[str]:
        return self.groups if grouped else self.overall


def parse_names(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"nll,crps"`` or ``["nll", "crps"]`` as a tuple of names (None stays None)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(part.strip() for part in parts if isinstance(part, str) and part.strip())


def select(
    metrics: Iterable[str] | None,
    group_metrics: Iterable[str] | None,
    *,
    calibration: bool = True,
    ensemble: bool = False,
    samples: bool = False,
    quantiles: bool = False,
    ci: bool = False,
) -> Selection:
    """The families of each scope: ``metrics`` (None: all) for the whole input, ``group_metrics``
    (None: ``GROUP_DEFAULT`` among those; a first name ``+F``: those and ``F``, ...) for each
    group. ``nll`` is always in both; ``ensemble``
    only with an ensemble, ``samples`` only with samples; a quantile model (``quantiles``) has
    only ``QUANTILE_FAMILIES``; ``ci`` (the bootstrap intervals) is the whole input's whenever
    asked for (``ci``), never a group's. Names that are unknown, or groups' families not
    computed for the whole input, raise :class:`OptionError`."""
    given = {ENSEMBLE: ensemble, SAMPLES: samples, QUANTILES: quantiles, CI: ci}
    available = [name for name in FAMILIES if given.get(name, True)]
    available = [n for n in available if n == NLL or (n in QUANTILE_FAMILIES) == quantiles]
    if not calibration:
        available = [name for name in available if name in UNCALIBRATED]
    overall = _named("metrics", metrics, available, given, calibration)
    default = {name for name in (*GROUP_DEFAULT, QUANTILES) if name in overall}
    if group_metrics is None:
        groups = default
    else:
        listed = tuple(group_metrics)
        added = _added_to(listed)  # ``+calibration,pit``: the default and these
        names = listed if added is None else added
        groups = _named("group_metrics", names, available, given, calibration)
        groups |= set() if added is None else default
        if CI in groups:
            raise OptionError(
                "group_metrics", "names ci: bootstrap intervals are for the whole input only."
            )
        missing = sorted(groups - overall, key=list(FAMILIES).index)
        if missing:
            raise OptionError(
                "group_metrics",
                f"names {', '.join(missing)}, which --metrics does not compute for the whole "
                "input: add them to --metrics too.",
            )
    always = {NLL, CI} if ci else {NLL}
    return Selection(frozenset(overall | always), frozenset(groups | {NLL}))


def _added_to(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The families ``+F,...`` (or ``+F,+G``) adds to the groups' default (None: ``names`` has
    no ``+``); a ``+`` before a later family only, or before none, raises OptionError."""
    if not any(name.startswith(ADDED) for name in names):
        return None
    added = tuple(name.removeprefix(ADDED).strip() for name in names)
    if names[0].startswith(ADDED) and all(name and not name.startswith(ADDED) for name in added):
        return added
    raise OptionError(
        "group_metrics",
        f"must be families, or families after one {ADDED} before the first to add them to the "
        f"default (+calibration,pit). Got {','.join(names)!r}.",
    )


def _named(
    parameter: str,
    names: Iterable[str] | None,
    available: list[str],
    forms: dict[str, bool],
    calibration: bool,
) -> set[str]:
    """The families ``names`` selects (None or ``all``: every available one); ``forms``: whether
    each family that needs an input form has it."""
    if names is None:
        return set(available)
    chosen: set[str] = set()
    for name in names:
        if name == ALL:
            chosen.update(available)
        elif name not in FAMILIES:
            known = ", ".join([*FAMILIES, ALL])
            raise OptionError(parameter, f"must be families among {known}. Got {name!r}.")
        elif name not in available and forms[QUANTILES]:
            raise OptionError(
                parameter,
                f"names {name}, which a quantile model (--quantiles) has not: it has "
                f"{', '.join(QUANTILE_FAMILIES)}.",
            )
        elif not forms.get(name, True):
            raise OptionError(parameter, f"names {name}, which needs {_FORM_FAMILIES[name]}.")
        elif name not in available and not calibration:
            raise OptionError(
                parameter, f"names {name}, which --no-calibration leaves out: drop one of them."
            )
        else:
            chosen.add(name)
    return chosen
