"""Renderers of a ReportTable: Markdown, LaTeX (booktabs), CSV, HTML, and the one-page HTML report."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from sidbench.core.atomic import write_text
from sidbench.core.errors import SidbenchError
from sidbench.report.tables import DECIMALS, GROUP_TITLES, KID_TITLE, NUMERIC_COLUMNS, ReportTable


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


def _value_columns(t: ReportTable):
    """The value columns a table shows: FID and CLIP (unless only other networks' distances are there), KID
    when some row has it, and each network's FD / KD."""
    r = t.rows
    out = []
    for c in t.columns:
        if c.key in ("fid", "clip"):
            if r[c.key].notna().any() or not t.network_columns or not len(r):
                out.append(c)
        elif c.key == "kid_x1000":
            if t.has_kid:
                out.append(c)
        else:
            out.append(c)
    return out


def _delta_columns(t: ReportTable) -> list[tuple[str, str]]:
    """(rows key, title) of the delta columns, when the table has a delta reference."""
    if t.delta_to is None:
        return []
    ref = t.rows[t.rows["is_ref"]]
    cands = [("fid", "ΔFID"), ("clip", "ΔCLIP")] + [(c.key, f"Δ{c.title}") for c in t.network_columns
                                                    if f"delta_{c.key}" in t.rows]
    return [(f"delta_{key}", title) for key, title in cands if ref[key].notna().any()]  # what the ref. row has


def _is_numeric(title: str) -> bool:
    return title in NUMERIC_COLUMNS or title.startswith(("FD (", "KD×", "Δ"))


def _starts(t: ReportTable) -> list[bool]:
    """Where a block starts: a new protocol or a new group (a rule goes above it, its title in it)."""
    keys = list(zip(t.rows["protocol"], t.rows["group"]))
    return [i == 0 or k != keys[i - 1] for i, k in enumerate(keys)]


def _display(t: ReportTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formatted strings for the human-readable renderers, and a same-shaped mask of best cells."""
    r = t.rows
    starts = _starts(t)
    cols = {}
    if not t.filtered:                                   # every result on its own protocol: say which
        pstarts = [i == 0 or p != r["protocol"].iloc[i - 1] for i, p in enumerate(r["protocol"])]
        cols["Protocol"] = [p if s else "" for p, s in zip(r["protocol"], pstarts)]
    cols.update({
        "Group": [GROUP_TITLES.get(g, g) if s else "" for g, s in zip(r["group"], starts)],
        "Method": [_method_cell(x) for x in r.itertuples(index=False)],
        "Teacher": r["teacher"].fillna("—").replace("", "—"),
        "Steps": r["steps"].map(_int),
        "Guidance": r["guidance"].fillna("—").replace("", "—"),
        "kimg": r["kimg"].map(_int),
    })
    disp = pd.DataFrame(cols, index=r.index)
    values = _value_columns(t)
    for c in values:
        disp[c.title] = r[c.key].map(lambda v, nd=c.decimals: _num(v, nd))
        pm = f"{c.key}_pm"
        if pm in r and r[pm].notna().any():  # "8.15 ± 0.07": the bootstrap interval's half-width
            disp[c.title] = [cell + (f" ± {_num(h, c.decimals)}" if pd.notna(h) and cell != "—" else "")
                             for cell, h in zip(disp[c.title], r[pm])]
    for key, title in _delta_columns(t):
        nd = DECIMALS.get(key, DECIMALS["delta_fid"])
        disp[title] = [("ref." if x.is_ref else _num(v, nd, True)) for x, v in zip(r.itertuples(index=False), r[key])]
    disp["Source"] = r["source"]
    best = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    for c in values:
        best[c.title] = r[f"best_{c.key}"].to_numpy()
    return disp, best


def _method_cell(x) -> str:
    if x.ours:
        tag = "reference" if x.reference else "ours"
        plain = x.name == x.method or (x.reference and str(x.method).strip().lower() == "reference")
        text = f"{x.label} ({tag})" if plain else f"{x.method}: {x.label} ({tag})"
        return text + ("" if x.comparable else " †")
    return f"{x.method} ({x.note})" if x.note else x.method


def _legend(t: ReportTable) -> list[str]:
    lower = ", ".join(c.title for c in _value_columns(t) if c.lower_is_better) or "FID"
    higher = ", ".join(c.title for c in _value_columns(t) if not c.lower_is_better) or "CLIP"
    lines = [*t.notes, f"{lower}: lower is better; {higher}: higher is better. Best values in bold, marked only among "
                       f"rows that can be compared (one protocol; custom: one reference set), never on reference "
                       f"rows or rows marked †."]
    if t.delta_to is not None:
        lines.append(f"Δ: difference to {t.delta_to} (ref.).")
    return lines


def _title(t: ReportTable) -> str:
    return t.protocol if t.filtered else f"Results by protocol: {t.protocol}"


APART_HINT = "--include-not-comparable keeps results marked not comparable in the table, flagged †"


def _excluded_lines(t: ReportTable) -> list[str]:
    return [f"{e.label} — {e.source}: {e.reason}" for e in t.excluded.itertuples(index=False)]


def _apart_note(t: ReportTable) -> str:
    """The apart list's heading note: why rows are there, and how to bring the not comparable ones in."""
    hint = any("not comparable" in e for e in t.excluded["reason"])
    return "another protocol or not comparable" + (f"; {APART_HINT}" if hint else "")


def to_markdown(t: ReportTable) -> str:
    disp, best = _display(t)
    disp = disp.astype(str)
    disp = disp.mask(best, "**" + disp + "**")
    colalign = tuple("right" if _is_numeric(c) else "left" for c in disp.columns)
    text = f"### {_title(t)}\n\n" + disp.to_markdown(index=False, colalign=colalign) + "\n\n"
    text += "".join(f"- {line}\n" for line in _legend(t))
    if len(t.excluded):
        text += f"\n**Listed apart, not in this table** ({_apart_note(t)}):\n\n"
        text += "".join(f"- {line}\n" for line in _excluded_lines(t))
    return text


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_header(title: str) -> str:
    fixed = {"FID": r"FID$\downarrow$", "CLIP": r"CLIP$\uparrow$", KID_TITLE: r"KID$\times10^3$",
             "ΔFID": r"$\Delta$FID", "ΔCLIP": r"$\Delta$CLIP"}
    if title in fixed:
        return fixed[title]
    delta = title.startswith("Δ")
    body = title[1:] if delta else title
    if body.startswith("KD×10³"):
        body = r"KD$\times10^3$" + _latex_escape(body[len("KD×10³"):])
    else:
        body = _latex_escape(body)
    return (r"$\Delta$" if delta else "") + body


def to_latex(t: ReportTable) -> str:
    """A booktabs tabular: \\midrule between groups, best values in \\textbf, excluded rows as comments."""
    disp, best = _display(t)
    mid = "SIDBENCHMIDRULE"                              # marks a block's first row; becomes \\midrule
    starts = pd.Series(_starts(t), index=disp.index, dtype=bool)
    if len(starts):
        starts.iloc[0] = False
    first = disp.columns[0]
    disp[first] = [mid + g if s else g for g, s in zip(disp[first], starts)]
    disp = disp.replace("—", "--")
    deltas = [title for _, title in _delta_columns(t)]
    for col in deltas:                                   # a true minus sign: $-0.56$
        disp[col] = disp[col].map(lambda s: f"${s}$" if s[:1] in "+-" and s != "--" else s)
    numeric = [_is_numeric(c) for c in disp.columns]
    disp = disp.rename(columns={c: _latex_header(c) for c in disp.columns})
    best.columns = disp.columns
    raw = [_latex_header(c) for c in deltas]
    styler = disp.style.hide(axis="index").format(escape="latex", subset=[c for c in disp.columns if c not in raw])
    styler = styler.apply(lambda _: best.map(lambda b: "textbf:--rwrap;" if b else ""), axis=None)
    align = "".join("r" if n else "l" for n in numeric)
    tex = styler.to_latex(hrules=True, column_format=align).replace(mid, "\\midrule\n")
    tail = "".join(f"% {line}\n" for line in _legend(t))
    if len(t.excluded):
        tail += f"% Listed apart, not in this table ({_apart_note(t)}):\n"
        tail += "".join(f"%   {line}\n" for line in _excluded_lines(t))
    return f"% sidbench report: {'protocol ' + t.protocol if t.filtered else _title(t)}\n" + tex + tail


def to_csv(t: ReportTable) -> str:
    """Machine-readable: one line per table row, its protocol first; numeric columns rounded, flags as booleans.

    Value columns: fid, clip, kid_x1000 (Inception v3), then fd_<network> / kd_x1000_<network> for each other
    network; delta_* beside them; best_* per value column."""
    values = [c.key for c in t.columns]
    deltas = [k for k in ("delta_fid", "delta_clip", *(f"delta_{c.key}" for c in t.network_columns)) if k in t.rows]
    pms = [f"{k}_pm" for k in values if f"{k}_pm" in t.rows and t.rows[f"{k}_pm"].notna().any()]
    cols = ["protocol", "group", "label", "method", "name", "teacher", "steps", "guidance", "kimg", "prompts",
            *values, *pms, *deltas, *(f"best_{k}" for k in values), "is_ref", "reference", "ours", "comparable",
            "source", "note"]
    out = t.rows[cols].copy()
    for col in ("steps", "kimg", "prompts"):
        out[col] = out[col].astype("Int64")
    decimals = dict(DECIMALS, **{c.key: c.decimals for c in t.columns},
                    **{f"delta_{c.key}": c.decimals for c in t.network_columns})
    decimals.update({p: decimals[p[:-3]] for p in pms})  # a half-width to its value's decimals
    for c in (*values, *pms, *deltas):
        nd = decimals[c]
        out[c] = out[c].map(lambda v, nd=nd: "" if pd.isna(v) else f"{v:.{nd}f}")
    return out.to_csv(index=False, lineterminator="\n")


def to_html(t: ReportTable, *, full_page: bool = False, title: str | None = None) -> str:
    """The table as HTML (pandas Styler): best values bold, our rows shaded, a rule between groups."""
    disp, best = _display(t)
    starts = _starts(t)
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
              .set_properties(subset=[c for c in disp.columns if _is_numeric(c)], **{"text-align": "right"})
              .set_table_attributes('class="sidbench-report"')
              .set_uuid("sidbench"))
    table = styler.to_html()
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in _legend(t))
    heading = f"Protocol {t.protocol}" if t.filtered else _title(t)
    body = f"<h2>{html.escape(heading)}</h2>\n{table}\n<ul class=\"notes\">{notes}</ul>\n"
    if len(t.excluded):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in _excluded_lines(t))
        body += ("<h3>Listed apart, not in this table</h3>\n"
                 f"<p>{html.escape(_apart_note(t)[0].upper() + _apart_note(t)[1:])}:</p>\n"
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
