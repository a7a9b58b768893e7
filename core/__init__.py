"""gaussnll's library: the torch-exact loss, the streaming scorer and its report.

``gaussian_nll_loss`` / ``GaussianNLLLoss`` are drop-in replacements for torch's;
``gaussian_mixture_nll_loss`` is the NLL of a mixture over a member dimension; ``score``
streams a file, a table or tensor chunks through the same loss into a :class:`Report`;
``compare`` scores two models of the same targets. Names are imported on first use, so
importing ``gaussnll.core`` does not import torch or pyarrow; type checkers see them all.

Layers, each importing only those before it: ``options``/``families``/``errors``/``loss`` →
``io`` (files to chunks of tensors) → ``state`` (mergeable sums, one accumulator per metric
family) → ``report`` (reports, metric catalogue, checks) → ``run`` (scorer, engine,
comparison, the ``score`` API).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gaussnll.core.errors import (
        GaussnllError,
        InputError,
        NegativeSpreadError,
        OptionError,
        OutputError,
        UsageError,
        redacted,
    )
    from gaussnll.core.families import (
        CI,
        FAMILIES,
        GROUP_DEFAULT,
        QUANTILE_FAMILIES,
        SAMPLES,
        Selection,
        parse_names,
    )
    from gaussnll.core.io.outputs import PlannedOutputs
    from gaussnll.core.io.prefetch import prefetched
    from gaussnll.core.io.readers import scalar_columns
    from gaussnll.core.io.sources import FileFormat, Source, resolve_source
    from gaussnll.core.io.timeouts import DEFAULT_TIMEOUT_S, answer_timeout
    from gaussnll.core.io.writers import RowWriter, row_file_format
    from gaussnll.core.loss import GaussianNLLLoss, gaussian_nll_loss
    from gaussnll.core.mixture_loss import gaussian_mixture_nll_loss
    from gaussnll.core.options import (
        DEFAULT_CHUNK_ROWS,
        DEFAULT_CONFIDENCE,
        DEFAULT_EPS,
        DEFAULT_LEVELS,
        DEFAULT_PIT_BINS,
        ColumnSpec,
        ScoreOptions,
        Spread,
    )
    from gaussnll.core.recalibration import RecalibrationMap
    from gaussnll.core.report.catalogue import Catalog, CompareMetrics, Metric, ScoreMetrics
    from gaussnll.core.report.checks import (
        Check,
        CheckResult,
        GroupCheckResult,
        evaluate,
        evaluate_per_group,
        metric_levels,
        parse_checks,
    )
    from gaussnll.core.report.compare_report import (
        COMPARE_METRICS,
        PAIRED_SCORES,
        CompareReport,
        PairedSummary,
    )
    from gaussnll.core.report.fields import PerReport, Shared
    from gaussnll.core.report.recalibrate import fit_recalibration
    from gaussnll.core.report.report import (
        SCORE_METRICS,
        AccuracySummary,
        CalibrationSummary,
        GroupScore,
        IntervalsSummary,
        OutputScore,
        QuantilesSummary,
        Report,
    )
    from gaussnll.core.run.allocator import keep_freed_memory
    from gaussnll.core.run.api import ProgressCallback, merge, recalibrate, score
    from gaussnll.core.run.compare_plan import ComparisonPlan, plan_comparison
    from gaussnll.core.run.comparison import compare
    from gaussnll.core.run.distributed import score_on_dask
    from gaussnll.core.run.distributed_merge import merge_on_dask
    from gaussnll.core.run.executors import Executor, InProcess, OnDask
    from gaussnll.core.run.merging import (
        load_state,
        merge_state_files,
        merge_states,
        save_state,
        state_format,
    )
    from gaussnll.core.run.rescale import write_recalibrated
    from gaussnll.core.run.scorer import Scorer
    from gaussnll.core.state.score_state import ScoreState

_EXPORTS = {
    "AccuracySummary": "report.report",
    "COMPARE_METRICS": "report.compare_report",
    "PAIRED_SCORES": "report.compare_report",
    "CalibrationSummary": "report.report",
    "IntervalsSummary": "report.report",
    "Catalog": "report.catalogue",
    "Check": "report.checks",
    "CheckResult": "report.checks",
    "ColumnSpec": "options",
    "CompareMetrics": "report.catalogue",
    "CompareReport": "report.compare_report",
    "DEFAULT_CHUNK_ROWS": "options",
    "DEFAULT_CONFIDENCE": "options",
    "DEFAULT_EPS": "options",
    "DEFAULT_LEVELS": "options",
    "DEFAULT_PIT_BINS": "options",
    "DEFAULT_TIMEOUT_S": "io.timeouts",
    "CI": "families",
    "FAMILIES": "families",
    "GROUP_DEFAULT": "families",
    "QUANTILE_FAMILIES": "families",
    "SAMPLES": "families",
    "Selection": "families",
    "parse_names": "families",
    "FileFormat": "io.sources",
    "GaussianNLLLoss": "loss",
    "GaussnllError": "errors",
    "GroupCheckResult": "report.checks",
    "GroupScore": "report.report",
    "PerReport": "report.fields",
    "Shared": "report.fields",
    "InputError": "errors",
    "Metric": "report.catalogue",
    "NegativeSpreadError": "errors",
    "OptionError": "errors",
    "OutputError": "errors",
    "OutputScore": "report.report",
    "PairedSummary": "report.compare_report",
    "PlannedOutputs": "io.outputs",
    "prefetched": "io.prefetch",
    "QuantilesSummary": "report.report",
    "ProgressCallback": "run.api",
    "RecalibrationMap": "recalibration",
    "Report": "report.report",
    "RowWriter": "io.writers",
    "SCORE_METRICS": "report.report",
    "ScoreMetrics": "report.catalogue",
    "ScoreOptions": "options",
    "ScoreState": "state.score_state",
    "Source": "io.sources",
    "Scorer": "run.scorer",
    "Spread": "options",
    "UsageError": "errors",
    "answer_timeout": "io.timeouts",
    "compare": "run.comparison",
    "ComparisonPlan": "run.compare_plan",
    "plan_comparison": "run.compare_plan",
    "evaluate": "report.checks",
    "evaluate_per_group": "report.checks",
    "fit_recalibration": "report.recalibrate",
    "gaussian_mixture_nll_loss": "mixture_loss",
    "gaussian_nll_loss": "loss",
    "keep_freed_memory": "run.allocator",
    "load_state": "run.merging",
    "merge": "run.api",
    "merge_on_dask": "run.distributed_merge",
    "merge_state_files": "run.merging",
    "merge_states": "run.merging",
    "metric_levels": "report.checks",
    "parse_checks": "report.checks",
    "recalibrate": "run.api",
    "redacted": "errors",
    "resolve_source": "io.sources",
    "row_file_format": "io.writers",
    "save_state": "run.merging",
    "scalar_columns": "io.readers",
    "score": "run.api",
    "score_on_dask": "run.distributed",
    "Executor": "run.executors",
    "InProcess": "run.executors",
    "OnDask": "run.executors",
    "state_format": "run.merging",
    "write_recalibrated": "run.rescale",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gaussnll.core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gaussnll.core.{module}"), name)


def __dir__() -> list[str]:
    return __all__
