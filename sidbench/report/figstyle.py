"""Shared figure style for the report and the demo: one saver, one guidance colour scale, point labels that
do not collide.

- ``style()``: the rc settings every figure is built and saved under (paper sizes: 7-8.5 pt text).
- ``new_figure``: a headless ``Figure`` with an Agg canvas and constrained layout; ``freeze_layout`` fixes the
  layout before labels are placed in display coordinates.
- ``save_figure``: ``stem.png`` (300 dpi, pHYs set) and ``stem.svg``, atomically, with no timestamp or
  version in either file, so the same figure gives the same bytes.
- ``GuidanceScale``: the colour of a guidance value (LSG k or cfg), ordinal (evenly spaced colours in value
  order), with a discrete colour bar naming every value.
- ``place_labels``: labels beside points, chosen among candidate positions around each point so that no two
  labels overlap, none covers a marker and all stay inside the axes; a label moved away from its point gets a
  leader line.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from sidbench.core.atomic import atomic_path

DPI = 300
RC = {
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "figure.titlesize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "svg.hashsalt": "sidbench",        # SVG ids from a fixed salt, not a random one: reproducible files
    "svg.fonttype": "path",
}
BACKGROUND = (255, 255, 255)
NO_GUIDANCE = "#8c8c8c"               # points whose guidance is not recorded


@contextlib.contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float, *, layout: str | None = "constrained", dpi: float = 100):
    """A ``Figure`` that draws headless (its own Agg canvas; pyplot is never involved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def freeze_layout(fig) -> None:
    """Run the layout once and keep it: axes positions and limits stay put from here on.

    Labels are placed in display coordinates, so they must be placed after this (and nothing may move the
    axes afterwards, which a constrained layout would do again at every draw).
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())


def save_figure(fig, out_stem: str | Path, *, dpi: int = DPI, tight: bool = True) -> list[Path]:
    """Write ``out_stem.png`` (``dpi``, default 300) and ``out_stem.svg`` atomically; return both paths.

    No timestamp, software version or random id goes into either file. ``tight`` crops to the drawn
    artists (nothing outside the figure is lost: the crop grows to hold every label); a figure laid out
    to the pixel (the sample grid) passes ``tight=False``.
    """
    import matplotlib

    stem = Path(out_stem)
    written = []
    extra = {"bbox_inches": "tight", "pad_inches": 0.04} if tight else {}
    with matplotlib.rc_context({"svg.hashsalt": RC["svg.hashsalt"]}):
        for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            path = stem.with_name(stem.name + f".{ext}")
            with atomic_path(path, suffix=f".{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=dpi, metadata=meta, facecolor="white", **extra)
            written.append(path)
    return written


# --------------------------------------------------------------------------------------- guidance colour

class GuidanceScale:
    """Ordinal colours for guidance values: evenly spaced along a dark-to-light map, in value order.

    Ordinal rather than linear, so that 1, 1.5, 2, 3 (or 1.5 ... 8) are told apart equally well; the colour
    bar names every value. ``colour(None)`` is the grey of "not recorded".
    """

    def __init__(self, values: Iterable, cmap: str = "viridis", span: tuple[float, float] = (0.0, 0.85)):
        import matplotlib

        vals = sorted({float(v) for v in values if v is not None and not _isnan(v)})
        self.values = vals
        base = matplotlib.colormaps[cmap]
        pos = np.linspace(span[0], span[1], len(vals)) if len(vals) > 1 else np.array([span[0]])
        self._colours = {v: matplotlib.colors.to_hex(base(p)) for v, p in zip(vals, pos)}

    def colour(self, value) -> str:
        if value is None or _isnan(value):
            return NO_GUIDANCE
        v = float(value)
        if v in self._colours:
            return self._colours[v]
        # Not one of the scale's values: the nearest one's colour (the scale is ordinal).
        return self._colours[min(self.values, key=lambda u: abs(u - v))] if self.values else NO_GUIDANCE

    def colorbar(self, fig, ax, label: str, *, fmt: str = "{:g}", **kw):
        """A discrete colour bar beside ``ax`` (or a list of axes), one block per value, each named."""
        import matplotlib

        if not self.values:
            return None
        n = len(self.values)
        cmap = matplotlib.colors.ListedColormap([self._colours[v] for v in self.values])
        norm = matplotlib.colors.BoundaryNorm(np.arange(n + 1) - 0.5, n)
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        kw.setdefault("fraction", 0.05)
        kw.setdefault("pad", 0.02)
        cb = fig.colorbar(sm, ax=ax, ticks=np.arange(n), **kw)
        cb.ax.set_yticklabels([fmt.format(v) for v in self.values])
        cb.ax.tick_params(length=0)
        cb.set_label(label)
        cb.outline.set_visible(False)
        return cb


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


# ------------------------------------------------------------------------------------------ point labels

def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Sequence[float], frame: Sequence[float]) -> float:
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - _overlap(box, frame)


def _segments_near(box, segs: np.ndarray) -> int:
    """How many sample points of the drawn lines fall inside ``box``."""
    if not len(segs):
        return 0
    x, y = segs[:, 0], segs[:, 1]
    return int(np.count_nonzero((x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])))


def _line_samples(ax, step_px: float = 2.0) -> np.ndarray:
    pts = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_linestyle() in ("None", "none", "", " "):
            continue
        xy = line.get_transform().transform(np.column_stack(line.get_data()).astype(float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        for p, q in zip(xy[:-1], xy[1:]):
            n = max(2, int(np.hypot(*(q - p)) / step_px))
            pts.append(p + np.linspace(0, 1, n)[:, None] * (q - p))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _candidates(r_px: Sequence[float]):
    """Offsets around a point, nearest ring first; each with the alignment that keeps the text off it."""
    out = []
    for ring, r in enumerate(r_px):
        angles = (45, 135, 315, 225, 0, 180, 90, 270) if ring == 0 else range(0, 360, 30 if ring < 3 else 20)
        for a in angles:
            c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
            ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
            va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
            out.append((ring, r * c, r * s, ha, va))
    return out


def _box_at(x, y, w, h, ha, va, pad):
    x0 = x if ha == "left" else x - w if ha == "right" else x - w / 2
    y0 = y if va == "bottom" else y - h if va == "top" else y - h / 2
    return (x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad)


def place_labels(ax, xs, ys, texts, *, colours=None, fontsize: float = 7.0, marker_px: float | None = None,
                 avoid: Iterable = (), pad_px: float | None = None):
    """Label points (data coordinates) so that labels overlap neither each other nor any marker.

    Every label is tried at candidate positions around its point, on rings of growing radius; the position
    with the least cost wins, where overlap with other labels, markers or ``avoid`` boxes (display
    coordinates x0, y0, x1, y1) and any part outside the axes cost far more than distance. Labels are placed
    crowded points first. One placed off the first ring is joined to its point by a thin leader line. Call
    it after ``freeze_layout`` and after everything else is drawn; returns the annotations, in input order.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    pad = pad_px if pad_px is not None else 1.0 * px_per_pt
    colours = list(colours) if colours is not None else ["0.15"] * len(texts)
    pts = ax.transData.transform(np.column_stack([xs, ys]).astype(float))
    m = marker_px if marker_px is not None else 4.0 * px_per_pt
    # Every marker in the axes is an obstacle, not only the labelled ones.
    marker_pts = [pts]
    for coll in ax.collections:
        off = coll.get_offsets()
        if len(off):
            marker_pts.append(coll.get_offset_transform().transform(np.asarray(off, float)))
    for line in ax.get_lines():
        if line.get_marker() not in (None, "None", "none", "", " "):
            marker_pts.append(line.get_transform().transform(np.column_stack(line.get_data()).astype(float)))
    allm = np.concatenate(marker_pts) if marker_pts else np.zeros((0, 2))
    allm = allm[np.isfinite(allm).all(axis=1)]
    markers = [(x - m, y - m, x + m, y + m) for x, y in allm]
    segs = _line_samples(ax)
    frame = ax.get_window_extent(renderer).extents
    frame = (frame[0] + 2, frame[1] + 2, frame[2] - 2, frame[3] - 2)
    obstacles = [tuple(b) for b in avoid]
    from matplotlib.text import Text

    for t in ax.texts:                       # text already in the axes (e.g. a reference line's name)
        obstacles.append(tuple(Text.get_window_extent(t, renderer).extents))
    if ax.get_legend() is not None:          # a legend inside the axes
        obstacles.append(tuple(ax.get_legend().get_window_extent(renderer).extents))

    sizes = []
    for text in texts:                        # measure each label once, then place it for good
        probe = ax.text(0, 0, text, fontsize=fontsize, transform=None)
        bb = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((bb.width, bb.height))

    rings = [m + 2.0 * px_per_pt, m + 9 * px_per_pt, m + 17 * px_per_pt, m + 27 * px_per_pt,
             m + 40 * px_per_pt]
    cands = _candidates(rings)
    # Crowded points first: they have the fewest good places.
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1)) if len(pts) else np.zeros((0, 0))
    crowd = (d < 40 * px_per_pt).sum(axis=1)
    order = sorted(range(len(pts)), key=lambda i: (-crowd[i], i))
    placed: list[tuple] = []
    chosen = {}
    for i in order:
        (x, y), (w, h) = pts[i], sizes[i]
        best = None
        for ring, dx, dy, ha, va in cands:
            box = _box_at(x + dx, y + dy, w, h, ha, va, pad)
            cost = 200.0 * _outside(box, frame)
            cost += 100.0 * sum(_overlap(box, b) for b in placed)
            cost += 100.0 * sum(_overlap(box, b) for b in obstacles)
            cost += 50.0 * sum(_overlap(box, b) for b in markers)
            cost += 8.0 * _segments_near(box, segs)
            cost += 1.0 * math.hypot(dx, dy)
            if best is None or cost < best[0]:
                best = (cost, ring, dx, dy, ha, va, box)
        placed.append(best[6])
        chosen[i] = best[1:6]
    anns = []
    for i, text in enumerate(texts):
        ring, dx, dy, ha, va = chosen[i]
        # Away from its point (not on the first ring): a leader line says whose label it is.
        arrow = (dict(arrowstyle="-", lw=0.6, color="0.45", shrinkA=0.5, shrinkB=m / px_per_pt)
                 if ring > 0 else None)
        anns.append(ax.annotate(text, ax.transData.inverted().transform(pts[i]),
                                xytext=(dx / px_per_pt, dy / px_per_pt), textcoords="offset points",
                                fontsize=fontsize, color=colours[i], ha=ha, va=va, zorder=5,
                                annotation_clip=False, arrowprops=arrow))
    return anns


def text_boxes(fig, *, include_ticks: bool = True) -> list[tuple[str, tuple]]:
    """Every text the figure draws, with its box in display coordinates (for checks): draws the figure first.

    Tick labels of ticks outside the axis' view are left out (matplotlib keeps them, but does not draw them);
    an annotation's box is its text's, without its leader line.
    """
    from matplotlib.text import Text

    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is None or not (lo - 1e-9 * max(1.0, abs(hi)) <= loc <= hi + 1e-9 * max(1.0, abs(hi))) \
                        or not include_ticks:
                    hidden.update(id(t) for t in (tick.label1, tick.label2))
    out = []
    for t in fig.findobj(Text):
        if id(t) in hidden or not t.get_visible() or not t.get_text().strip():
            continue
        out.append((t.get_text(), tuple(Text.get_window_extent(t, renderer).extents)))   # text, not leader line
    return out
