"""Comparison tables and plots: our results next to published numbers, on one protocol at a time.

The flow is ``load_results`` + ``load_published`` -> ``build_table`` (filter to one protocol, group,
sort, mark the best values, compute deltas, round as papers do) -> a renderer (``to_markdown``,
``to_latex``, ``to_csv``, ``to_html``), with ``plot_tradeoff``, ``plot_training_curves`` and
``html_report`` for figures and a one-page report (renderers in ``render``, figures in ``plots``). A result of another protocol, or one marked not
comparable, is never mixed into a table: ``build_table`` returns it in ``excluded`` with the reason,
and every renderer lists it apart.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from sidbench.core.errors import SidbenchError
from sidbench.eval.protocols import get_protocol
from sidbench.eval.results import validate

GROUPS = ("teacher", "multi-step", "one-step")        # the order a paper lists them in
GROUP_TITLES = {"teacher": "Teacher", "multi-step": "Multi-step", "one-step": "One-step",
                "unknown": "Steps not recorded"}
PUBLISHED_COLUMNS = ("method", "teacher", "steps", "guidance", "protocol", "prompts", "fid", "clip", "kimg",
                     "source", "note")
PUBLISHED = Path(__file__).resolve().parent / "published.csv"  # package data: works from a wheel
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
    """The published rows: ``sidbench/report/published.csv`` (shipped with the package) by default, or a user's file.

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
        reasons = []  # every reason a row is kept out, not only the first
        if r.protocol != protocol:
            reasons.append(f"protocol {r.protocol}, this table is {protocol}")
        if not r.comparable and not include_not_comparable:
            reasons.append(f"not comparable: {r.deviations or 'marked not comparable'}")
        if reasons:
            excluded.append({"label": label, "source": r.source, "protocol": r.protocol, "path": r.path,
                             "reason": "; ".join(reasons)})
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
    if not kept:  # still a report: the empty table says why, and the apart list gives every reason
        notes.append(f"No row in this {protocol} table: every result is listed apart (below), and no published "
                     f"row was given for it.")
    rows = pd.DataFrame(kept, columns=cols)
    for col in ("steps", "kimg", "prompts", "fid", "clip", "kid_x1000"):
        rows[col] = pd.to_numeric(rows[col], errors="coerce").astype("float64")
    for col, nd in DECIMALS.items():
        if col in ("fid", "clip", "kid_x1000"):
            rows[col] = rows[col].round(nd)
    rows["label"] = _labels(rows)
    rows["comparable"] = rows["comparable"].astype(bool)  # an empty frame would otherwise hold objects
    rows["ours"] = rows["ours"].astype(bool)
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
