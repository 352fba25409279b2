"""The equity-curve picture (``tradeguard report --plot FILE``), drawn with matplotlib.

matplotlib is the optional extra ``plot`` (``pip install 'tradeguard[plot]'``).
The figure is drawn off-screen (Agg), without pyplot's global state, so it is
safe in a bot's process. Floats appear only here, for drawing.
"""

from __future__ import annotations

import os
from typing import Any

from tradeguard.errors import ValidationError

DEFAULT_SIZE = (1200, 700)
DPI = 100


def parse_size(text: str) -> tuple[int, int]:
    """``1200x700`` -> (1200, 700); sizes from 200 to 8000 pixels."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValidationError(f"--plot-size: expected WIDTHxHEIGHT in pixels such as 1200x700, got {text!r}") from None
    if not (200 <= width <= 8000 and 200 <= height <= 8000):
        raise ValidationError(f"--plot-size: each side must be 200 to 8000 pixels, got {text!r}")
    return width, height


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ValidationError("--plot needs matplotlib: pip install 'tradeguard[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_equity(report: Any, path: str | os.PathLike[str], size: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Draw *report*'s equity curve to a PNG at *path*: the equity line, fills marked
    (buys ▲, sells ▼), drawdown from the running peak shaded, and the drawdown below."""
    Figure, FigureCanvasAgg = _matplotlib()
    curve = report.curve
    times = [p.at for p in curve]
    equity = [float(p.equity) for p in curve]
    adjusted = [float(p.adjusted) for p in curve]
    peaks, peak = [], float("-inf")
    for value in adjusted:
        peak = max(peak, value)
        peaks.append(peak)
    drawdown = [p - a for p, a in zip(peaks, adjusted)]

    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    summary = report.summary
    top.set_title(f"{summary['account']}: equity ({summary['quote_currency']})")
    top.plot(times, equity, color="#1f77b4", linewidth=1.5, label="equity", drawstyle="steps-post")
    top.fill_between(times, equity, [e + d for e, d in zip(equity, drawdown)], step="post", color="#d62728",
                     alpha=0.2, label="drawdown")
    for side, marker, color in (("buy", "^", "#2ca02c"), ("sell", "v", "#d62728")):
        points = [(p.at, float(p.equity)) for p in curve if p.kind == "fill" and p.side == side]
        if points:
            top.scatter([t for t, _ in points], [e for _, e in points], marker=marker, color=color, zorder=3,
                        label=f"{side} fills")
    top.legend(loc="best")
    top.grid(True, alpha=0.3)
    bottom.fill_between(times, [-d for d in drawdown], 0, step="post", color="#d62728", alpha=0.4)
    bottom.set_ylabel("drawdown")
    bottom.grid(True, alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(os.fspath(path), format="png", dpi=DPI)
