"""Figures: the FID-CLIP trade-off of a table, and training curves from a run's own log."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sidbench.core import logkeys
from sidbench.core.atomic import atomic_path
from sidbench.core.errors import SidbenchError
from sidbench.report.tables import ReportTable, _to_float, guidance_value



# ----------------------------------------------------------------------------------------------- plots

def _save(fig, out_stem: str | Path) -> list[Path]:
    """Write out_stem.png and out_stem.svg atomically, with no timestamps (reproducible files)."""
    import matplotlib

    stem = Path(out_stem)
    written = []
    with matplotlib.rc_context({"svg.hashsalt": "sidbench"}):
        for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
            path = stem.with_name(stem.name + f".{ext}")
            with atomic_path(path, suffix=f".{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
            written.append(path)
    return written


def plot_tradeoff(table: ReportTable, out_stem: str | Path) -> list[Path]:
    """FID (x) against CLIP (y): ours filled, published hollow; one method+teacher's guidance scales joined.

    Only rows with both FID and CLIP can be placed. Writes ``out_stem.png`` and ``out_stem.svg``.
    """
    from matplotlib.figure import Figure

    r = table.rows.dropna(subset=["fid", "clip"])
    if r.empty:
        raise SidbenchError("no row has both FID and CLIP: nothing to plot in the FID-CLIP trade-off")
    fig = Figure(figsize=(7.5, 5.2))
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    keys = list(dict.fromkeys(zip(r["ours"], r["method"], r["teacher"].fillna(""), r["steps"])))
    for i, key in enumerate(keys):
        ours, method, teacher, steps = key
        g = r[(r["ours"] == ours) & (r["method"] == method) & (r["teacher"].fillna("") == teacher)
              & (r["steps"].eq(steps) | (r["steps"].isna() & pd.isna(steps)))].copy()
        g["gval"] = g["guidance"].map(guidance_value)
        colour = colours[i % len(colours)]
        name = f"{'ours: ' if ours else ''}{method}" + (f" ({teacher})" if teacher and teacher not in method else "")
        if steps and not pd.isna(steps) and steps > 1:
            name += f", {steps:g} steps"
        # One point per guidance value joins the line (the first in table order, i.e. the lowest FID);
        # other rows at the same guidance (e.g. longer training) are drawn as points only.
        line = g.dropna(subset=["gval"]).drop_duplicates("gval").sort_values("gval")
        if len(line) > 1:
            ax.plot(line["fid"], line["clip"], "-", color=colour, lw=1.2, alpha=0.8, zorder=1)
        ax.scatter(g["fid"], g["clip"], s=(70 if ours else 45), marker=("*" if ours else "o"),
                   facecolors=(colour if ours else "none"), edgecolors=colour, linewidths=1.4, label=name,
                   zorder=3)
        same_k = set(g.loc[g["gval"].duplicated(keep=False), "gval"].dropna())
        for x in g.itertuples(index=False):
            tag = x.guidance.replace("LSG ", "") if isinstance(x.guidance, str) else ""
            if x.gval in same_k and not pd.isna(x.kimg):        # several rows at one guidance: say which
                tag += f" ({x.kimg:g} kimg)"
            if tag:
                ax.annotate(tag, (x.fid, x.clip), xytext=(4, 4), textcoords="offset points", fontsize=7,
                            color=colour)
    ax.set_xlabel("FID (lower is better)")
    ax.set_ylabel("CLIP score (higher is better)")
    ax.set_title(f"FID–CLIP trade-off, protocol {table.protocol}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    return _save(fig, out_stem)


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


def plot_training_curves(log_jsonl: str | Path, out_stem: str | Path, *, title: str | None = None) -> list[Path]:
    """Proxy FID and proxy CLIP over training length, from a distillation run's log: two panels.

    The log is the trainer's JSON Lines (keys in ``sidbench.core.logkeys``):

    - ``kimg`` (required): training length in thousands of generator images at that point;
    - ``proxy_fid`` (optional): the in-training proxy FID;
    - ``proxy_clip`` (optional): the in-training proxy CLIP score (cosine, ~0.3).

    Other keys are ignored. These in-training metrics are a different protocol from ``coco2014-30k``
    (see the evaluation spec), so the axes say "proxy". Writes ``out_stem.png`` and ``out_stem.svg``.
    """
    from matplotlib.figure import Figure

    df = read_training_log(log_jsonl)
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, col, label, colour in ((axes[0], "fid", "proxy FID (lower is better)", "C0"),
                                   (axes[1], "clip", "proxy CLIP score (higher is better)", "C1")):
        d = df.dropna(subset=[col])
        if d.empty:
            ax.text(0.5, 0.5, f"no '{col}' in the log", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.plot(d["kimg"], d[col], "-o", color=colour, ms=3, lw=1.3)
        ax.set_xlabel("training length (kimg)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or f"Training curves: {Path(log_jsonl).name}")
    return _save(fig, out_stem)


