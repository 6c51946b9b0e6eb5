"""Figures: the FID-CLIP trade-off of a table, and training curves from a run's own log.

Every figure is built by a function that returns the matplotlib ``Figure`` (``tradeoff_figure``,
``training_curves_figure``: for tests and notebooks) and written by one that saves it (``plot_tradeoff``,
``plot_training_curves``) through ``figstyle.save_figure``: PNG at 300 dpi and SVG, reproducible bytes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from sidbench.core import logkeys
from sidbench.core.errors import SidbenchError
from sidbench.report import figstyle
from sidbench.report.tables import ReportTable, _to_float, guidance_value


# ----------------------------------------------------------------------------------------------- plots

def _save(fig, out_stem: str | Path) -> list[Path]:
    """Write out_stem.png (300 dpi) and out_stem.svg atomically, with no timestamps (reproducible files)."""
    return figstyle.save_figure(fig, out_stem)


# Metric columns, read defensively. The table's own list of value columns (``ReportTable.columns``:
# key, title, network) when it has one: FID (``fid``, Inception v3) and one ``fd_<network>`` column per other
# network, titled ``FD (<network>)``. Without it, columns by name: ``fid``, else names like an FD
# ("FD (world-cnn)", "fd_world-cnn"). Never a delta, a best-flag, a KID/KD, the per-row ``fd`` (it mixes
# networks) or ``fd_network`` (a name). CLIP: ``clip``, else a "CLIP ..." column, else ``adherence``.
_FD_NAME = re.compile(r"^\s*(fid|fd)(?![a-z])", re.I)
_CLIP_NAME = re.compile(r"^\s*clip(?![a-z])", re.I)
_NOT_A_METRIC = re.compile(r"delta|Δ|best|kid|\bkd|x1000|×10|network", re.I)
_NOT_AN_AXIS = ("fd", "fd_network")
_NET_COLUMNS = ("fid_extractor", "fd_extractor", "fid_net", "fd_net", "extractor", "feature_net")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "p", "*")


def _has_values(rows: pd.DataFrame, c: str) -> bool:
    return c in rows.columns and pd.to_numeric(rows[c], errors="coerce").notna().any()


def _pretty_fd(col: str, rows: pd.DataFrame) -> str:
    """'fid' -> FID (or 'FD (net)' when the rows name a non-Inception net); 'fd_world-cnn' -> 'FD (world-cnn)'."""
    if col.lower() == "fid":
        for c in _NET_COLUMNS:
            if c in rows.columns:
                nets = sorted({str(v) for v in rows[c].dropna()})
                if nets and not all("inception" in n.lower() for n in nets):
                    return f"FD ({', '.join(nets)})"
        return "FID"
    m = re.match(r"^\s*(fid|fd)[\s_:-]+\(?([^()]+?)\)?\s*$", col, re.I)
    if m:
        return f"{m.group(1).upper()} ({m.group(2)})"
    return col


def _fd_columns(rows: pd.DataFrame, columns=None) -> list[tuple[str, str]]:
    """Every FD-like column of the table with values, as (key, axis name), FID first."""
    out = []
    for c in columns or ():                   # the table's own list (ReportTable.columns), when it has one
        key, title = getattr(c, "key", None), getattr(c, "title", None)
        if (isinstance(key, str) and (key == "fid" or key.startswith("fd_")) and key not in _NOT_AN_AXIS
                and getattr(c, "lower_is_better", True) and _has_values(rows, key)):
            out.append((key, _pretty_fd(key, rows) if key == "fid" else (title or _pretty_fd(key, rows))))
    # Then any other column named like one (a table without that list, or one the list does not name).
    have = {k for k, _ in out}
    cands = [c for c in rows.columns if isinstance(c, str) and _FD_NAME.match(c) and c not in _NOT_AN_AXIS
             and c not in have and not _NOT_A_METRIC.search(c) and _has_values(rows, c)]
    cands.sort(key=lambda c: (c.lower() != "fid", -pd.to_numeric(rows[c], errors="coerce").notna().sum()))
    return out + [(c, _pretty_fd(c, rows)) for c in cands]


def _clip_column(rows: pd.DataFrame) -> str | None:
    if _has_values(rows, "clip"):
        return "clip"
    cands = [c for c in rows.columns if isinstance(c, str) and _CLIP_NAME.match(c) and not _NOT_A_METRIC.search(c)
             and _has_values(rows, c)]
    return cands[0] if cands else ("adherence" if _has_values(rows, "adherence") else None)


def tradeoff_metrics(rows: pd.DataFrame, x: str | None = None, y: str | None = None, *,
                     columns=None) -> tuple[str, str, str, str]:
    """The first pair of columns the trade-off plots, and their axis names: (x column, x name, y column, y name).

    x: ``x`` if given, else ``fid``, else an ``fd_<network>`` / ``FD (<network>)`` column (the table's
    ``columns`` name them, when given); y: ``y``, else ``clip``, else a ``CLIP ...`` column, else
    ``adherence``. ``tradeoff_panels`` gives every pair (one panel per protocol and FD network).
    """
    if x is not None:
        if x not in rows.columns:
            raise SidbenchError(f"no column {x!r} in the table (columns: {', '.join(map(str, rows.columns))})")
        xs = [(x, _pretty_fd(x, rows) if _FD_NAME.match(x) else x)]
    else:
        xs = _fd_columns(rows, columns)
    if not xs:
        raise SidbenchError(f"no FD/FID column in the table (columns: {', '.join(map(str, rows.columns))})")
    ycol = y or _clip_column(rows)
    if ycol is None or ycol not in rows.columns:
        raise SidbenchError(f"no CLIP column in the table (columns: {', '.join(map(str, rows.columns))})")
    yname = "CLIP score" if ycol.lower() == "clip" else ycol
    return xs[0][0], xs[0][1], ycol, yname


def tradeoff_panels(table: ReportTable, x: str | None = None, y: str | None = None) -> list[dict]:
    """The panels of the trade-off: one per protocol and FD network that has rows with both values.

    Each is a dict: ``protocol``, ``x`` / ``x_name`` (``fid`` / FID, or ``fd_<network>`` / FD (<network>)),
    ``y`` / ``y_name``, ``rows`` (those rows, with ``plot_x``, ``plot_y``, ``plot_g`` the guidance value).
    Values of two protocols, or of two networks, never share an axis. Empty: nothing to plot.
    """
    rows = table.rows
    if rows.empty:
        return []
    columns = getattr(table, "columns", None)
    if x is None and y is None and (not _fd_columns(rows, columns) or _clip_column(rows) is None):
        return []  # nothing both a distance and a CLIP/adherence score: no plot (named axes still error)
    _, _, ycol, yname = tradeoff_metrics(rows, x, y, columns=columns)
    xs = [(x, tradeoff_metrics(rows, x, y)[1])] if x is not None else _fd_columns(rows, columns)
    protocols = (list(dict.fromkeys(rows["protocol"].fillna(str(table.protocol))))
                 if "protocol" in rows.columns else [table.protocol])
    panels = []
    for proto in protocols:
        part = rows[rows["protocol"].fillna(str(table.protocol)) == proto] if "protocol" in rows.columns else rows
        for xcol, xname in xs:
            r = part.assign(plot_x=pd.to_numeric(part[xcol], errors="coerce"),
                            plot_y=pd.to_numeric(part[ycol], errors="coerce"))
            r = r.dropna(subset=["plot_x", "plot_y"])
            if len(r):
                panels.append({"protocol": proto, "x": xcol, "x_name": xname, "y": ycol, "y_name": yname,
                               "rows": r.assign(plot_g=r["guidance"].map(guidance_value))})
    return panels


def _guidance_tag(guidance) -> str:
    if not isinstance(guidance, str) or not guidance.strip():
        return ""
    return guidance.strip().replace("LSG ", "")


def _flag(rows: pd.DataFrame, col: str, default: bool) -> pd.Series:
    return rows[col].fillna(default).astype(bool) if col in rows.columns else pd.Series(default, index=rows.index)


def tradeoff_joins(rows: pd.DataFrame) -> list[list[int]]:
    """The rows each line of the trade-off joins, as lists of row index in guidance order.

    A line joins only rows that differ in guidance alone: same protocol, ours/published, comparable or not,
    method, teacher, steps and kimg (an unrecorded kimg is a value of its own). Reference rows (the data),
    rows whose guidance has no number, and rows whose guidance value repeats within such a set are points only.
    """
    r = rows[~_flag(rows, "reference", False)]
    r = r.assign(_g=r["guidance"].map(guidance_value), _t=r["teacher"].fillna(""), _s=r["steps"].fillna(-1.0),
                 _k=pd.to_numeric(r["kimg"], errors="coerce").fillna(-1.0), _c=_flag(r, "comparable", True),
                 _p=r["protocol"].fillna("") if "protocol" in r.columns else "")
    joins = []
    for _, g in r.groupby(["_p", "ours", "_c", "method", "_t", "_s", "_k"], sort=False, dropna=False):
        g = g.dropna(subset=["_g"])
        g = g[~g["_g"].duplicated(keep=False)].sort_values("_g", kind="stable")
        if len(g) > 1:
            joins.append(list(g.index))
    return joins


def _series_key(row) -> tuple:
    steps = row["steps"] if not pd.isna(row["steps"]) else -1.0
    teacher = row["teacher"] if isinstance(row["teacher"], str) else ""
    comparable = bool(row["comparable"]) if "comparable" in row and not pd.isna(row["comparable"]) else True
    return bool(row["ours"]), str(row["method"]), teacher, float(steps), comparable


def _series_name(key: tuple) -> str:
    ours, method, teacher, steps, comparable = key
    name = f"{'ours: ' if ours else ''}{method}" + (f" ({teacher})" if teacher and teacher not in method else "")
    if steps > 1:
        name += f", {steps:g} steps"
    return name + ("" if comparable else " † (not comparable)")


def tradeoff_figure(table: ReportTable, *, x: str | None = None, y: str | None = None):
    """The FID-CLIP trade-off as a ``Figure`` (one panel per protocol and FD network): see ``plot_tradeoff``."""
    import math

    from matplotlib.lines import Line2D

    panels = tradeoff_panels(table, x, y)
    if not panels:
        raise SidbenchError("no row has both an FD/FID and a CLIP score: nothing to plot in the trade-off")
    allrows = pd.concat([p["rows"] for p in panels])
    scale = figstyle.GuidanceScale(allrows["plot_g"])
    methods = ~_flag(allrows, "reference", False)
    series = list(dict.fromkeys(_series_key(r) for _, r in allrows[methods].iterrows()))
    marker_of = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(series)}
    n = len(panels)
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    with figstyle.style():
        fig = figstyle.new_figure(6.6 if ncols == 1 else 10.0, 4.0 * nrows + 1.0)
        axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
        handles, seen, joined, refs = [], set(), set(), []
        pending = []
        for ax, panel in zip(axes, panels):
            r = panel["rows"]
            is_ref = _flag(r, "reference", False)
            for _, ref in r[is_ref].iterrows():              # the data itself: a floor, not a method
                ax.axvline(ref["plot_x"], color="tab:green", ls=":", lw=1.2, zorder=0)
                if ref["label"] not in refs:
                    refs.append(ref["label"])
            m = r[~is_ref]
            labels, lx, ly = [], [], []
            for key in dict.fromkeys(_series_key(row) for _, row in m.iterrows()):
                g = m[[_series_key(row) == key for _, row in m.iterrows()]]
                ours = key[0]
                colours = [scale.colour(v) for v in g["plot_g"]]
                ax.scatter(g["plot_x"], g["plot_y"], s=(46 if ours else 38), marker=marker_of[key], zorder=3,
                           linewidths=1.3, facecolors=(colours if ours else "white"), edgecolors=colours)
                if key not in seen:
                    seen.add(key)
                    handles.append(Line2D([], [], ls="none", marker=marker_of[key], ms=6.5, mew=1.3, color="0.25",
                                          mfc=("0.25" if ours else "white"), label=_series_name(key)))
                several_kimg = g["kimg"].fillna(-1.0).nunique() > 1
                for _, row in g.iterrows():
                    tag = _guidance_tag(row["guidance"])
                    if several_kimg and not pd.isna(row["kimg"]):   # which training length, where it differs
                        tag = f"{tag}, {row['kimg']:g} kimg" if tag else f"{row['kimg']:g} kimg"
                    if tag:
                        labels.append(tag)
                        lx.append(row["plot_x"])
                        ly.append(row["plot_y"])
            for idx in tradeoff_joins(m):
                line = m.loc[idx]
                ours = bool(line["ours"].iloc[0])
                joined.add(ours)
                ax.plot(line["plot_x"], line["plot_y"], "-" if ours else "--", color="0.35" if ours else "0.6",
                        lw=1.0, zorder=1, gid="join")
            ax.set_xlabel(f"{panel['x_name']} (lower is better)")
            ax.set_ylabel(f"{panel['y_name']} (higher is better)")
            ax.set_title(f"{panel['x_name']}–{panel['y_name']} trade-off, protocol {panel['protocol']}")
            ax.margins(x=0.1, y=0.1)
            pending.append((ax, lx, ly, labels))
        for ours in sorted(joined, reverse=True):
            handles.append(Line2D([], [], color="0.35" if ours else "0.6", ls="-" if ours else "--", lw=1.0,
                                  label=f"{'ours' if ours else 'published'}: guidance varied at one method, "
                                        f"teacher, steps and kimg"))
        unguided = allrows[methods & allrows["plot_g"].isna()]
        if len(unguided) and len(scale.values):
            fill = figstyle.NO_GUIDANCE if unguided["ours"].astype(bool).any() else "white"
            handles.append(Line2D([], [], ls="none", marker="o", ms=6, mew=1.3, color=figstyle.NO_GUIDANCE,
                                  mfc=fill, label="grey: guidance not recorded"))
        for label in refs:
            handles.append(Line2D([], [], color="tab:green", ls=":", lw=1.2, label=f"reference (the data): {label}"))
        scale.colorbar(fig, axes, "guidance scale (LSG k or cfg)", fraction=0.05 if n == 1 else 0.03)
        fig.legend(handles=handles, loc="outside lower center", ncols=2, handlelength=1.6, columnspacing=1.2)
        figstyle.freeze_layout(fig)
        for ax, lx, ly, labels in pending:
            if labels:
                figstyle.place_labels(ax, lx, ly, labels, fontsize=6.5)
    return fig


def plot_tradeoff(table: ReportTable, out_stem: str | Path, *, x: str | None = None,
                  y: str | None = None) -> list[Path]:
    """FID (x) against CLIP (y); writes ``out_stem.png`` (300 dpi) and ``out_stem.svg``, returns both paths.

    One panel per protocol and per FD network (``tradeoff_panels``): values of two protocols, or FID next
    to an FD on another network, never share an axis. Marker shape: method, teacher and steps (legend);
    filled: ours, hollow: published; † in the legend: not comparable. Colour: the guidance value (LSG k or
    cfg; colour bar; grey where none is recorded). A line joins only rows that differ in guidance alone
    (``tradeoff_joins``). Reference rows (the data) are dotted green vertical lines. Labels give the
    guidance, and the kimg where a series has several training lengths; they are placed not to collide and
    inside the axes. The metric columns are found by ``tradeoff_metrics`` (``x``/``y`` name them).
    """
    return _save(tradeoff_figure(table, x=x, y=y), out_stem)


def read_training_log(log_jsonl: str | Path) -> pd.DataFrame:
    """Parse a distillation run's ``log.jsonl`` into a DataFrame (kimg, fid, clip) sorted by kimg.

    The keys are the trainer's own (``sidbench.core.logkeys``): ``kimg``, ``proxy_fid``, ``proxy_clip``.
    """
    path = Path(log_jsonl)
    if not path.is_file():
        raise SidbenchError(f"training log {path} does not exist")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SidbenchError(f"{path}, line {n}: not JSON ({e})") from None
        if not isinstance(rec, dict) or _to_float(rec.get(logkeys.KIMG)) is None:
            raise SidbenchError(f"{path}, line {n}: every record needs a numeric '{logkeys.KIMG}'")
        rows.append({"kimg": float(rec[logkeys.KIMG]), "fid": _to_float(rec.get(logkeys.PROXY_FID)),
                     "clip": _to_float(rec.get(logkeys.PROXY_CLIP))})
    df = pd.DataFrame(rows, columns=["kimg", "fid", "clip"]).astype("float64")
    if df[["fid", "clip"]].isna().all().all():
        raise SidbenchError(f"{path}: no record has '{logkeys.PROXY_FID}' or '{logkeys.PROXY_CLIP}' (the trainer "
                            f"writes them with --proxy-every N); nothing to plot")
    return df.sort_values("kimg", kind="stable").reset_index(drop=True)


def training_curves_figure(log_jsonl: str | Path, *, title: str | None = None):
    """Proxy FID and proxy CLIP over training length as a ``Figure``: see ``plot_training_curves``."""
    df = read_training_log(log_jsonl)
    run = Path(log_jsonl).resolve().parent.name or Path(log_jsonl).name
    with figstyle.style():
        fig = figstyle.new_figure(7.0, 3.0)
        axes = fig.subplots(1, 2)
        spec = ((axes[0], "fid", "proxy FID", "lower is better", "#1f4e79", "lowest"),
                (axes[1], "clip", "proxy CLIP score", "higher is better", "#8c3b00", "highest"))
        for ax, col, name, better, colour, which in spec:
            d = df.dropna(subset=[col])
            ax.set_xlabel("training length (kimg: thousands of generator images)")
            ax.set_ylabel(f"{name} ({better})")
            if d.empty:
                ax.text(0.5, 0.5, f"no '{col}' in the log", ha="center", va="center", transform=ax.transAxes)
                continue
            ax.plot(d["kimg"], d[col], "-o", color=colour, ms=2.8, lw=1.2, label=f"{name}, run {run}")
            b = d.loc[d[col].idxmin() if which == "lowest" else d[col].idxmax()]
            ax.plot([b["kimg"]], [b[col]], ls="none", marker="*", ms=9, color=colour, mec="white", mew=0.6,
                    zorder=4, label=f"{which}: {b[col]:.4g} at {b['kimg']:g} kimg")
            ax.margins(x=0.04, y=0.12)
            ax.legend(loc="best")
        fig.suptitle(title or f"Training curves (in-training proxy metrics): {Path(log_jsonl).name}")
    return fig


def plot_training_curves(log_jsonl: str | Path, out_stem: str | Path, *, title: str | None = None) -> list[Path]:
    """Proxy FID and proxy CLIP over training length, from a distillation run's log: two panels.

    The log is the trainer's JSON Lines (keys in ``sidbench.core.logkeys``):

    - ``kimg`` (required): training length in thousands of generator images at that point;
    - ``proxy_fid`` (optional): the in-training proxy FID;
    - ``proxy_clip`` (optional): the in-training proxy CLIP score (cosine, ~0.3).

    Other keys are ignored. These in-training metrics are a different protocol from ``coco2014-30k``
    (see the evaluation spec), so the axes say "proxy"; each panel marks its best point. Writes
    ``out_stem.png`` (300 dpi) and ``out_stem.svg``.
    """
    return _save(training_curves_figure(log_jsonl, title=title), out_stem)
