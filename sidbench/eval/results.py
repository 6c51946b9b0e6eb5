"""The one results schema, shared by every metric, the CLI, the Python API and the report.

A results file is JSON: what was measured (``metrics``), on what (``inputs``), how (``preprocessing``,
``extractors``, ``protocol``), and by what (``provenance``: code commit, packages, command, time).
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

from sidbench.core.atomic import write_json
from sidbench.core.errors import SidbenchError, SidbenchWarning
from sidbench.core.provenance import environment, git_commit, now_iso, package_versions

SCHEMA = "sidbench.results/1"
REQUIRED = ("schema", "created", "protocol", "inputs", "metrics", "provenance")


def new_results(*, protocol: str = "custom", command: list[str] | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": now_iso(),
        "protocol": {"name": protocol, "comparable": True, "deviations": []},
        "subject": subject(),
        "inputs": {},
        "preprocessing": {},
        "extractors": {},
        "metrics": {},
        "warnings": [],
        "provenance": {
            "command": list(command if command is not None else sys.argv),
            "sidbench": git_commit(),
            "packages": package_versions(),
            "environment": environment(),
        },
    }


SUBJECT_KEYS = ("name", "method", "teacher", "steps", "guidance", "kimg", "checkpoint", "kind")  # kind: "reference" for data rows


def subject(**fields) -> dict:
    """What made the evaluated images, as a table row needs it; unknown keys are an error."""
    unknown = set(fields) - set(SUBJECT_KEYS)
    if unknown:
        raise SidbenchError(f"unknown subject field(s) {sorted(unknown)}; expected {', '.join(SUBJECT_KEYS)}")
    return {k: fields.get(k) for k in SUBJECT_KEYS}


def warn(results: dict, message: str) -> None:
    """Into the results (they travel with the numbers) and through Python's ``warnings`` (API users see it)."""
    results["warnings"].append(message)
    warnings.warn(message, SidbenchWarning, stacklevel=3)


def mark_not_comparable(results: dict, reason: str) -> None:
    """Anything that breaks comparability with published numbers is listed, never hidden."""
    results["protocol"]["comparable"] = False
    results["protocol"]["deviations"].append(reason)


def validate(results: dict) -> dict:
    missing = [k for k in REQUIRED if k not in results]
    if missing or results.get("schema") != SCHEMA:
        raise SidbenchError(f"not a {SCHEMA} results file (missing {missing or 'schema tag'})")
    return results


def save(results: dict, path) -> None:
    write_json(path, validate(results))


INCEPTION_EXTRACTORS = ("inception-v3-tf", "inception-v3-pt")   # FID's network (TF weights, or their port)
KID_TITLE = "KID×10³"                                 # KID is printed x1000 (as in papers); results keep it raw


def feature_network(extractor: dict | None) -> str | None:
    """The network a Fréchet (and kernel) distance was computed on, as tables name it; None: Inception v3 (FID).

    ``extractor``: ``results["extractors"]["fid"]`` (the extractor's ``describe()``). Inception v3 with random
    weights stays FID's network (such results are marked not comparable); any other network is named, with its
    seed when its weights are random. No extractor recorded (an older or hand-made file): taken as FID."""
    if not extractor:
        return None
    name = str(extractor.get("name") or "unnamed network")
    if name in INCEPTION_EXTRACTORS:
        return None
    weights = extractor.get("weights") or {}
    if weights.get("random"):
        seed = weights.get("seed")
        return f"{name}, random weights" + ("" if seed is None else f" seed {seed}")
    return name


def kid_whole_set(kid: dict | None) -> bool:
    """Every KID subset is the whole of both sides (subset size >= N): the std over subsets is 0 by
    construction and measures nothing."""
    kid = kid or {}
    m, n_gen, n_ref = kid.get("subset_size"), kid.get("n_gen"), kid.get("n_ref")
    return all(isinstance(v, (int, float)) for v in (m, n_gen, n_ref)) and m >= n_gen and m >= n_ref


def kid_whole_set_warning(kid: dict) -> str:
    return (f"KID: every subset is the whole set (subset size {kid['subset_size']}, {kid['n_gen']} generated and "
            f"{kid['n_ref']} reference images), so there is no spread over subsets to report (its std is 0 by "
            f"construction); use --kid-subset-size below N for one")


def _interval_text(metric: dict) -> str:
    """' ± z std' (the bootstrap's sampling spread at this N), where there is an interval."""
    from sidbench.eval.bootstrap import spread

    ci = metric.get("interval")
    return "" if not ci else f" ± {spread(ci):.4f}"


def _interval_note(metric: dict) -> str:
    ci = metric.get("interval")
    if not ci:
        return ""
    kind = "basic" if ci["method"].startswith("basic") else "percentile"
    return (f"; ± = z x bootstrap std; {100 * ci['level']:g}% {kind} bootstrap interval [{ci['low']:.4f}, "
            f"{ci['high']:.4f}], bias {ci['bias']:+.4f}, B={ci['replicates']}, seed {ci['seed']}")


def table_rows(results: dict) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows for a readable table. KID is x1000, as the report prints it."""
    rows = []
    m = results["metrics"]
    net = feature_network((results.get("extractors") or {}).get("fid"))
    not_inception = f"; {net} features, not Inception v3: not an FID" if net else ""
    if "fid" in m:
        f = m["fid"]
        note = f"N={f['n_gen']}/{f['n_ref']}, {f['mode']}"
        if f.get("singular_covariance"):
            note += ", N<=dim: singular covariance"
        rows.append(("FID" if net is None else f"FD ({net})", f"{f['value']:.4f}" + _interval_text(f),
                     note + not_inception + _interval_note(f)))
    if "fid_infinity" in m:
        fi = m["fid_infinity"]
        rows.append(("FID∞" if net is None else f"FD∞ ({net})", f"{fi['value']:.4f}",
                     f"fit of FID_N = FID∞ + c/N over N = {fi['ns'][0]}..{fi['ns'][-1]} ({len(fi['ns'])} sizes), "
                     f"c = {fi['slope']:.4g}"))
    if "clip" in m:
        c = m["clip"]
        note = f"N={c['n']}, {c['variant']}, {c['model']['name']}"
        if c.get("prompts_truncated"):
            note += f", {c['prompts_truncated']} prompts truncated"
        rows.append(("CLIP", f"{c['value']:.4f}" + _interval_text(c), note + _interval_note(c)))
    if "fd_dinov2" in m:
        f = m["fd_dinov2"]
        rows.append(("FD-DINOv2", f"{f['value']:.4f}" + _interval_text(f),
                     f"N={f['n_gen']}/{f['n_ref']}, {f['extractor']}, {f['resize']} 224" + _interval_note(f)))
    if "cmmd" in m:
        c = m["cmmd"]
        rows.append(("CMMD", f"{c['value']:.4f}" + _interval_text(c),
                     f"N={c['n_gen']}/{c['n_ref']}, {c['extractor']}, sigma {c['sigma']:g}, x{c['scale']:g}, "
                     f"V-statistic" + _interval_note(c)))
    if "aesthetic" in m:
        a = m["aesthetic"]
        rows.append(("Aesthetic", f"{a['value']:.4f}" + _interval_text(a),
                     f"N={a['n']}, LAION predictor v2 on {a['model']['clip']}" + _interval_note(a)))
    if "hps" in m:
        h = m["hps"]
        rows.append((f"HPS{h['version']}", f"{h['value']:.4f}" + _interval_text(h),
                     f"N={h['n']}, cosine (the benchmark prints x100: {h['value_x100']:.2f})" + _interval_note(h)))
    if "pickscore" in m:
        p = m["pickscore"]
        rows.append(("PickScore", f"{p['value']:.4f}" + _interval_text(p), f"N={p['n']}, exp(logit_scale) x cosine"
                     + _interval_note(p)))
    if "image_reward" in m:
        r = m["image_reward"]
        rows.append(("ImageReward", f"{r['value']:.4f}" + _interval_text(r),
                     f"N={r['n']}, v1.0, standardised reward" + _interval_note(r)))
    if "lpips_diversity" in m:
        d = m["lpips_diversity"]
        rows.append(("LPIPS diversity", f"{d['value']:.4f}" + _interval_text(d),
                     f"{d['prompts']} prompts x {d['images_per_prompt']} images, all pairs, AlexNet v0.1, "
                     f"{d['resolution']}" + _interval_note(d)))
    if "vendi" in m:
        v = m["vendi"]
        rows.append(("Vendi", f"{v['value']:.3f}", f"N={v['n']}, cosine kernel on {v['features']} features, q={v['q']}"))
    if "pr" in m:
        p = m["pr"]
        rows.append(("Precision / Recall", f"{p['precision']:.4f} / {p['recall']:.4f}",
                     f"k={p['k']}, N={p['n_gen']}/{p['n_real']}, {p.get('extractor', 'vgg16-fc2')}"))
        if "density" in p:
            rows.append(("Density / Coverage", f"{p['density']:.4f} / {p['coverage']:.4f}", f"k={p['k']}"))
    if "kid" in m:
        k = m["kid"]
        note = f"{k['num_subsets']} subsets of {k['subset_size']}, seed {k['seed']}"
        if kid_whole_set(k):
            value = f"{k['mean'] * 1e3:.4f}"
            note += ": every subset is the whole set, no spread"
        else:
            value = f"{k['mean'] * 1e3:.4f} ± {k['std'] * 1e3:.4f}"
            for side in ("n_gen", "n_ref"):
                if isinstance(k.get(side), int) and k["subset_size"] >= k[side]:
                    note += f"; every subset holds all {k[side]} {'generated' if side == 'n_gen' else 'reference'} images"
        title = KID_TITLE if net is None else f"KD×10³ ({net})"
        rows.append((title, value, note + (f"; kernel distance (KID's) on {net} features" if net else "")))
    return rows


def print_table(results: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=False)
    proto = results["protocol"]
    title = f"sidbench eval — protocol {proto['name']}" + ("" if proto["comparable"] else " (NOT comparable)")
    table = Table(title=title)
    for col in ("metric", "value", "details"):
        table.add_column(col)
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    for d in proto["deviations"]:
        console.print(f"[yellow]not comparable:[/] {d}")
    for w in results["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    kid = results["metrics"].get("kid")
    if kid and kid_whole_set(kid) and not any(w.startswith("KID: every subset") for w in results["warnings"]):
        console.print(f"[yellow]warning:[/] {kid_whole_set_warning(kid)}", highlight=False)
