"""What each command does once its options are parsed: resolve them against the config file,
run the core, render, apply the checks, and choose the exit code."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from gaussnll.cli import formats
from gaussnll.cli.config import Config, load_config
from gaussnll.cli.exits import EXIT_CHECK_FAILED, signals_ignored
from gaussnll.cli.extras import require_dask, require_matplotlib
from gaussnll.cli.formats import STDOUT_FORMATS, Shown, text, to_stdout
from gaussnll.cli.gates import report_failures
from gaussnll.cli.literal import literal
from gaussnll.cli.progress import progress_callback
from gaussnll.cli.render import CheckResults
from gaussnll.cli.settings import (
    BY_NAME,
    COMPARE,
    DEFAULT_VAR_COL,
    FORM_SETTINGS,
    MERGE,
    SCORE,
    SIDES,
    SPREAD_SETTINGS,
    settings_of,
)
from gaussnll.core import (
    CI,
    COMPARE_METRICS,
    QUANTILE_FAMILIES,
    SAMPLES,
    SCORE_METRICS,
    Catalog,
    Check,
    ColumnSpec,
    ComparisonPlan,
    Executor,
    FileFormat,
    InProcess,
    InputError,
    OnDask,
    PlannedOutputs,
    RecalibrationMap,
    Report,
    RowWriter,
    ScoreOptions,
    Source,
    Spread,
    UsageError,
    compare,
    evaluate,
    evaluate_per_group,
    merge,
    metric_levels,
    parse_checks,
    plan_comparison,
    redacted,
    resolve_source,
    row_file_format,
    scalar_columns,
    score,
    state_format,
)

SHOWN_GROUPS = 100  # groups in a table or Markdown report without --top (JSON has them all)


# the settings that name output files
OUTPUT_FILES = ("per_row", "junit_xml", "html", "save_state")
PER_ROW, JUNIT_XML, HTML, SAVE_STATE = (BY_NAME[name].flag_name for name in OUTPUT_FILES)


@dataclass(frozen=True)
class Outputs:
    """Where and how a command reports (never read from the config file)."""

    format: str
    per_row: str | None
    junit_xml: str | None
    quiet: bool
    html: str | None = None
    per_row_format: FileFormat | None = None  # None: no --per-row, or a directory of parts
    save_state: str | None = None

    @classmethod
    def of(cls, given: dict[str, Any], rows_in_directory: bool = False) -> Outputs:
        """The outputs given; ``rows_in_directory``: --per-row names a directory (--dask)."""
        output_format = "json" if given.get("json") else given.get("format") or "table"
        if output_format not in STDOUT_FORMATS:
            raise UsageError(f"--format must be table, json or markdown. Got {output_format!r}.")
        per_row = given.get("per_row")
        return cls(
            output_format,
            per_row,
            given.get("junit_xml"),
            bool(given.get("quiet")),
            given.get("html"),
            row_file_format(per_row) if per_row is not None and not rows_in_directory else None,
            given.get("save_state"),
        )

    def planned(self, inputs: Iterable[str], config: Config) -> PlannedOutputs:
        """The output files by flag, checked against every file read (``inputs`` and the
        config file), stdout and each other; --per-row without a file format is a directory."""
        files = {BY_NAME[name].flag_name: getattr(self, name) for name in OUTPUT_FILES}
        directories = [PER_ROW] if self.per_row is not None and self.per_row_format is None else []
        return PlannedOutputs(
            files, config.with_inputs(inputs), stdout=True, directories=directories
        )


def resolve_settings(given: dict[str, Any], config: Config, command: str) -> dict[str, Any]:
    """Built-in defaults, overridden by the config file, overridden by the command line; only
    the settings ``command`` takes that a config file may hold.

    Giving the spread one way on the command line replaces the file's choice entirely; given
    no way, it is ``var_col`` ``var``, the column read. Settings that add (``--check``) take
    the file's values and then the command line's.
    """
    settings = {}
    for setting in settings_of(command, config=True):
        if setting.name in given:
            value = setting.value(given[setting.name])
            if setting.adds:  # the file's first, each text once
                value = list(dict.fromkeys([*config.values.get(setting.name, ()), *value]))
            settings[setting.name] = value
        elif setting.name in config.values:
            settings[setting.name] = config.values[setting.name]
        else:
            settings[setting.name] = setting.default
    if any(key in given for key in SPREAD_SETTINGS):
        settings.update({key: given.get(key) for key in SPREAD_SETTINGS})
    if "var_col" in settings and all(settings[key] is None for key in SPREAD_SETTINGS):
        settings["var_col"] = DEFAULT_VAR_COL
    return settings


def run_score(path: str, given: dict[str, Any]) -> int:
    """Score ``path``, render the report and the checks; return the exit code (0 or 1)."""
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, SCORE)
    outputs = Outputs.of(given, rows_in_directory=settings["dask"] is not None)
    checks = _parsed_checks(settings["checks"], settings, SCORE_METRICS)
    _check_grouping(settings, checks)
    if given.get("html"):
        require_matplotlib()
    if settings["dask"] is not None:
        require_dask()
    _require_ci(settings, given, config)
    options = score_options(settings, checks)
    _require_families(checks, settings, options, SCORE_METRICS)
    rows_on_stdout = options.reduction == "none" and outputs.per_row is None
    format_given = given.get("format") is not None or bool(given.get("json"))
    if rows_on_stdout and (format_given or checks or outputs.junit_xml or given.get("html")):
        raise UsageError(
            "--reduction none streams per-row CSV to stdout; add --per-row FILE to also get "
            "a report, checks or JUnit"
        )
    if options.columns.id and not (outputs.per_row or rows_on_stdout or options.ci):
        raise UsageError(
            "--id-col only applies to per-row output or --ci: add --per-row FILE or --ci"
        )
    source = resolve_source(path)
    executor = _executor(settings, given)
    if isinstance(executor, OnDask) and rows_on_stdout:
        raise UsageError("--dask writes per-row losses to a directory: add --per-row DIR")
    with outputs.planned(source.files, config) as files:
        with (
            _row_sink(files, outputs, executor, rows_on_stdout) as rows_to,
            progress_callback("scoring", not outputs.quiet) as on_progress,
        ):
            report = score(
                path,
                options,
                executor=executor,
                rows_to=rows_to,
                on_progress=on_progress,
                state_to=_sink(files, SAVE_STATE),
                state_format=_state_format(outputs),
            )
        _note_broadcast_target(report, source, options)
        if rows_on_stdout:
            return 0
        return _report_score(report, checks, settings, files, outputs.format, config, "score")


def run_merge(paths: list[str], given: dict[str, Any]) -> int:
    """Merge state files into one report; render it and the checks (as ``score``)."""
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, MERGE)
    outputs = Outputs.of(given)
    # the limit given to merge (or its config file), else the largest the states record
    given_limit = "max_groups" in given or "max_groups" in config.values
    max_groups = settings["max_groups"] if given_limit else None
    if settings["dask"] is not None:
        require_dask()
    if given.get("html"):
        require_matplotlib()
    with outputs.planned(paths, config) as files:
        with progress_callback("merging", not outputs.quiet) as on_progress:
            scorer = merge(
                paths,
                executor=_executor(settings, given),
                max_groups=max_groups,
                allow_duplicates=bool(given.get("allow_duplicates")),
                on_progress=on_progress,
            )
        report = scorer.report(", ".join(paths), "state", allow_empty=True)
        settings.update(by=list(report.by), calibration=report.calibration is not None)
        # merge has no --ci, --ensemble or --samples: the states say what they kept
        settings.update(
            ci=report.ci is not None,
            ensemble=report.ensemble is not None,
            samples=report.samples is not None,
        )
        settings.update(max_groups=scorer.options.max_groups)  # the limit that applied
        checks = _parsed_checks(settings["checks"], settings, SCORE_METRICS)
        _check_grouping(settings, checks)
        return _report_score(report, checks, settings, files, outputs.format, config, "merge")


def _report_score(
    report: Report,
    checks: list[Check],
    settings: dict[str, Any],
    files: PlannedOutputs,
    output_format: str,
    config: Config,
    command: str,
) -> int:
    """Apply the checks to a score report, render both (and the HTML page), write the JUnit
    file and commit the outputs; the exit code."""
    _warn_of_many_groups(report)
    _require_rows(report, checks)
    results: CheckResults
    if settings["per_group"]:
        results = evaluate_per_group(checks, report)
    else:
        results = evaluate(checks, report)
    top = settings["top"]
    if top is None and output_format != "json":
        top = SHOWN_GROUPS  # a table or a PR comment of 10^5 rows helps nobody
    report = report.with_groups(settings["sort_by"], top)
    shown = Shown(command, results, _shown_settings(settings), config.path)
    return publish(report, shown, output_format, files)


def _require_rows(report: Report, checks: list[Check]) -> None:
    """A report of no rows (an empty shard's, kept for its state) has no means: a check of one
    needs rows (a check of a count, ``rows >= 1``, applies)."""
    if report.rows:
        return
    for check in checks:
        value = report.metric(check.metric)
        if value is None or math.isnan(value):
            raise InputError(f"no data rows: --check {check.text!r} needs rows", path=report.path)


def _require_ci(settings: dict[str, Any], given: dict[str, Any], config: Config) -> None:
    """The settings of --ci's intervals, given without --ci, are a mistake worth a line."""
    if settings["ci"]:
        return
    for name in ("ci_level", "ci_replicates", "ci_seed"):
        if given.get(name) is not None or name in config.values:
            flag = BY_NAME[name].flag_name
            raise UsageError(f"{flag} sets the intervals of --ci: add --ci")


def _state_format(outputs: Outputs) -> str | None:
    """How to write --save-state: by the name given (its temporary's name says nothing)."""
    return None if outputs.save_state is None else state_format(outputs.save_state)


def _sink(files: PlannedOutputs, label: str) -> str | None:
    """Where to write output ``label`` now, if it was asked for."""
    return files.sink(label) if label in files else None


def run_compare(baseline: str, candidate: str, given: dict[str, Any]) -> int:
    """Compare two prediction files, render both reports, their difference and the checks."""
    config = load_config(given.get("config_file"))
    settings = resolve_settings(given, config, COMPARE)
    outputs = Outputs.of(given)
    output_format = outputs.format
    checks = _parsed_checks(list(settings["compare_checks"]), settings, COMPARE_METRICS)
    if settings["max_regression"] is not None:
        bound = float(settings["max_regression"])
        if not math.isfinite(bound):
            raise UsageError(f"--max-regression must be a finite number. Got {bound} instead.")
        (gate,) = parse_checks([f"delta_nll_ci_low <= {bound:g}"], COMPARE_METRICS)
        checks.append(dataclasses.replace(gate, origin=f"--max-regression {bound:g}"))
    _check_grouping(settings, checks)
    _require_ci(settings, given, config)
    sides = [score_options(_side_settings(settings, side), checks) for side in SIDES]
    for name, side_options in zip(SIDES, sides, strict=True):  # each model's families
        own = [c for c in checks if _side_of(c.metric) in (name, None)]
        _require_families(own, settings, side_options, COMPARE_METRICS)
    _require_compared(checks, plan_comparison(*sides))
    if given.get("html"):
        require_matplotlib()
    sources = [resolve_source(path) for path in (baseline, candidate)]
    with outputs.planned((f for source in sources for f in source.files), config) as files:
        with (
            _row_writer(files, outputs) as rows_to,
            progress_callback("comparing", not outputs.quiet) as on_progress,
        ):
            report = compare(
                baseline,
                candidate,
                sides[0],
                candidate_options=sides[1],
                confidence=float(settings["confidence"]),
                rows_to=rows_to,
                on_progress=on_progress,
            )
        for side, source, side_options in zip(
            (report.baseline, report.candidate), sources, sides, strict=True
        ):
            _note_broadcast_target(side, source, side_options)
        if settings["per_group"]:
            results: CheckResults = evaluate_per_group(checks, report)
        else:
            results = evaluate(checks, report, COMPARE_METRICS)
        shown = Shown(COMPARE, results, _shown_settings(settings), config.path)
        return publish(report, shown, output_format, files, COMPARE_METRICS)


def _side_settings(settings: dict[str, Any], side: str) -> dict[str, Any]:
    """One compared model's settings: the shared ones, with its own input form where
    ``--baseline-...`` / ``--candidate-...`` give one (not an ensemble then)."""
    own = {name: settings[f"{side}_{name}"] for name in FORM_SETTINGS}
    if all(value is None for value in own.values()):
        return settings
    return {**settings, **own, "ensemble": False, "member_weights": None}


def _require_compared(checks: list[Check], plan: ComparisonPlan) -> None:
    """A check of a paired score that these models' forms do not share is bad usage."""
    for check in checks:
        why = plan.why_not(check.metric)
        if why is not None:
            raise UsageError(f"{check.origin or f'--check {check.text!r}'}: {why}")


def _executor(settings: dict[str, Any], given: dict[str, Any]) -> Executor:
    """Where the run scores or merges: on the Dask cluster of ``--dask``, else here."""
    if settings["dask"] is None:
        return InProcess()
    return OnDask(settings["dask"], settings["dask_workers"], verbose=bool(given.get("debug")))


def _row_sink(
    files: PlannedOutputs, outputs: Outputs, executor: Executor, rows_on_stdout: bool
) -> AbstractContextManager[RowWriter | str | None]:
    """Where the per-row losses go: a writer in this process, a directory on Dask (the
    workers write its parts)."""
    if isinstance(executor, OnDask):
        return nullcontext(_sink(files, PER_ROW))
    return _row_writer(files, outputs, rows_on_stdout)


def _row_writer(
    files: PlannedOutputs, outputs: Outputs, rows_on_stdout: bool = False
) -> AbstractContextManager[RowWriter | None]:
    """Where per-row losses go: the ``--per-row`` file's temporary sink, stdout, or nowhere."""
    if outputs.per_row is not None and outputs.per_row_format is not None:
        return RowWriter(files.sink(PER_ROW), outputs.per_row_format, name=outputs.per_row)
    if rows_on_stdout:
        return RowWriter(sys.stdout.buffer, FileFormat.CSV)
    return nullcontext(None)


def _note_broadcast_target(report: Report, source: Source, options: ScoreOptions) -> None:
    """One line on stderr when a mean of several values per row was scored against a target of
    one value: the target was broadcast to each, as torch does, which is what an ensemble's
    members read without ``--ensemble`` look like."""
    outputs, target = len(report.outputs), options.columns.target
    if options.ensemble or outputs == 1 or len(target) > 1:
        return
    if scalar_columns(source, target):
        note = (
            f"{source.name}: the mean has {outputs} values per row and the target {target[0]!r} "
            f"one, so they were scored as {outputs} outputs against the same target; if they are "
            "an ensemble's members, add --ensemble"
        )
        print(f"gaussnll: note: {literal(note)}", file=sys.stderr)


def _shown_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as a report shows them: a URI's credentials (``--dask tcp://user:pass@...``)
    redacted."""
    return {key: redacted(v) if isinstance(v, str) else v for key, v in settings.items()}


MANY_GROUPS = 10_000


def _warn_of_many_groups(report: Report) -> None:
    """One line on stderr when ``--by`` over floating-point values made more groups than a
    breakdown usually wants: such a column is continuous, and intervals are what it needs.
    Integer and text keys are ids (a forecast's 30,490 series), many groups on purpose."""
    if report.groups_total <= MANY_GROUPS:
        return
    shown = report.groups[:_KEYS_LOOKED_AT]
    floats = [
        name
        for at, name in enumerate(report.by)
        if any(isinstance(group.key[at], float) for group in shown)
    ]
    if floats:
        name = literal(floats[0])
        print(
            f"gaussnll: warning: --by {literal(' --by '.join(report.by))} made "
            f"{report.groups_total:,} groups (more than {MANY_GROUPS:,}) of the floating-point "
            f"values of {name}; break it down by intervals instead: --by {name}:q10 (quantile "
            f"bins) or --by {name}:EDGE,EDGE,...",
            file=sys.stderr,
        )


_KEYS_LOOKED_AT = 16  # groups whose keys tell a column of floats (a null key is None)


def _check_grouping(settings: dict[str, Any], checks: list[Check]) -> None:
    """``--top``, ``--sort-by`` and ``--per-group`` need ``--by``; the sort metric must exist."""
    if not settings["by"]:
        for key, flag in (("top", "--top"), ("sort_by", "--sort-by"), ("per_group", "--per-group")):
            if settings.get(key):
                raise UsageError(f"{flag} applies to the groups of --by COLUMN: add --by")
        return
    if settings["per_group"] and not checks:
        raise UsageError("--per-group applies the checks to each group: add --check")
    if settings.get("top") is not None and settings["top"] < 1:
        raise UsageError(f"--top must be at least 1. Got {settings['top']} instead.")
    if settings.get("sort_by") is not None:
        metric, _, direction = settings["sort_by"].partition(":")
        known = SCORE_METRICS.knows(metric)
        if direction not in ("", "asc", "desc") or not known:
            raise UsageError(
                f"--sort-by must be METRIC or METRIC:asc with a metric of "
                f"{', '.join(SCORE_METRICS.names())}. Got {settings['sort_by']!r} instead."
            )


def _parsed_checks(texts: list[str], settings: dict[str, Any], catalog: Catalog) -> list[Check]:
    checks = parse_checks(texts, catalog)
    if any(catalog.uses_calibration(c.metric) for c in checks) and not settings["calibration"]:
        raise UsageError("a --check uses a calibration metric: drop --no-calibration")
    if any(catalog.uses_ensemble(c.metric) for c in checks) and not settings["ensemble"]:
        raise UsageError("a --check uses an ensemble metric: add --ensemble")
    samples = [settings.get(name) for name in ("samples", *(f"{s}_samples" for s in SIDES))]
    if any(SAMPLES in catalog.families(c.metric) for c in checks) and not any(samples):
        raise UsageError("a --check uses a samples metric: add --samples COL")
    if any(CI in catalog.families(c.metric) for c in checks) and not settings.get("ci"):
        # merge has no --ci option: its states were saved without it
        how = "add --ci" if "ci_replicates" in settings else "save the states with --ci"
        raise UsageError(f"a --check uses a bootstrap interval: {how}")
    density = [
        c.metric
        for c in checks
        if c.metric in DENSITY_METRICS
        or ((families := catalog.families(c.metric)) and not set(families) & set(QUANTILE_FAMILIES))
    ]
    if density and settings.get("quantiles") is not None:
        raise UsageError(
            f"--check {density[0]}: a quantile model (--quantiles) has no density, so its NLL "
            "and a Gaussian's metrics are null; check a quantile metric such as wis, "
            "crps_quantile or quantile_mace"
        )
    return checks


# The numbers of a density, null for a quantile model.
DENSITY_METRICS = ("nll", "nll_mean", "nll_sum", "dss")


def _require_families(
    checks: list[Check], settings: dict[str, Any], options: ScoreOptions, catalog: Catalog
) -> None:
    """Every metric a check (each group's, with ``--per-group``) or ``--sort-by`` names must be
    computed in its scope: a family left out of ``--metrics``/``--group-metrics`` is a usage
    error naming the flag that computes it."""
    selection = options.selection
    per_group = bool(settings.get("per_group"))
    named = [(check.metric, per_group) for check in checks]
    if settings.get("sort_by"):
        named.append((settings["sort_by"].partition(":")[0], True))
    for metric, in_groups in named:
        families = catalog.families(metric)
        if in_groups and CI in families:  # --group-metrics ci is refused: no advice to add it
            raise UsageError(
                f"{metric}: bootstrap intervals are for the whole input only, so groups have "
                "none: no --per-group check or --sort-by can use it"
            )
        scope, flag = (
            (selection.groups, "--group-metrics") if in_groups else (selection.overall, "--metrics")
        )
        needed = [families]
        if CI in families:  # an interval, or a calibration difference, needs its metric's too
            needed.append(catalog.families(_measured(metric, catalog)))
        for computing in needed:
            if computing and not scope.intersection(computing):
                family = computing[0]
                advice = f"{flag} +{family}" if in_groups else f"add {family} to {flag}"
                raise UsageError(
                    f"{metric} is computed by the {family} metrics, which {flag} leaves out: "
                    + (f"add it with {advice}" if in_groups else advice)
                )


def _side_of(metric: str) -> str | None:
    """The model a compare check names (``baseline.coverage@0.9``: ``baseline``), None for a
    paired number (``delta_coverage@0.9``: the level's dot is no side's)."""
    side, dot, _ = metric.partition("@")[0].partition(".")
    return side if dot else None


def _measured(metric: str, catalog: Catalog) -> str:
    """The score metric that an interval's end or a calibration difference is of
    (``mace_ci_high``, ``delta_coverage_ci_low@0.9``: ``mace``, ``coverage@0.9``; in a
    comparison, the baseline's)."""
    name, at, level = metric.partition("@")
    name = name.removesuffix("_ci_low").removesuffix("_ci_high").removeprefix("delta_")
    return f"{'baseline.' if catalog is COMPARE_METRICS else ''}{name}{at}{level}"


def publish(
    report: Any,
    shown: Shown,
    output_format: str,
    files: PlannedOutputs,
    catalog: Catalog = SCORE_METRICS,
) -> int:
    """Print ``report`` on stdout in ``output_format``, write its files asked for (--html,
    --junit-xml), a line on stderr per failed check, and commit every output file once stdout
    holds the whole report; the exit code: 1 when a check failed (its outputs are written
    too), else 0."""
    to_stdout(output_format, report, shown)
    for label, file_format in ((HTML, formats.HTML), (JUNIT_XML, formats.JUNIT)):
        if label in files:
            files.write_text(label, text(file_format, report, shown))
    report_failures(shown.results, catalog, sys.stderr)
    sys.stdout.flush()  # a reader that closed stdout (exit 141) leaves no output file
    with signals_ignored():
        files.commit()
    return EXIT_CHECK_FAILED if any(not r.passed for r in shown.results) else 0


def score_options(settings: dict[str, Any], checks: list[Check]) -> ScoreOptions:
    """The core's options from resolved settings; levels named in checks or ``--sort-by`` are
    computed too."""
    sort_levels = metric_levels([(settings.get("sort_by") or "").partition(":")[0]])
    spreads = {
        kind: settings[f"{kind.value}_col"]
        for kind in Spread
        if settings[f"{kind.value}_col"] is not None
    }
    if len(spreads) > 1:
        flags = " and ".join(f"--{kind.value.replace('_', '-')}-col" for kind in spreads)
        raise UsageError(f"{flags} contradict each other: give the spread one way")
    ((kind, spread),) = spreads.items()  # resolve_settings gives one
    by, intervals = parse_by(settings.get("by", ()))
    samples = settings.get("samples")
    mean = _names(samples, "--samples") if samples else _names(settings["mean_col"], "--mean-col")
    columns = ColumnSpec(
        mean=mean,
        target=_names(settings["target_col"], "--target-col"),
        spread=_names(spread, f"--{kind.value.replace('_', '-')}-col"),
        spread_kind=kind,
        id=settings.get("id_col"),
        by=tuple(by),
        weight=settings.get("weight_col"),
        quantiles=_names(settings["quantile_cols"], "--quantile-cols")
        if settings.get("quantile_cols") is not None
        else (),
    )
    core = {key: value for name, value in settings.items() if (key := BY_NAME[name].core) in _CORE}
    levels = settings.get("levels", BY_NAME["levels"].default)
    core["levels"] = tuple(
        dict.fromkeys([*levels, *metric_levels(c.metric for c in checks), *sort_levels])
    )
    core["samples"] = bool(samples)
    core["ci"] = core.get("ci") if settings.get("ci") else None
    if settings.get("recalibration") is not None:
        core["recalibration"] = RecalibrationMap.load(settings["recalibration"])
    return ScoreOptions(columns=columns, intervals=intervals, **core)


_CORE = {field.name for field in dataclasses.fields(ScoreOptions)} - {
    "columns",
    "levels",
    "recalibration",
}


def parse_by(entries: Iterable[str]) -> tuple[list[str], dict[str, tuple[float, ...] | int]]:
    """``--by`` values as key columns and their intervals: ``region,x`` is a composite key,
    ``x:0,0.5,1`` breaks ``x`` down at those edges, ``x:q10`` into 10 quantile bins. A name
    whose text after its last ``:`` is neither an edge nor ``qK`` is a column name as it is."""
    names: list[str] = []
    intervals: dict[str, tuple[float, ...] | int] = {}
    for entry in entries:
        current: str | None = None
        for token in _names(entry, "--by"):
            edges = intervals.get(current) if current is not None else None
            if isinstance(edges, tuple) and _is_number(token):
                intervals[str(current)] = (*edges, float(token))
                continue
            name, _, spec = token.rpartition(":")
            name, spec = name.strip(), spec.strip()
            current = None
            if name and spec[:1] in ("q", "Q") and spec[1:].isdigit():
                intervals[name] = int(spec[1:])
            elif name and _is_number(spec):
                intervals[name], current = (float(spec),), name
            else:
                name = token
            names.append(name)
    return names, intervals


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(value: str, flag: str) -> tuple[str, ...]:
    """``"a, b"`` → ``("a", "b")``; an empty name is a usage error."""
    names = tuple(name.strip() for name in value.split(","))
    if not all(names):
        raise UsageError(f"{flag} must be column names separated by commas. Got {value!r}.")
    return names
