"""Charts for the reports, drawn by matplotlib into SVG that the HTML inlines (no scripts, no files beside it).

Figures are built with matplotlib.figure.Figure, not pyplot: no GUI backend, no global figure list to leak.
Text stays text (svg.fonttype none: searchable, small) and is escaped by matplotlib's SVG writer; mathtext is
off so a model named "$x$" is drawn as typed instead of failing to parse.
"""

from __future__ import annotations

import io
import math
import re
import statistics
from collections.abc import Sequence

import matplotlib
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False}
RUN, BASELINE, BAD = "#1a73e8", "#9aa0a6", "#c5221f"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # not allowed in XML: would make the SVG invalid


def label(text: str) -> str:
    """Untrusted text as a chart label: control characters out, long names cut."""
    text = _CONTROL.sub("?", str(text))
    return text if len(text) <= 60 else text[:57] + "..."


def human(value: float) -> str:
    """12,345 → 12.3k: tick and bar labels that stay short from 0.5 ms to 350k tok/s."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _axis(ax: Axes, which: str, values: Sequence[float]) -> None:
    """Plain tick labels (mathtext is off, so matplotlib's log labels would show raw TeX), and a log scale
    when the values span more than 50×: a tiny and a full model side by side."""
    axis = getattr(ax, f"{which}axis")
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 50:
        getattr(ax, f"set_{which}scale")("log")
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))


def _svg(fig: Figure) -> Markup:
    """The figure as an <svg> element, safe to inline: matplotlib escapes every text it writes."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    return Markup(svg[svg.index("<svg"):])  # drop the XML prolog and DOCTYPE: not allowed inside HTML


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def speed_bars(labels: Sequence[str], panels: dict[str, tuple[list, list | None]]) -> Markup:
    """Grouped horizontal bars, one panel per metric: this run and, when given, the baseline, per cell.

    panels: title → (this run's bars, the baseline's bars or None); a bar is (median, low, high) or None."""
    n = max(len(labels), 1)
    with matplotlib.rc_context(_RC):
        fig = _figure(11, 1.2 + 0.38 * n * (2 if any(b for _, b in panels.values()) else 1))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, (run, base)) in zip(axes, panels.items(), strict=True):
            height = 0.4 if base else 0.7
            series = [("this run", run, RUN, 0.0)] + ([("baseline", base, BASELINE, height)] if base else [])
            for name, bars, colour, offset in series:
                ys = [i + offset for i, b in enumerate(bars) if b]
                medians = [b[0] for b in bars if b]
                errors = [[max(b[0] - b[1], 0) for b in bars if b], [max(b[2] - b[0], 0) for b in bars if b]]
                drawn = ax.barh(ys, medians, height=height, color=colour, label=name, xerr=errors,
                                error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})
                ax.bar_label(drawn, labels=[human(m) for m in medians], padding=3, fontsize=7)
            _axis(ax, "x", [b[0] for bars in (run, base or []) for b in bars if b])
            ax.margins(x=0.15)  # room for the value labels
            ax.set_title(label(title))
            ax.grid(axis="x", alpha=0.3)
            ax.set_yticks([i + (height / 2 if base else 0) for i in range(len(labels))], [label(x) for x in labels])
            ax.invert_yaxis()
        axes[0].legend(loc="lower right", fontsize=8)
    return _svg(fig)


def runtime_bars(groups: Sequence[str], runtimes: Sequence[str], panels: dict[str, dict[str, list]]) -> Markup:
    """Grouped horizontal bars, one panel per metric: per model · quant · device · workload, one bar per runtime.

    panels: title → runtime → one median (or None: that runtime did not measure the group) per group."""
    n, k = max(len(groups), 1), max(len(runtimes), 1)
    height = 0.8 / k
    colours = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(_RC):
        fig = _figure(11, 1.2 + 0.3 * n * k)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, series) in zip(axes, panels.items(), strict=True):
            values = []
            for j, runtime in enumerate(runtimes):
                bars = series.get(runtime, [])
                ys = [i + j * height for i, b in enumerate(bars) if b is not None]
                medians = [b for b in bars if b is not None]
                values += medians
                drawn = ax.barh(ys, medians, height=height, color=colours(j % 10), label=label(runtime))
                ax.bar_label(drawn, labels=[human(m) for m in medians], padding=3, fontsize=7)
            _axis(ax, "x", values)
            ax.margins(x=0.15)
            ax.set_title(label(title))
            ax.grid(axis="x", alpha=0.3)
            ax.set_yticks([i + height * (k - 1) / 2 for i in range(len(groups))], [label(g) for g in groups])
            ax.invert_yaxis()
        axes[0].legend(loc="lower right", fontsize=8)
    return _svg(fig)


def op_share_bars(bars: Sequence[str], shares: dict[str, list[float]]) -> Markup:
    """Stacked horizontal bars of shares (0–1): one bar per cell · phase, one segment per op type, in the order
    `shares` lists them (the largest first; the caller folds the rest into one).

    shares: op type → its share in each bar (0 where a bar has none of it)."""
    n = max(len(bars), 1)
    colours = matplotlib.colormaps["tab20"]
    with matplotlib.rc_context(_RC):
        fig = _figure(11, 1.4 + 0.32 * n + 0.18 * math.ceil(len(shares) / 3))
        ax = fig.subplots()
        left = [0.0] * len(bars)
        for i, (name, values) in enumerate(shares.items()):
            colour = "#dadce0" if i == len(shares) - 1 and name == "other" else colours(i % 20)
            ax.barh(range(len(bars)), [100 * v for v in values], left=left, height=0.7, color=colour,
                    label=label(name), edgecolor="white", linewidth=0.4)
            left = [lo + 100 * v for lo, v in zip(left, values, strict=True)]
        ax.set_yticks(range(len(bars)), [label(b) for b in bars])
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of the phase's profiled time (%)")
        ax.grid(axis="x", alpha=0.3)
        fig.legend(loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return _svg(fig)


def memory_vs_speed(points: Sequence[dict]) -> Markup:
    """Peak memory (x) against decode speed (y), one point per cell: colour per quant, marker per device."""
    quants = sorted({p["quant"] for p in points})
    devices = sorted({p["device"] for p in points})
    markers = "osD^vP*X"
    with matplotlib.rc_context(_RC):
        fig = _figure(8, 4.5)
        ax = fig.subplots()
        colours = matplotlib.colormaps["tab10"]
        for p in points:
            ax.scatter(p["x"], p["y"], s=48, color=colours(quants.index(p["quant"]) % 10),
                       marker=markers[devices.index(p["device"]) % len(markers)], edgecolor="#222", linewidth=0.5)
            ax.annotate(label(p["text"]), (p["x"], p["y"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
        _axis(ax, "x", [p["x"] for p in points])
        _axis(ax, "y", [p["y"] for p in points])
        handles = [ax.scatter([], [], color=colours(i % 10), marker="o", label=label(q)) for i, q in enumerate(quants)]
        handles += [ax.scatter([], [], color="#fff", edgecolor="#222", marker=markers[i % len(markers)],
                               label=label(d)) for i, d in enumerate(devices)]
        ax.legend(handles=handles, fontsize=7, loc="best")
        ax.set_xlabel("peak RSS (MB)")
        ax.set_ylabel("decode tok/s (median)")
        ax.grid(alpha=0.3)
    return _svg(fig)


def trends(title: str, panels: dict[str, list[dict]]) -> Markup:
    """Small multiples over runs, one panel per metric; in each, one line per workload with its spread band
    and its regressions marked. panels: metric title → lines {"name", "x", "y", "low", "high", "regressions"}."""
    with matplotlib.rc_context(_RC):
        fig = _figure(11, 5.2)
        fig.suptitle(label(title), fontsize=10)
        axes = fig.subplots(2, math.ceil(len(panels) / 2), squeeze=False).ravel()
        colours = matplotlib.colormaps["tab10"]
        for ax, (metric, lines) in zip(axes, panels.items(), strict=False):
            legend_bad = "regression"  # one legend entry for the markers of all lines
            for i, line in enumerate(lines):
                colour = colours(i % 10)
                ax.plot(line["x"], line["y"], marker="o", markersize=3, color=colour, label=label(line["name"]))
                band = [(x, lo, hi) for x, lo, hi in zip(line["x"], line["low"], line["high"], strict=True)
                        if lo is not None and hi is not None]
                if band:
                    xs, lows, highs = zip(*band, strict=True)
                    ax.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
                marked = [(x, y) for x, y, r in zip(line["x"], line["y"], line["regressions"], strict=True) if r]
                if marked:
                    ax.scatter(*zip(*marked, strict=True), marker="v", s=60, color=BAD, zorder=3, label=legend_bad)
                    legend_bad = None
            ys = [y for line in lines for key in ("y", "low", "high") for y in line[key] if y is not None]
            runs = sorted({x for line in lines for x in line["x"]})
            ax.set_title(label(metric))
            _axis(ax, "y", ys)
            if ys and max(ys) - min(ys) < 0.1 * abs(statistics.fmean(ys)):  # a flat line should look flat
                middle = (max(ys) + min(ys)) / 2
                ax.set_ylim(middle - 0.05 * abs(middle), middle + 0.05 * abs(middle))
            ax.set_xlabel("run")
            if len(runs) <= 12:  # every run named; more get matplotlib's integer ticks
                ax.set_xticks(runs)
            else:
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            if lines:
                ax.legend(fontsize=7)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
    return _svg(fig)
