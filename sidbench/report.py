"""Comparison tables and plots: our results next to published numbers, on one protocol at a time.

The flow is ``load_results`` + ``load_published`` -> ``build_table`` (filter to one protocol, group,
sort, mark the best values, compute deltas, round as papers do) -> a renderer (``to_markdown``,
``to_latex``, ``to_csv``, ``to_html``), with ``plot_tradeoff``, ``plot_training_curves`` and
``html_report`` for figures and a one-page report. A result of another protocol, or one marked not
comparable, is never mixed into a table: ``build_table`` returns it in ``excluded`` with the reason,
and every renderer lists it apart.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from sidbench import logkeys
from sidbench.atomic import atomic_path, write_text
from sidbench.errors import SidbenchError
from sidbench.protocols import get_protocol
from sidbench.results import validate

GROUPS = ("teacher", "multi-step", "one-step")        # the order a paper lists them in
GROUP_TITLES = {"teacher": "Teacher", "multi-step": "Multi-step", "one-step": "One-step",
                "unknown": "Steps not recorded"}
PUBLISHED_COLUMNS = ("method", "teacher", "steps", "guidance", "protocol", "prompts", "fid", "clip", "kimg",
                     "source", "note")
PUBLISHED = Path(__file__).resolve().parent / "data" / "published.csv"  # package data: works from a wheel
NUMERIC_COLUMNS = ("Steps", "kimg", "FID", "CLIP", "KID×10³", "ΔFID", "ΔCLIP")   # right-aligned
DECIMALS = {"fid": 2, "clip": 3, "kid_x1000": 2, "delta_fid": 2, "delta_clip": 3}   # as papers round them


# --------------------------------------------------------------------------------------------- loading

def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per results file (``sidbench.results/1``); ``kid`` is the raw KID mean (not x1000)."""
    rows = []
    seen = set()
    for p in paths:
        path = Path(p)
        if path.resolve() in seen:
            raise SidbenchError(f"results file {path} given twice")
        seen.add(path.resolve())
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SidbenchError(f"results file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SidbenchError(f"results file {path} is not JSON: {e}") from None
        if not isinstance(res, dict):
            raise SidbenchError(f"results file {path} is not a JSON object")
        try:
            validate(res)
        except SidbenchError as e:
            raise SidbenchError(f"{path}: {e}") from None
        subj = res.get("subject") or {}
        proto = res["protocol"]
        metrics = res["metrics"]
        fid, clip, kid = metrics.get("fid") or {}, metrics.get("clip") or {}, metrics.get("kid") or {}
        rows.append({
            "name": subj.get("name") or path.stem,
            "method": subj.get("method"),
            "teacher": subj.get("teacher"),
            "steps": subj.get("steps"),
            "guidance": subj.get("guidance"),
            "kimg": subj.get("kimg"),
            "protocol": proto.get("name"),
            "comparable": bool(proto.get("comparable", False)),
            "deviations": "; ".join(proto.get("deviations") or []),
            "fid": fid.get("value"),
            "clip": clip.get("value"),
            "kid": kid.get("mean"),
            "n_gen": fid.get("n_gen", clip.get("n")),
            "source": f"ours ({path})",
            "path": str(path),
        })
    df = pd.DataFrame(rows, columns=["name", "method", "teacher", "steps", "guidance", "kimg", "protocol",
                                     "comparable", "deviations", "fid", "clip", "kid", "n_gen", "source", "path"])
    for col in ("steps", "kimg", "fid", "clip", "kid", "n_gen"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published rows: ``sidbench/data/published.csv`` (shipped with the package) by default, or a user's file.

    Columns: method, teacher, steps, guidance, protocol, prompts, fid, clip, kimg, source, note and an
    optional ``group`` (teacher | multi-step | one-step; derived from method and steps where blank).
    Every row must name its source.
    """
    path = Path(path) if path is not None else PUBLISHED
    if not path.is_file():
        hint = " (pass a published-numbers CSV with --against PATH)" if path == PUBLISHED else ""
        raise SidbenchError(f"published numbers file {path} does not exist{hint}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if missing:
        raise SidbenchError(f"{path}: missing column(s) {missing}; expected {', '.join(PUBLISHED_COLUMNS)}")
    df = df.apply(lambda col: col.str.strip())
    for i, row in df.iterrows():
        line = i + 2                                      # header is line 1
        if not row["method"] or not row["protocol"]:
            raise SidbenchError(f"{path}, line {line}: a published row needs a method and a protocol")
        if not row["source"]:
            raise SidbenchError(f"{path}, line {line}: {row['method']} has no source (paper and table)")
        for col in ("steps", "prompts", "fid", "clip", "kimg"):
            if row[col] and _to_float(row[col]) is None:
                raise SidbenchError(f"{path}, line {line}: {col}={row[col]!r} is not a number")
    for col in ("steps", "prompts", "fid", "clip", "kimg"):
        df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce")
    if "group" not in df.columns:
        df["group"] = ""
    derived = [_group(m, s) for m, s in zip(df["method"], df["steps"])]
    df["group"] = [g or d for g, d in zip(df["group"], derived)]
    bad = sorted(set(df["group"]) - set(GROUPS) - {"unknown"})
    if bad:
        raise SidbenchError(f"{path}: unknown group(s) {bad}; expected {', '.join(GROUPS)}")
    df["source_file"] = str(path)
    return df


def _to_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _group(method, steps) -> str:
    if isinstance(method, str) and "teacher" in method.lower():
        return "teacher"
    s = _to_float(steps)
    if s is None:
        return "unknown"
    return "multi-step" if s > 1 else "one-step"


def guidance_value(guidance) -> float | None:
    """The number in a guidance label ('LSG k=1.5' -> 1.5, 'cfg 3' -> 3); None when there is none."""
    if not isinstance(guidance, str):
        return None
    nums = re.findall(r"[-+]?\d*\.?\d+", guidance)
    return float(nums[-1]) if nums else None


# ----------------------------------------------------------------------------------------------- table

@dataclass
class ReportTable:
    """A comparison table on one protocol, rounded as papers round, in display order.

    ``rows`` columns: label, group, method, name, teacher, steps, guidance, kimg, prompts, fid, clip,
    kid_x1000, delta_fid, delta_clip, best_fid, best_clip, is_ref, ours, comparable, deviations, source,
    note, path (our results file). ``excluded``: label, source, protocol, reason, path (rows of ours kept out of the table).
    """
    protocol: str
    rows: pd.DataFrame
    excluded: pd.DataFrame
    delta_to: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_kid(self) -> bool:
        return bool(self.rows["kid_x1000"].notna().any())


def build_table(ours: pd.DataFrame, published: pd.DataFrame | None, protocol: str, *,
                delta_to: str | None = None, include_not_comparable: bool = False) -> ReportTable:
    """Rows of ``protocol`` only, grouped teachers / multi-step / one-step and sorted by FID.

    Our results of another protocol, and those marked not comparable, go to ``excluded`` with the reason
    (``include_not_comparable`` keeps the latter in the table, flagged, with their deviations in the notes).
    ``delta_to`` names the reference row of the delta columns: a row's label, name or method, or the path
    or file stem of one of our results files. A table with no row at all is an error.
    """
    proto = get_protocol(protocol)
    notes: list[str] = []
    kept, excluded = [], []
    for r in ours.itertuples(index=False):
        label = r.name
        if r.protocol != protocol:
            excluded.append({"label": label, "source": r.source, "protocol": r.protocol, "path": r.path,
                             "reason": f"protocol {r.protocol}, this table is {protocol}"})
        elif not r.comparable and not include_not_comparable:
            excluded.append({"label": label, "source": r.source, "protocol": r.protocol, "path": r.path,
                             "reason": f"not comparable: {r.deviations or 'marked not comparable'}"})
        else:
            method = r.method if isinstance(r.method, str) and r.method else None
            kept.append({"label": label, "group": _group(method or "", r.steps), "method": method or r.name,
                         "name": r.name, "teacher": r.teacher, "steps": r.steps, "guidance": r.guidance,
                         "kimg": r.kimg, "prompts": r.n_gen, "fid": r.fid, "clip": r.clip,
                         "kid_x1000": None if pd.isna(r.kid) else r.kid * 1000, "ours": True,
                         "comparable": bool(r.comparable), "deviations": r.deviations, "source": r.source,
                         "note": "", "path": r.path})
    if published is not None and len(published):
        same = published[published["protocol"] == protocol]
        other = published[published["protocol"] != protocol]
        if len(other):
            names = ", ".join(sorted(set(other["protocol"])))
            notes.append(f"{len(other)} published row(s) of other protocols ({names}) are not shown.")
        for r in same.itertuples(index=False):
            kept.append({"label": None, "group": r.group, "method": r.method, "name": r.method,
                         "teacher": r.teacher or None, "steps": r.steps, "guidance": r.guidance or None,
                         "kimg": r.kimg, "prompts": r.prompts, "fid": r.fid, "clip": r.clip, "kid_x1000": None,
                         "ours": False, "comparable": True, "deviations": "", "source": r.source,
                         "note": r.note, "path": None})
    cols = ["label", "group", "method", "name", "teacher", "steps", "guidance", "kimg", "prompts", "fid", "clip",
            "kid_x1000", "delta_fid", "delta_clip", "best_fid", "best_clip", "is_ref", "ours", "comparable",
            "deviations", "source", "note", "path"]
    if not kept:
        why = "; ".join(f"{e['label']} ({e['source']}): {e['reason']}" for e in excluded)
        raise SidbenchError(f"nothing to put in a {protocol} table" + (f": every result is listed apart: {why}"
                                                                        if why else ""))
    rows = pd.DataFrame(kept, columns=cols)
    for col in ("steps", "kimg", "prompts", "fid", "clip", "kid_x1000"):
        rows[col] = pd.to_numeric(rows[col], errors="coerce").astype("float64")
    for col, nd in DECIMALS.items():
        if col in ("fid", "clip", "kid_x1000"):
            rows[col] = rows[col].round(nd)
    rows["label"] = _labels(rows)
    flagged = rows[~rows["comparable"]]
    for why, labels in flagged.groupby(flagged["deviations"].replace("", "marked not comparable"), sort=False)["label"]:
        notes.append(f"† NOT comparable to published numbers ({', '.join(labels)}): {why}")

    # Group order, then FID (missing last), then CLIP (higher first): stable, so ties keep input order.
    order = {g: i for i, g in enumerate((*GROUPS, "unknown"))}
    rows["_g"] = rows["group"].map(order)
    rows["_clip"] = -rows["clip"]
    rows = rows.sort_values(["_g", "fid", "_clip"], na_position="last", kind="stable")
    rows = rows.drop(columns=["_g", "_clip"]).reset_index(drop=True)

    best_fid, best_clip = rows["fid"].min(), rows["clip"].max()
    rows["best_fid"] = rows["fid"].eq(best_fid) & rows["fid"].notna()
    rows["best_clip"] = rows["clip"].eq(best_clip) & rows["clip"].notna()

    rows["is_ref"] = False
    ref_label = None
    if delta_to:
        i = _find_row(rows, delta_to, excluded, protocol)
        rows.loc[i, "is_ref"] = True
        ref_label = rows.loc[i, "label"]
        rows["delta_fid"] = (rows["fid"] - rows.loc[i, "fid"]).round(DECIMALS["delta_fid"])
        rows["delta_clip"] = (rows["clip"] - rows.loc[i, "clip"]).round(DECIMALS["delta_clip"])
    else:
        rows["delta_fid"] = float("nan")
        rows["delta_clip"] = float("nan")
    if proto.name == "custom":
        notes.insert(0, "Protocol custom: each result follows its own recorded choices; compare with care.")
    else:
        notes.insert(0, f"Protocol {proto.name}: {proto.description}.")
    ex = pd.DataFrame(excluded, columns=["label", "source", "protocol", "reason", "path"])
    return ReportTable(protocol=protocol, rows=rows, excluded=ex, delta_to=ref_label, notes=notes)


def _labels(rows: pd.DataFrame) -> list[str]:
    """A unique, readable label per row: ours by name, published by method, teacher, guidance, steps, kimg."""
    labels = []
    for r in rows.itertuples(index=False):
        if r.ours:
            labels.append(str(r.label))
            continue
        parts = [r.method]
        parts += [v for v in (r.teacher, r.guidance) if isinstance(v, str) and v]
        if r.steps > 1 and r.group != "teacher":
            parts.append(f"{r.steps:g} steps")
        if not pd.isna(r.kimg):
            parts.append(f"{r.kimg:g} kimg")
        labels.append(", ".join(parts))
    counts = pd.Series(labels).value_counts()
    # Same label twice: published rows add their source, ours their file name.
    where = [Path(r.path).name if r.ours else r.source for r in rows.itertuples(index=False)]
    return [f"{lab} ({w})" if counts[lab] > 1 else lab for lab, w in zip(labels, where)]


def _find_row(rows: pd.DataFrame, key: str, excluded: list[dict], protocol: str) -> int:
    k = key.strip().lower()
    stems = rows["path"].map(lambda p: Path(p).stem if isinstance(p, str) else None)
    for col in (rows["label"], rows["name"], rows["method"], rows["path"], stems):
        hits = rows.index[col.astype(str).str.lower() == k].tolist()
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            cands = "; ".join(repr(x) for x in rows.loc[hits, "label"])
            raise SidbenchError(f"--delta-to {key!r} matches {len(hits)} rows; name one by its label: {cands}")
    if any(k in (str(e["label"]).lower(), e["path"].lower(), Path(e["path"]).stem.lower()) for e in excluded):
        raise SidbenchError(f"--delta-to {key!r} is not in the {protocol} table (it is listed apart)")
    raise SidbenchError(f"--delta-to {key!r} matches no row; labels: " + "; ".join(repr(x) for x in rows["label"]))


# ------------------------------------------------------------------------------------------- rendering

def _num(v, nd: int, signed: bool = False) -> str:
    if v is None or pd.isna(v):
        return "—"
    v = float(v) + 0.0                                   # no "-0.00"
    return f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}"


def _int(v) -> str:
    if v is None or pd.isna(v):
        return "—"
    return f"{v:g}" if v != int(v) else f"{int(v)}"


def _display(t: ReportTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formatted strings for the human-readable renderers, and a same-shaped mask of best cells."""
    r = t.rows
    disp = pd.DataFrame({
        "Group": [GROUP_TITLES.get(g, g) if i == 0 or g != r["group"].iloc[i - 1] else ""
                  for i, g in enumerate(r["group"])],
        "Method": [_method_cell(x) for x in r.itertuples(index=False)],
        "Teacher": r["teacher"].fillna("—").replace("", "—"),
        "Steps": r["steps"].map(_int),
        "Guidance": r["guidance"].fillna("—").replace("", "—"),
        "kimg": r["kimg"].map(_int),
        "FID": r["fid"].map(lambda v: _num(v, DECIMALS["fid"])),
        "CLIP": r["clip"].map(lambda v: _num(v, DECIMALS["clip"])),
    })
    if t.has_kid:
        disp["KID×10³"] = r["kid_x1000"].map(lambda v: _num(v, DECIMALS["kid_x1000"]))
    if t.delta_to is not None:
        disp["ΔFID"] = [("ref." if x.is_ref else _num(x.delta_fid, DECIMALS["delta_fid"], True))
                        for x in r.itertuples(index=False)]
        disp["ΔCLIP"] = [("ref." if x.is_ref else _num(x.delta_clip, DECIMALS["delta_clip"], True))
                         for x in r.itertuples(index=False)]
    disp["Source"] = r["source"]
    best = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    best["FID"] = r["best_fid"].to_numpy()
    best["CLIP"] = r["best_clip"].to_numpy()
    return disp, best


def _method_cell(x) -> str:
    if x.ours:
        text = f"{x.label} (ours)" if x.name == x.method else f"{x.method}: {x.label} (ours)"
        return text + ("" if x.comparable else " †")
    return f"{x.method} ({x.note})" if x.note else x.method


def _legend(t: ReportTable) -> list[str]:
    lines = [*t.notes, "FID: lower is better; CLIP: higher is better. Best values in bold."]
    if t.delta_to is not None:
        lines.append(f"Δ: difference to {t.delta_to} (ref.).")
    return lines


def _excluded_lines(t: ReportTable) -> list[str]:
    return [f"{e.label} — {e.source}: {e.reason}" for e in t.excluded.itertuples(index=False)]


def to_markdown(t: ReportTable) -> str:
    disp, best = _display(t)
    disp = disp.astype(str)
    disp = disp.mask(best, "**" + disp + "**")
    colalign = tuple("right" if c in NUMERIC_COLUMNS else "left" for c in disp.columns)
    text = f"### {t.protocol}\n\n" + disp.to_markdown(index=False, colalign=colalign) + "\n\n"
    text += "".join(f"- {line}\n" for line in _legend(t))
    if len(t.excluded):
        text += "\n**Listed apart, not in this table** (another protocol or not comparable):\n\n"
        text += "".join(f"- {line}\n" for line in _excluded_lines(t))
    return text


def to_latex(t: ReportTable) -> str:
    """A booktabs tabular: \\midrule between groups, best values in \\textbf, excluded rows as comments."""
    disp, best = _display(t)
    mid = "SIDBENCHMIDRULE"                              # marks a group's first row; becomes \\midrule
    starts = disp["Group"] != ""
    starts.iloc[0] = False
    disp["Group"] = [mid + g if s else g for g, s in zip(disp["Group"], starts)]
    disp = disp.replace("—", "--")
    for col in ("ΔFID", "ΔCLIP"):
        if col in disp:                                  # a true minus sign: $-0.56$
            disp[col] = disp[col].map(lambda s: f"${s}$" if s[:1] in "+-" and s != "--" else s)
    disp = disp.rename(columns={"FID": r"FID$\downarrow$", "CLIP": r"CLIP$\uparrow$", "KID×10³": r"KID$\times10^3$",
                                "ΔFID": r"$\Delta$FID", "ΔCLIP": r"$\Delta$CLIP"})
    best.columns = disp.columns
    deltas = [c for c in disp.columns if c.startswith(r"$\Delta$")]
    styler = disp.style.hide(axis="index").format(escape="latex", subset=[c for c in disp.columns if c not in deltas])
    styler = styler.apply(lambda _: best.map(lambda b: "textbf:--rwrap;" if b else ""), axis=None)
    numeric = ("Steps", "kimg", "FID", "CLIP", "KID", r"$\Delta$")
    align = "".join("r" if c.startswith(numeric) else "l" for c in disp.columns)
    tex = styler.to_latex(hrules=True, column_format=align).replace(mid, "\\midrule\n")
    tail = "".join(f"% {line}\n" for line in _legend(t))
    if len(t.excluded):
        tail += "% Listed apart, not in this table (another protocol or not comparable):\n"
        tail += "".join(f"%   {line}\n" for line in _excluded_lines(t))
    return f"% sidbench report: protocol {t.protocol}\n" + tex + tail


def to_csv(t: ReportTable) -> str:
    """Machine-readable: numeric columns rounded, flags as booleans, one line per table row."""
    cols = ["group", "label", "method", "name", "teacher", "steps", "guidance", "kimg", "prompts", "fid", "clip",
            "kid_x1000", "delta_fid", "delta_clip", "best_fid", "best_clip", "is_ref", "ours", "comparable",
            "source", "note"]
    out = t.rows[cols].copy()
    out.insert(0, "protocol", t.protocol)
    for col in ("steps", "kimg", "prompts"):
        out[col] = out[col].astype("Int64")
    fmt = {c: (lambda v, nd=nd: "" if pd.isna(v) else f"{v:.{nd}f}") for c, nd in DECIMALS.items()}
    for c, f in fmt.items():
        out[c] = out[c].map(f)
    return out.to_csv(index=False, lineterminator="\n")


def to_html(t: ReportTable, *, full_page: bool = False, title: str | None = None) -> str:
    """The table as HTML (pandas Styler): best values bold, our rows shaded, a rule between groups."""
    disp, best = _display(t)
    starts = (disp["Group"] != "").to_numpy()
    ours = t.rows["ours"].to_numpy()

    def row_style(row):
        css = []
        if starts[row.name] and row.name:
            css.append("border-top: 2px solid #444;")
        if ours[row.name]:
            css.append("background-color: #eaf3ff;")
        return [" ".join(css)] * len(row)

    styler = (disp.style.hide(axis="index").format(escape="html")
              .apply(row_style, axis=1)
              .apply(lambda _: best.map(lambda b: "font-weight: bold;" if b else ""), axis=None)
              .set_properties(subset=[c for c in disp.columns if c in NUMERIC_COLUMNS], **{"text-align": "right"})
              .set_table_attributes('class="sidbench-report"')
              .set_uuid("sidbench"))
    table = styler.to_html()
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in _legend(t))
    body = f"<h2>Protocol {html.escape(t.protocol)}</h2>\n{table}\n<ul class=\"notes\">{notes}</ul>\n"
    if len(t.excluded):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in _excluded_lines(t))
        body += ("<h3>Listed apart, not in this table</h3>\n<p>Another protocol or not comparable:</p>\n"
                 f"<ul class=\"excluded\">{items}</ul>\n")
    if full_page:
        return _page(title or f"sidbench report: {t.protocol}", body)
    return body


_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table.sidbench-report { border-collapse: collapse; font-size: 13px; }
table.sidbench-report th, table.sidbench-report td { padding: 3px 9px; border-bottom: 1px solid #ddd;
  white-space: nowrap; }
table.sidbench-report th { border-bottom: 2px solid #444; text-align: left; }
figure { display: inline-block; margin: 1em 1em 1em 0; vertical-align: top; }
figure img { max-width: 640px; border: 1px solid #ccc; }
figure img.grid { max-width: 100%; }
ul.notes, ul.excluded { font-size: 13px; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}</body>\n</html>\n")


def render(t: ReportTable, fmt: str) -> str:
    fmts = {"md": to_markdown, "latex": to_latex, "csv": to_csv, "html": lambda x: to_html(x, full_page=True)}
    if fmt not in fmts:
        raise SidbenchError(f"unknown format {fmt!r}; known: {', '.join(fmts)}")
    return fmts[fmt](t)


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

    The keys are the trainer's own (``sidbench.logkeys``): ``kimg``, ``proxy_fid``, ``proxy_clip``.
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

    The log is the trainer's JSON Lines (keys in ``sidbench.logkeys``):

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


# ------------------------------------------------------------------------------------------ HTML page

def _data_uri(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise SidbenchError(f"image {path} does not exist")
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
            ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if kind is None:
        raise SidbenchError(f"image {path}: only png, jpg, webp or svg can be embedded")
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_report(table: ReportTable, plots: Sequence[str | Path] | Mapping[str, str | Path] = (),
                image_grid: str | Path | None = None, out: str | Path = "report.html", *,
                title: str | None = None) -> Path:
    """One self-contained HTML page: the table, the plots and a sample image grid, images as data URIs.

    ``plots``: image paths, or a mapping caption -> path. Returns the path written.
    """
    items = list(plots.items()) if isinstance(plots, Mapping) else [(Path(p).stem.replace("_", " "), p)
                                                                   for p in plots]
    body = to_html(table)
    if items:
        body += "<h2>Plots</h2>\n"
        for caption, p in items:
            body += (f"<figure><img src=\"{_data_uri(p)}\" alt=\"{html.escape(caption)}\">"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>\n")
    if image_grid is not None:
        body += (f"<h2>Samples</h2>\n<figure><img class=\"grid\" src=\"{_data_uri(image_grid)}\" "
                 f"alt=\"sample image grid\"><figcaption>{html.escape(Path(image_grid).name)}</figcaption>"
                 "</figure>\n")
    out = Path(out)
    write_text(out, _page(title or f"sidbench report: {table.protocol}", body))
    return out
