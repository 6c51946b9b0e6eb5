"""Renderers of a ReportTable: Markdown, LaTeX (booktabs), CSV, HTML, and the one-page HTML report."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from sidbench.core.atomic import write_text
from sidbench.core.errors import SidbenchError
from sidbench.report.tables import DECIMALS, GROUP_TITLES, NUMERIC_COLUMNS, ReportTable


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
    if len(starts):
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
