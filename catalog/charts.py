"""PNG charts of the catalog: spend over time, hours of audio per stem, quality distributions.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, safe in worker threads)
from an open catalog connection, and written atomically so a linked chart is never half a file.
matplotlib is imported only when a chart is drawn, after ``use_matplotlib_dir`` has pointed its
config and font cache at ``DATA_DIR/.matplotlib`` (a run writes nothing under ``~/.cache``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stemcat.catalog.atomic_files import replacing

if TYPE_CHECKING:
    import duckdb
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CHARTS_DIRNAME = "charts"
MATPLOTLIB_DIRNAME = ".matplotlib"
SPEND_CHART = "spend_over_time.png"
HOURS_CHART = "stem_hours.png"
QUALITY_CHART = "quality.png"

_TYPE_COLOURS = {"separate_vocal": "#1f77b4", "split_stem": "#ff7f0e", "all types": "#444444"}
_USABLE, _SILENT, _UNANALYSED = "#2ca02c", "#bbbbbb", "#9ecae1"
_DPI = 110
_SNR_AXIS_MAX_DB = 60.0


def use_matplotlib_dir(data_dir: Path) -> None:
    """Point matplotlib's config and font cache at ``DATA_DIR/.matplotlib`` for this process.

    Only before matplotlib's first import (it fixes both directories then) and only when the user
    has not chosen one with ``MPLCONFIGDIR``; a later data dir in the same process shares the first.
    """
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        return
    target = Path(data_dir).resolve() / MATPLOTLIB_DIRNAME
    target.mkdir(parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(target)


def write_charts(con: duckdb.DuckDBPyConnection, out_dir: Path, *, min_snr_db: float | None = None) -> list[Path]:
    """Write every chart into ``out_dir`` (created if needed); returns their paths.

    ``min_snr_db``, when given, is drawn as the low-SNR threshold on the reconstruction histogram.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = (
        (SPEND_CHART, _spend_figure(con)),
        (HOURS_CHART, _hours_figure(con)),
        (QUALITY_CHART, _quality_figure(con, min_snr_db)),
    )
    written = []
    for name, figure in figures:
        target = out_dir / name
        _save(figure, target)
        written.append(target)
    return written


def write_catalog_charts(data_dir: Path, out_dir: Path | None = None, *, min_snr_db: float | None = None) -> list[Path]:
    """Open the catalog of ``data_dir``, write its charts (default ``DATA_DIR/charts``), close it again."""
    from stemcat.catalog.duckdb_views import open_catalog

    use_matplotlib_dir(Path(data_dir))
    con = open_catalog(Path(data_dir))
    try:
        return write_charts(con, Path(out_dir) if out_dir is not None else Path(data_dir) / CHARTS_DIRNAME,
                            min_snr_db=min_snr_db)
    finally:
        con.close()


def _save(figure: Figure, target: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with replacing(target) as temp:
        figure.savefig(temp, format="png", dpi=_DPI)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _spend_figure(con: duckdb.DuckDBPyConnection) -> Figure:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    frame = con.execute(
        """SELECT make_timestamp(epoch_us("at")) AS at, separation_type, credits
           FROM spend ORDER BY "at", spend_id"""
    ).df()
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Cumulative credits committed over time, by separation type")
    if frame.empty:
        _no_data(ax, "no spend recorded yet")
        return figure
    series = [(str(t), group) for t, group in frame.groupby("separation_type", sort=True)]
    if len(series) > 1:
        series.append(("all types", frame))
    for label, group in series:
        times = pd.to_datetime(group["at"]).to_numpy()
        totals = group["credits"].cumsum().to_numpy()
        # Start each line at zero just before its first event, so a single event still draws a step.
        ax.step(np.concatenate([times[:1], times]), np.concatenate([[0], totals]), where="post",
                label=f"{label} ({int(totals[-1])} credits)", color=_TYPE_COLOURS.get(label),
                linestyle="--" if label == "all types" else "-")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("credits committed (cumulative)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return figure


def _hours_figure(con: duckdb.DuckDBPyConnection) -> Figure:
    from matplotlib.figure import Figure

    frame = con.execute(
        """SELECT stem,
                  COALESCE(SUM(duration_s) FILTER (WHERE NOT silent), 0) / 3600.0 AS usable_hours,
                  COALESCE(SUM(duration_s) FILTER (WHERE silent), 0) / 3600.0 AS silent_hours,
                  COALESCE(SUM(duration_s) FILTER (WHERE silent IS NULL), 0) / 3600.0 AS unanalysed_hours
           FROM stems WHERE status = 'downloaded'
           GROUP BY stem ORDER BY usable_hours + silent_hours + unanalysed_hours, stem"""
    ).df()
    figure = Figure(figsize=(8, max(3.0, 0.4 * len(frame) + 1.5)), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Hours of downloaded stem audio per stem (both separation types)")
    if frame.empty:
        _no_data(ax, "no stems downloaded yet")
        return figure
    left = np.zeros(len(frame))
    for column, colour, label in (("usable_hours", _USABLE, "usable (not silent)"),
                                  ("silent_hours", _SILENT, "silent"),
                                  ("unanalysed_hours", _UNANALYSED, "not analysed yet")):
        values = frame[column].to_numpy()
        if values.any():
            ax.barh(frame["stem"], values, left=left, color=colour, label=label)
        left += values
    ax.set_xlabel("hours of audio")
    ax.set_ylabel("stem")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def _quality_figure(con: duckdb.DuckDBPyConnection, min_snr_db: float | None) -> Figure:
    from matplotlib.figure import Figure

    stems = con.execute(
        "SELECT stem, lufs, peak_dbfs, silent FROM stems WHERE status = 'downloaded' AND silent IS NOT NULL"
    ).df()
    jobs = con.execute(
        "SELECT separation_type, reconstruction_snr_db AS snr, low_snr FROM jobs"
        " WHERE reconstruction_snr_db IS NOT NULL"
    ).df()
    figure = Figure(figsize=(11, 8), layout="constrained")
    figure.suptitle(f"Stem quality: {len(stems)} analysed stems, {len(jobs)} separations compared with their mix")
    lufs_ax, peak_ax, snr_ax, silent_ax = figure.subplots(2, 2).flat
    audible = stems[~stems["silent"].astype(bool)] if not stems.empty else stems
    _histogram(lufs_ax, audible["lufs"].dropna(), "Integrated loudness of non-silent stems",
               "loudness (LUFS, ITU-R BS.1770-4)", "#1f77b4")
    _histogram(peak_ax, audible["peak_dbfs"].dropna(), "Sample peak of non-silent stems", "sample peak (dBFS)",
               "#9467bd", marker=0.0, marker_label="full scale (0 dBFS)")
    _snr_histogram(snr_ax, jobs, min_snr_db)
    _silent_share(silent_ax, stems)
    return figure


def _histogram(ax: Axes, values: pd.Series, title: str, xlabel: str, colour: str, *,
               marker: float | None = None, marker_label: str = "") -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    if values.empty:
        _no_data(ax, "no analysed stems yet")
        return
    ax.hist(values, bins=min(40, max(5, len(values) // 3)), color=colour, edgecolor="white")
    if marker is not None:
        ax.axvline(marker, color="#d62728", linestyle="--", label=marker_label)
        ax.set_xlim(right=max(marker + 1.0, float(values.max()) + 1.0))
        ax.legend(loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("stems")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _snr_histogram(ax: Axes, jobs: pd.DataFrame, min_snr_db: float | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title("How well the stems add back up to the mix")
    if jobs.empty:
        _no_data(ax, "no separation compared with its mix yet")
        return
    # A stem that equals the mix (e.g. the instrumental of a song without vocals) reads as the 120 dB
    # ceiling; drawn where it is, it would squash every other bar into one.
    snr = jobs["snr"].clip(upper=_SNR_AXIS_MAX_DB)
    bins = np.histogram_bin_edges(snr, bins=min(30, max(5, len(jobs) // 2))).tolist()
    flagged = jobs["low_snr"].astype(bool)
    ax.hist([snr[~flagged], snr[flagged]], bins=bins, stacked=True, color=["#2ca02c", "#d62728"],
            label=[f"stems add up ({int((~flagged).sum())})", f"flagged low SNR ({int(flagged.sum())})"])
    if min_snr_db is not None:
        ax.axvline(min_snr_db, color="#d62728", linestyle="--", label=f"threshold ({min_snr_db:g} dB)")
    clipped = int((jobs["snr"] > _SNR_AXIS_MAX_DB).sum())
    note = f"; {clipped} above {_SNR_AXIS_MAX_DB:g} dB drawn at {_SNR_AXIS_MAX_DB:g}" if clipped else ""
    ax.set_xlabel(f"reconstruction SNR (dB{note})")
    ax.set_ylabel("separations")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")


def _silent_share(ax: Axes, stems: pd.DataFrame) -> None:
    ax.set_title("Share of stems that are silent, per stem")
    if stems.empty:
        _no_data(ax, "no analysed stems yet")
        return
    share = stems.assign(silent=stems["silent"].astype(bool)).groupby("stem")["silent"].agg(["mean", "size"])
    share = share.sort_values("mean")
    bars = ax.barh(share.index, share["mean"] * 100, color=_SILENT, edgecolor="#777777")
    ax.bar_label(bars, labels=[f"{m:.0%} of {n}" for m, n in zip(share["mean"], share["size"], strict=True)],
                 padding=3, fontsize=8)
    ax.set_xlim(0, 115)
    ax.set_xlabel("silent stems (%)")
    ax.set_ylabel("stem")
    ax.grid(axis="x", alpha=0.3)
