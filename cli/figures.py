"""The HTML report's figures, drawn from report numbers with matplotlib as inline SVG text.

matplotlib is imported when a figure is drawn, never on import of this module, so scoring
without ``--html`` does not load it. Figures are ``matplotlib.figure.Figure`` objects (no
pyplot: no global state, no GUI backend) saved by the SVG backend into a string buffer; the
XML prologue, DOCTYPE and metadata (which carry URLs) are dropped so the SVG can sit inside the
page with nothing but its namespace declarations.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

CURVE_POINTS = 100  # the report's calibration curve: expected levels linspace(0, 1, 100)
PANEL = (5.0, 3.9)  # inches: the page's main figures, two side by side
COLOURS = ("#1f5fa8", "#d9661f", "#2a9d55", "#8e44ad", "#b8860b", "#c0392b")
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SIZE = re.compile(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"')


def _figure(width: float, height: float) -> Any:
    """A new figure of ``width`` × ``height`` inches (matplotlib imported here, lazily)."""
    import matplotlib

    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9})
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg_text(figure: Any) -> str:
    """The figure as an ``<svg>`` element that scales with the page."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
    return _SIZE.sub(r'\1 width="100%"', svg, count=1)


def calibration_curves(
    curves: Sequence[tuple[str, Sequence[float]]],
    *,
    shade: bool,
    title: str = "Calibration",
    one_sided: Sequence[tuple[str, Sequence[float]]] = (),
) -> str:
    """Observed against expected proportion inside the central intervals, with the diagonal;
    ``shade``: fill the miscalibration area of the first curve; ``one_sided``: curves of the
    frequency at or below the τ-quantile, dotted (the i-th in the i-th curve's colour)."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    expected = [k / (CURVE_POINTS - 1) for k in range(CURVE_POINTS)]
    axes.plot([0, 1], [0, 1], color="#777777", linestyle="--", linewidth=1, label="ideal")
    for (label, observed), colour in zip(curves, COLOURS, strict=False):
        axes.plot(expected, observed, color=colour, linewidth=1.8, label=label)
    for (label, observed), colour in zip(one_sided, COLOURS, strict=False):
        axes.plot(expected, observed, color=colour, linewidth=1.8, linestyle=":", label=label)
    if shade and curves:
        observed = curves[0][1]
        axes.fill_between(expected, expected, observed, color=COLOURS[0], alpha=0.18, linewidth=0)
    axes.set(xlim=(0, 1), ylim=(0, 1), title=title, aspect="equal")
    axes.set_xlabel(
        "expected proportion: central level p (dotted: one-sided τ)"
        if one_sided
        else "expected proportion in the central interval"
    )
    axes.set_ylabel("observed proportion")
    axes.legend(loc="upper left", frameon=False)
    axes.grid(alpha=0.3)
    return svg_text(figure)


def pit_histograms(histograms: Sequence[tuple[str, Sequence[int]]]) -> str:
    """Counts of the PIT in equal bins, the uniform count ``n/bins`` and its binomial band
    ``± 2√(n p (1 - p))`` with ``p = 1/bins`` (the first histogram's ``n``)."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    _, first = histograms[0]
    bins = len(first)
    edges = [b / bins for b in range(bins + 1)]
    expected, spread = _uniform_band(axes, first)
    if len(histograms) == 1:
        axes.bar(edges[:-1], first, width=1 / bins, align="edge", color=COLOURS[0], alpha=0.75)
    else:
        for (label, counts), colour in zip(histograms, COLOURS, strict=False):
            axes.stairs(counts, edges, color=colour, linewidth=1.8, label=label)
    axes.set(xlim=(0, 1), title="PIT histogram", xlabel="PIT = Φ(z)", ylabel="count")
    tallest = max(max(counts, default=0) for _, counts in histograms)
    axes.set_ylim(0, 1.25 * max(tallest, expected + spread))  # room for the legend
    axes.legend(loc="upper center", frameon=False, ncols=2, fontsize=8)
    return svg_text(figure)


def rank_histogram(counts: Sequence[float]) -> str:
    """Elements per rank of the target among M draws (M + 1 bins), with the uniform count and
    its binomial band as for the PIT."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    expected, spread = _uniform_band(axes, counts)
    axes.bar(range(len(counts)), counts, width=1.0, color=COLOURS[0], alpha=0.75)
    axes.set(
        xlim=(-0.5, len(counts) - 0.5),
        title="Rank histogram",
        xlabel="rank of the target among the draws (0: below every draw)",
        ylabel="elements",
    )
    axes.set_ylim(0, 1.25 * max(max(counts, default=0), expected + spread))
    axes.legend(loc="upper center", frameon=False, ncols=2, fontsize=8)
    return svg_text(figure)


def level_calibration(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str
) -> str:
    """Observed against expected proportion at a model's own levels (``series``: label,
    levels, observed), markers joined by lines, with the diagonal."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#777777", linestyle="--", linewidth=1, label="ideal")
    for (label, levels, observed), colour in zip(series, COLOURS, strict=False):
        axes.plot(levels, observed, color=colour, marker="o", linewidth=1.6, label=label)
    axes.set(xlim=(0, 1), ylim=(0, 1), title=title, aspect="equal", xlabel=xlabel)
    axes.set_ylabel("observed proportion")
    axes.legend(loc="upper left", frameon=False)
    axes.grid(alpha=0.3)
    return svg_text(figure)


def _uniform_band(axes: Any, counts: Sequence[float]) -> tuple[float, float]:
    """Draw the count each of ``counts``' bins has when the ranks are uniform, ``n/bins``, and
    its band ``± 2√(n p (1 - p))`` with ``p = 1/bins``; return the two."""
    p = 1 / len(counts)
    n = sum(counts)
    expected, spread = n * p, 2 * math.sqrt(n * p * (1 - p))
    axes.axhspan(
        expected - spread,
        expected + spread,
        color="#999999",
        alpha=0.25,
        label="±2 s.d. (binomial)",
    )
    axes.axhline(expected, color="#555555", linestyle="--", linewidth=1, label="uniform")
    return expected, spread


def error_vs_uncertainty(series: Sequence[tuple[str, dict[str, list[float]]]]) -> str:
    """RMSE against RMV per σ bin (``uncertainty_bins``) on log axes, with the diagonal."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    values = [v for _, bins in series for v in (*bins["rmv"], *bins["rmse"]) if _positive_finite(v)]
    if values:
        low, high = min(values) / 1.5, max(values) * 1.5
        axes.plot(
            [low, high], [low, high], color="#777777", linestyle="--", linewidth=1, label="ideal"
        )
        axes.set(xlim=(low, high), ylim=(low, high))
    for (label, bins), colour in zip(series, COLOURS, strict=False):
        axes.plot(bins["rmv"], bins["rmse"], "o-", color=colour, markersize=4, label=label)
    axes.set(xscale="log", yscale="log", title="Error vs uncertainty")
    _plain_log_ticks(axes.xaxis)
    _plain_log_ticks(axes.yaxis)
    axes.set_xlabel("RMV: root mean predicted variance (per σ bin)")
    axes.set_ylabel("RMSE per σ bin")
    axes.legend(loc="upper left", frameon=False)
    axes.grid(alpha=0.3, which="both")
    return svg_text(figure)


def sigma_distribution(histogram: dict[str, list[float]], sharpness: float) -> str:
    """Counts of the predicted σ in the report's fine log bins (the open bins below 10^-12 and
    above 10^12 drawn as wide as their neighbours), and the sharpness ``√mean(v)``."""
    figure = _figure(*PANEL)
    axes = figure.add_subplot()
    edges, counts = list(histogram["edges"]), histogram["counts"]
    if counts:
        if edges[0] <= 0:
            edges[0] = edges[1] ** 2 / edges[2] if len(edges) > 2 else edges[1] / 10
        if math.isinf(edges[-1]):
            edges[-1] = edges[-2] ** 2 / edges[-3] if len(edges) > 2 else edges[-2] * 10
        axes.stairs(counts, edges, fill=True, color=COLOURS[0], alpha=0.75)
        axes.set_xscale("log")
        _plain_log_ticks(axes.xaxis)
        axes.set_ylim(0, 1.2 * max(counts))  # room for the legend
    if _positive_finite(sharpness):
        axes.axvline(sharpness, color=COLOURS[1], linewidth=1.5, label=f"sharpness {sharpness:.4g}")
        axes.legend(loc="upper left", frameon=False)
    axes.set(title="Predicted σ (sharpness)", xlabel="predicted σ = √var", ylabel="count")
    return svg_text(figure)


def group_curves(curves: Sequence[tuple[str, Sequence[float]]], columns: int = 3) -> str:
    """Small calibration curves, one per group, each with the diagonal."""
    rows = max(1, math.ceil(len(curves) / columns))
    figure = _figure(2.3 * columns, 2.3 * rows)
    expected = [k / (CURVE_POINTS - 1) for k in range(CURVE_POINTS)]
    for index, (label, observed) in enumerate(curves):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.plot([0, 1], [0, 1], color="#777777", linestyle="--", linewidth=0.8)
        axes.plot(expected, observed, color=COLOURS[0], linewidth=1.4)
        axes.fill_between(expected, expected, observed, color=COLOURS[0], alpha=0.18, linewidth=0)
        axes.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
        axes.set_title(_short(label), fontsize=8)
        axes.tick_params(labelsize=7)
    return svg_text(figure)


def paired_difference(
    delta: float, low: float, high: float, confidence: float, score: str = "NLL"
) -> str:
    """The mean per-row difference of a ``score`` with its confidence interval, against
    zero."""
    figure = _figure(5.4, 1.7)
    axes = figure.add_subplot()
    axes.axvline(0, color="#555555", linewidth=1)
    axes.errorbar(
        [delta], [0], xerr=[[delta - low], [high - delta]], fmt="o", color=COLOURS[1], capsize=6
    )
    axes.annotate(
        f"{delta:.4g}  [{low:.4g}, {high:.4g}]",
        (delta, 0),
        xytext=(0, 9),
        textcoords="offset points",
        ha="center",
        fontsize=8,
    )
    span = max(abs(low), abs(high), 1e-12) * 1.3
    axes.set(xlim=(-span, span), ylim=(-1, 1), yticks=[])
    axes.set_title(f"candidate - baseline, {confidence:.0%} interval", fontsize=9)
    axes.set_xlabel(f"mean per-row {score} difference (negative: the candidate is better)")
    return svg_text(figure)


def _plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks at 1, 2 and 5 per decade, labelled as plain numbers (0.2, not 2×10⁻¹)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _positive_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), as data is shown."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _short(label: str, width: int = 28) -> str:
    """A label short enough for a small panel's title, shown literally: control characters
    escaped, matplotlib's mathtext markers ($) too."""
    text = printable(label if len(label) <= width else label[: width - 1] + "…")
    return text.replace("$", r"\$")
