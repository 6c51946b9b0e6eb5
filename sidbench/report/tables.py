"""Comparison tables and plots: our results, each on its protocol, next to the published numbers of that protocol.

The flow is ``load_results`` + ``load_published`` -> ``build_table`` (choose rows, group, sort, mark the best
values, compute deltas, round as papers do) -> a renderer (``to_markdown``, ``to_latex``, ``to_csv``,
``to_html``), with ``plot_tradeoff``, ``plot_training_curves`` and ``html_report`` for figures and a one-page
report (renderers in ``render``, figures in ``plots``).

Two views:

- no protocol given (``sidbench report results/*.json``): every result of ours, each with its protocol (a
  column), in blocks by protocol; published rows only of the protocols our rows are on. Rows marked not
  comparable are in the table, flagged †, with their deviations in the notes.
- ``protocol`` given: only rows of that protocol, next to all its published rows. A result of another
  protocol, or one marked not comparable (unless ``include_not_comparable``), is never mixed in:
  ``build_table`` returns it in ``excluded`` with the reason, and every renderer lists it apart.

Metrics keep their network: a Fréchet distance on Inception v3 is FID (column ``fid``); one on any other
network (the demo's ``world-cnn``, a test stand-in) has a column of its own, ``FD (<network>)``, never FID's,
and never next to published FIDs. Best values are marked only among rows that can be compared (one protocol;
for ``custom``, one reference set), never on reference rows (true images: the data floor) or † rows.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from sidbench.core.errors import SidbenchError
from sidbench.eval.protocols import PROTOCOLS, get_protocol
from sidbench.eval.results import INCEPTION_EXTRACTORS, KID_TITLE, feature_network, kid_whole_set, validate  # noqa: F401

GROUPS = ("teacher", "multi-step", "one-step")        # the order a paper lists them in
ROW_GROUPS = ("reference", *GROUPS, "unknown")         # a table's order: reference rows (data) first
GROUP_TITLES = {"reference": "Reference (data)", "teacher": "Teacher", "multi-step": "Multi-step",
                "one-step": "One-step", "unknown": "Steps not recorded"}
PUBLISHED_COLUMNS = ("method", "teacher", "steps", "guidance", "protocol", "prompts", "fid", "clip", "kimg",
                     "source", "note")
PUBLISHED = Path(__file__).resolve().parent / "published.csv"  # package data: works from a wheel
NUMERIC_COLUMNS = ("Steps", "kimg", "FID", "CLIP", KID_TITLE, "ΔFID", "ΔCLIP")   # right-aligned (and FD/KD ones)
DECIMALS = {"fid": 2, "clip": 3, "kid_x1000": 2, "delta_fid": 2, "delta_clip": 3}   # as papers round them
REFERENCE_KIND = "reference"                          # subject.kind (or subject.method) of a data row


@dataclass(frozen=True)
class MetricColumn:
    """One value column of a table: ``key`` in ``ReportTable.rows`` and the CSV, ``title`` in the others."""
    key: str
    title: str
    lower_is_better: bool
    decimals: int
    network: str | None = None          # the feature network of an FD / KD column (None: FID's Inception v3)


FID_COLUMN = MetricColumn("fid", "FID", True, DECIMALS["fid"])
CLIP_COLUMN = MetricColumn("clip", "CLIP", False, DECIMALS["clip"])
KID_COLUMN = MetricColumn("kid_x1000", KID_TITLE, True, DECIMALS["kid_x1000"])

# The metrics beyond FID and CLIP, a column each where some row has them: (column, results key, value field).
# HPS is shown x100 as its benchmark prints it, one column per version (v2.0 and v2.1 are not comparable).
EXTRA_COLUMNS = (
    (MetricColumn("fid_infinity", "FID∞", True, 2), "fid_infinity", "value"),
    (MetricColumn("fd_dinov2", "FD-DINOv2", True, 2), "fd_dinov2", "value"),
    (MetricColumn("cmmd", "CMMD", True, 3), "cmmd", "value"),
    (MetricColumn("aesthetic", "Aesthetic", False, 2), "aesthetic", "value"),
    (MetricColumn("hps_v2_0", "HPSv2.0 ×100", False, 2), "hps", "value_x100"),
    (MetricColumn("hps_v2_1", "HPSv2.1 ×100", False, 2), "hps", "value_x100"),
    (MetricColumn("pickscore", "PickScore", False, 2), "pickscore", "value"),
    (MetricColumn("image_reward", "ImageReward", False, 3), "image_reward", "value"),
    (MetricColumn("vendi", "Vendi", False, 2), "vendi", "value"),
    (MetricColumn("lpips_diversity", "LPIPS div.", False, 3), "lpips_diversity", "value"),
)

EXTRA_KEYS = tuple(k for c, _, _ in EXTRA_COLUMNS for k in (c.key, f"{c.key}_pm"))


def _extra_values(metrics: dict, inception: bool) -> dict:
    """``{column key: value, column key + '_pm': half-width}`` of the extra metrics a result has."""
    out = {}
    for col, name, field_ in EXTRA_COLUMNS:
        m = metrics.get(name)
        if not m or m.get(field_) is None:
            continue
        if name == "hps" and col.key != f"hps_{str(m.get('version')).replace('.', '_')}":
            continue
        if name == "fid_infinity" and not inception:  # an FD-infinity on another network is not FID-infinity
            continue
        out[col.key] = m[field_]
        ci = _half_width(m)
        out[f"{col.key}_pm"] = None if ci is None else (100 * ci if field_ == "value_x100" else ci)
    return out


# --------------------------------------------------------------------------------------------- loading

def fd_network(extractor: dict | None) -> str | None:
    """The network a Fréchet distance was computed on, as a column names it; None: Inception v3 (an FID).

    ``extractor``: a results file's ``extractors.fid`` (the extractor's ``describe()``). Inception v3 with
    random weights stays FID's network: such results are marked not comparable by the evaluation, and shown
    flagged †. Any other network is named, with its seed when its weights are random (each seed is another
    network). A file that records no extractor (older, or written by hand) is taken as FID.
    """
    return feature_network(extractor)


def is_reference(subject: dict | None) -> bool:
    """A reference row: the data itself (e.g. fresh true images: the FD floor), never a method to rank.

    Marked by ``subject.kind == "reference"``, or, where the subject has no ``kind``, ``subject.method ==
    "reference"`` (``sidbench eval --method reference``)."""
    subject = subject or {}
    kind, method = subject.get("kind"), subject.get("method")
    return any(isinstance(v, str) and v.strip().lower() == REFERENCE_KIND for v in (kind, method))


def _reference_set(res: dict) -> str | None:
    """What the result was measured against, as an identity (content hash and count); None if not recorded."""
    ref = (res.get("inputs") or {}).get("reference") or {}
    if ref.get("kind") == "stats":
        made = ref.get("made_from") or {}
        sha, n = made.get("listing_sha256") or made.get("data_sha256"), made.get("used", ref.get("n"))
    else:
        sha, n = ref.get("listing_sha256") or ref.get("data_sha256"), ref.get("n")
    return f"{sha[:12]}/{n}" if sha else None


def shown_path(path: str | Path, base: str | Path | None = None) -> str:
    """A results file as a table shows it: relative to ``base`` (the output's folder; default the working
    directory) when the two share a folder below the root and it is at most two levels up, else its file
    name. Never an absolute path."""
    p, b = Path(path).resolve(), Path(base or Path.cwd()).resolve()
    try:
        common = Path(os.path.commonpath([p, b]))
        rel = Path(os.path.relpath(p, b))
    except ValueError:                                   # another drive (Windows)
        return p.name
    if common == Path(common.anchor) or rel.parts[:3].count("..") > 2:
        return p.name
    return rel.as_posix()


def load_results(paths: Iterable[str | Path], *, relative_to: str | Path | None = None) -> pd.DataFrame:
    """One row per results file (``sidbench.results/1``).

    ``fid`` / ``kid`` hold the Fréchet / kernel distances on Inception v3 only (``kid`` raw, not x1000);
    ``fd`` / ``kd`` hold them on whatever network ``fd_network`` names (None: Inception v3). ``source`` shows
    the file relative to ``relative_to`` (default: the working directory); ``path`` is the path as given.
    """
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
        net = fd_network((res.get("extractors") or {}).get("fid"))
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
            "fid": fid.get("value") if net is None else None,
            "clip": clip.get("value"),
            "fid_pm": _half_width(fid) if net is None else None,
            "clip_pm": _half_width(clip),
            "fd_pm": _half_width(fid),
            "kid": kid.get("mean") if net is None else None,
            "fd": fid.get("value"),
            "kd": kid.get("mean"),
            "fd_network": net,
            "kid_std": kid.get("std"),
            "kid_whole_set": kid_whole_set(kid),
            "reference": is_reference(subj),
            "reference_set": _reference_set(res),
            "n_gen": fid.get("n_gen", clip.get("n")),
            "source": f"ours ({shown_path(path, relative_to)})",
            **{k: None for c, _, _ in EXTRA_COLUMNS for k in (c.key, f"{c.key}_pm")},
            **_extra_values(metrics, net is None),
            "path": str(path),
        })
    df = pd.DataFrame(rows, columns=["name", "method", "teacher", "steps", "guidance", "kimg", "protocol",
                                     "comparable", "deviations", "fid", "clip", "fid_pm", "clip_pm", "fd_pm", "kid", "fd",
                                     "kd", "fd_network",
                                     "kid_std", "kid_whole_set", "reference", "reference_set", "n_gen", "source",
                                     "path", *EXTRA_KEYS])
    for col in ("steps", "kimg", "fid", "clip", "fid_pm", "clip_pm", "fd_pm", "kid", "fd", "kd", "kid_std", "n_gen",
                *EXTRA_KEYS):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["reference"] = df["reference"].astype(bool)
    df["kid_whole_set"] = df["kid_whole_set"].astype(bool)
    return df


def _half_width(metric: dict) -> float | None:
    """The ± of ``value ± h`` where a metric has a bootstrap interval: z x its bootstrap std (its spread at N)."""
    from sidbench.eval.bootstrap import spread

    ci = metric.get("interval")
    return None if not ci else spread(ci)


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


def _slug(network: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", network.lower()).strip("-")


def network_columns(network: str) -> tuple[MetricColumn, MetricColumn]:
    """The FD and KD (x1000) columns of a non-Inception network: keys ``fd_<slug>``, ``kd_x1000_<slug>``."""
    slug = _slug(network)
    return (MetricColumn(f"fd_{slug}", f"FD ({network})", True, DECIMALS["fid"], network),
            MetricColumn(f"kd_x1000_{slug}", f"KD×10³ ({network})", True, DECIMALS["kid_x1000"], network))


def _protocol_order(name) -> tuple[int, str]:
    names = list(PROTOCOLS)
    return (names.index(name), "") if name in names else (len(names), str(name))


# ----------------------------------------------------------------------------------------------- table

@dataclass
class ReportTable:
    """A comparison table, rounded as papers round, in display order.

    ``rows`` columns: label, protocol, group, method, name, teacher, steps, guidance, kimg, prompts, fid, clip,
    kid_x1000, one ``fd_<network>`` / ``kd_x1000_<network>`` pair per non-Inception network (see ``columns``),
    fd_network, delta_fid, delta_clip (and ``delta_fd_<network>``), best_<key> per value column, is_ref (the
    delta reference), reference (a data row: never best), ours, comparable, deviations, source, note, path
    (our results file). ``excluded``: label, source, protocol, reason, path (rows of ours kept out of the table).
    ``protocol``: the protocol asked for, or (``filtered`` False) the protocols of the rows, comma-separated.
    """
    protocol: str
    rows: pd.DataFrame
    excluded: pd.DataFrame
    delta_to: str | None = None
    notes: list[str] = field(default_factory=list)
    filtered: bool = True                # one protocol asked for (False: every result, each on its protocol)
    protocols: list[str] = field(default_factory=list)
    columns: list[MetricColumn] = field(default_factory=lambda: [FID_COLUMN, CLIP_COLUMN, KID_COLUMN])

    @property
    def has_kid(self) -> bool:
        return bool(self.rows["kid_x1000"].notna().any())

    @property
    def network_columns(self) -> list[MetricColumn]:
        return [c for c in self.columns if c.network is not None]


def build_table(ours: pd.DataFrame, published: pd.DataFrame | None, protocol: str | None = None, *,
                delta_to: str | None = None, include_not_comparable: bool = False) -> ReportTable:
    """Our rows (and the published rows of their protocols), grouped teachers / multi-step / one-step, sorted by FID.

    ``protocol`` None: every result of ours, in blocks by protocol, those marked not comparable flagged †;
    published rows only of protocols some row of ours is on. ``protocol`` given: rows of that protocol only;
    ours of another protocol, and those marked not comparable, go to ``excluded`` with the reason
    (``include_not_comparable`` keeps the latter in the table, flagged, with their deviations in the notes).
    ``delta_to`` names the reference row of the delta columns: a row's label, name or method, or the path
    or file stem of one of our results files; deltas are given to the rows it can be compared with.
    """
    if protocol is not None:
        get_protocol(protocol)
    filtered = protocol is not None
    notes: list[str] = []
    kept, excluded = [], []
    for r in ours.itertuples(index=False):
        label = r.name
        comparable, deviations = bool(r.comparable), r.deviations
        net = r.fd_network if isinstance(r.fd_network, str) else None      # missing: NaN in a str column
        refset = r.reference_set if isinstance(r.reference_set, str) else None
        if net is not None and not pd.isna(r.fd) and r.protocol != "custom":
            # A protocol's FID is Inception v3's: a distance on another network cannot stand beside it.
            comparable = False
            deviations = "; ".join(d for d in (deviations, f"its Fréchet distance is on {net} features, "
                                               f"not Inception v3: not an FID") if d)
        reasons = []  # every reason a row is kept out, not only the first
        if filtered and r.protocol != protocol:
            reasons.append(f"protocol {r.protocol}, this table is {protocol}")
        if filtered and not comparable and not include_not_comparable:
            reasons.append(f"not comparable: {deviations or 'marked not comparable'}")
        if reasons:
            excluded.append({"label": label, "source": r.source, "protocol": r.protocol, "path": r.path,
                             "reason": "; ".join(reasons), "comparable": comparable})
            continue
        method = r.method if isinstance(r.method, str) and r.method else None
        group = "reference" if r.reference else _group(method or "", r.steps)
        kept.append({"label": label, "protocol": r.protocol, "group": group, "method": method or r.name,
                     "name": r.name, "teacher": r.teacher, "steps": r.steps, "guidance": r.guidance,
                     "kimg": r.kimg, "prompts": r.n_gen, "fid": r.fid, "clip": r.clip,
                     "fid_pm": r.fid_pm, "clip_pm": r.clip_pm, "fd_pm": r.fd_pm,
                     "kid_x1000": None if pd.isna(r.kid) else r.kid * 1000, "fd": r.fd,
                     "kd_x1000": None if pd.isna(r.kd) else r.kd * 1000, "fd_network": net,
                     "reference": bool(r.reference), "ours": True, "comparable": comparable,
                     "deviations": deviations, "source": r.source, "note": "", "path": r.path,
                     "_refset": refset, "_whole": bool(r.kid_whole_set),
                     **{k: getattr(r, k) for k in EXTRA_KEYS}})
    own_protocols = list(dict.fromkeys(k["protocol"] for k in kept))
    if published is not None and len(published):
        wanted = [protocol] if filtered else own_protocols
        same = published[published["protocol"].isin(wanted)]
        other = published[~published["protocol"].isin(wanted)]
        if len(other):
            names = ", ".join(sorted(set(other["protocol"])))
            notes.append(f"{len(other)} published row(s) of other protocols ({names}) are not shown." if filtered else
                         f"{len(other)} published row(s) of other protocols ({names}) are not shown: no result here "
                         f"is on them (--protocol NAME shows a protocol's published rows).")
        for r in same.itertuples(index=False):
            kept.append({"label": None, "protocol": r.protocol, "group": r.group, "method": r.method,
                         "name": r.method, "teacher": r.teacher or None, "steps": r.steps,
                         "guidance": r.guidance or None, "kimg": r.kimg, "prompts": r.prompts, "fid": r.fid,
                         "clip": r.clip, "fid_pm": None, "clip_pm": None, "fd_pm": None, "kid_x1000": None, "fd": None,
                         "kd_x1000": None, "fd_network": None,
                         "reference": False, "ours": False, "comparable": True, "deviations": "",
                         "source": r.source, "note": r.note, "path": None, "_refset": None, "_whole": False})
    networks = list(dict.fromkeys(k["fd_network"] for k in kept if k["fd_network"] is not None))
    columns = [FID_COLUMN, CLIP_COLUMN, KID_COLUMN] + [c for n in networks for c in network_columns(n)] + [
        c for c, _, _ in EXTRA_COLUMNS]
    for k in kept:                                       # each network's distances in its own columns
        for n in networks:
            fd_col, kd_col = network_columns(n)
            mine = k["fd_network"] == n
            k[fd_col.key], k[kd_col.key] = (k["fd"], k["kd_x1000"]) if mine else (None, None)
            k[f"{fd_col.key}_pm"] = k["fd_pm"] if mine else None
    value_keys = [c.key for c in columns]
    pm_keys = ["fid_pm", "clip_pm", *(f"{network_columns(n)[0].key}_pm" for n in networks),  # interval half-widths
               *(f"{c.key}_pm" for c, _, _ in EXTRA_COLUMNS)]
    cols = ["label", "protocol", "group", "method", "name", "teacher", "steps", "guidance", "kimg", "prompts",
            *value_keys, *pm_keys, "fd_network", "reference", "ours", "comparable", "deviations", "source", "note",
            "path", "_refset", "_whole"]
    if not kept:  # still a report: the empty table says why, and the apart list gives every reason
        notes.append(f"No row in this {protocol} table: every result is listed apart (below), and no published "
                     f"row was given for it." if filtered else "No row in this table: no result was given.")
    rows = pd.DataFrame(kept, columns=cols)
    for col in ("steps", "kimg", "prompts", *value_keys, *pm_keys):
        rows[col] = pd.to_numeric(rows[col], errors="coerce").astype("float64")
    for c in columns:
        rows[c.key] = rows[c.key].round(c.decimals)
    rows["label"] = _labels(rows)
    for col in ("comparable", "ours", "reference", "_whole"):  # an empty frame would otherwise hold objects
        rows[col] = rows[col].astype(bool)

    # Protocol blocks, then group order, then FID (then each FD; missing last), then CLIP (higher first):
    # stable, so ties keep input order.
    rows["_p"] = rows["protocol"].map(_protocol_order)
    rows["_g"] = rows["group"].map({g: i for i, g in enumerate(ROW_GROUPS)})
    rows["_clip"] = -rows["clip"]
    fd_keys = [c.key for c in columns if c.network is not None and c.key.startswith("fd_")]
    rows = rows.sort_values(["_p", "_g", "fid", *fd_keys, "_clip"], na_position="last", kind="stable")
    rows = rows.drop(columns=["_p", "_g", "_clip"]).reset_index(drop=True)
    protocols = list(dict.fromkeys(rows["protocol"]))

    # What can be compared: one protocol (its reference set is fixed), or for custom one reference set.
    rows["_cmp"] = [f"{p}|{s}" if p == "custom" else p for p, s in zip(rows["protocol"], rows["_refset"])]
    eligible = rows["comparable"] & ~rows["reference"]
    for c in columns:
        best = pd.Series(False, index=rows.index)
        for _, idx in rows[eligible & rows[c.key].notna()].groupby("_cmp").groups.items():
            if len(idx) < 2:                             # best of one is no information
                continue
            vals = rows.loc[idx, c.key]
            best.loc[idx] = vals.eq(vals.min() if c.lower_is_better else vals.max())
        rows[f"best_{c.key}"] = best

    rows["is_ref"] = False
    ref_label = None
    delta_cols = [("fid", "delta_fid", DECIMALS["delta_fid"]), ("clip", "delta_clip", DECIMALS["delta_clip"])]
    if delta_to:
        i = _find_row(rows, delta_to, excluded, protocol or "")
        rows.loc[i, "is_ref"] = True
        ref_label = rows.loc[i, "label"]
        same = rows["_cmp"] == rows.loc[i, "_cmp"]
        delta_cols += [(c.key, f"delta_{c.key}", c.decimals) for c in columns
                       if c.key in fd_keys and not pd.isna(rows.loc[i, c.key])]
        for key, dkey, nd in delta_cols:
            rows[dkey] = (rows[key] - rows.loc[i, key]).where(same).round(nd)
        if not same.all():
            notes.append(f"Δ only to rows comparable with {ref_label} (its protocol"
                         + (", its reference set)." if rows.loc[i, "protocol"] == "custom" else ")."))
    else:
        for _, dkey, _nd in delta_cols:
            rows[dkey] = float("nan")

    # Notes: the protocols first, then what is flagged and why.
    first = []
    for p in ([protocol] if filtered else protocols):
        if p == "custom":
            first.append("Protocol custom: each result follows its own recorded choices; compare with care.")
            sets = rows.loc[(rows["protocol"] == "custom") & ~rows["reference"], "_refset"].dropna().unique()
            if len(sets) > 1:
                first.append(f"Protocol custom: these results were measured against {len(sets)} different "
                             f"reference sets; best values compare only rows that share one.")
        elif p in PROTOCOLS:
            first.append(f"Protocol {p}: {PROTOCOLS[p].description}.")
        else:
            first.append(f"Protocol {p}: not known to this sidbench.")
    notes = first + notes
    flagged = rows[~rows["comparable"]]
    for why, labels in flagged.groupby(flagged["deviations"].replace("", "marked not comparable"), sort=False)["label"]:
        notes.append(f"† NOT comparable to published numbers ({', '.join(labels)}): {why}")
    for n in networks:
        notes.append(f"FD ({n}): Fréchet distance on {n} features, not on Inception v3: not an FID, never compared "
                     f"with FID or with published numbers.")
    refs = rows.loc[rows["reference"], "label"]
    if len(refs):
        notes.append(f"Reference rows ({', '.join(refs)}): the data itself, a floor for scale; never marked best.")
    whole = rows.loc[rows["_whole"], "label"]
    if len(whole):
        notes.append(f"KID of {', '.join(whole)}: every subset is the whole set (subset size >= N), so there is no "
                     f"spread over subsets to report.")
    if rows["kid_x1000"].notna().any() or any(c.key.startswith("kd_") for c in columns):
        notes.append(f"{KID_TITLE}: KID multiplied by 1000 (results files keep the raw value).")

    keep = [c for c in columns if c.key in ("fid", "clip", "kid_x1000") or rows[c.key].notna().any()]
    rows = rows.drop(columns=["_refset", "_whole", "_cmp"])
    ex = pd.DataFrame([{k: e[k] for k in ("label", "source", "protocol", "reason", "path")} for e in excluded],
                      columns=["label", "source", "protocol", "reason", "path"])
    shown = protocol if filtered else (", ".join(protocols) or "none")
    return ReportTable(protocol=shown, rows=rows, excluded=ex, delta_to=ref_label, notes=notes, filtered=filtered,
                       protocols=protocols, columns=keep)


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
