"""The one results schema, shared by every metric, the CLI, the Python API and the report.

A results file is JSON: what was measured (``metrics``), on what (``inputs``), how (``preprocessing``,
``extractors``, ``protocol``), and by what (``provenance``: code commit, packages, command, time).
"""
from __future__ import annotations

import sys
from typing import Any

from sidbench.core.atomic import write_json
from sidbench.core.errors import SidbenchError
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


SUBJECT_KEYS = ("name", "method", "teacher", "steps", "guidance", "kimg", "checkpoint")


def subject(**fields) -> dict:
    """What made the evaluated images, as a table row needs it; unknown keys are an error."""
    unknown = set(fields) - set(SUBJECT_KEYS)
    if unknown:
        raise SidbenchError(f"unknown subject field(s) {sorted(unknown)}; expected {', '.join(SUBJECT_KEYS)}")
    return {k: fields.get(k) for k in SUBJECT_KEYS}


def warn(results: dict, message: str) -> None:
    results["warnings"].append(message)


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


def table_rows(results: dict) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows for a readable table."""
    rows = []
    m = results["metrics"]
    if "fid" in m:
        f = m["fid"]
        note = f"N={f['n_gen']}/{f['n_ref']}, {f['mode']}"
        if f.get("singular_covariance"):
            note += ", N<=dim: singular covariance"
        rows.append(("FID", f"{f['value']:.4f}", note))
    if "clip" in m:
        c = m["clip"]
        note = f"N={c['n']}, {c['variant']}, {c['model']['name']}"
        if c.get("prompts_truncated"):
            note += f", {c['prompts_truncated']} prompts truncated"
        rows.append(("CLIP", f"{c['value']:.4f}", note))
    if "pr" in m:
        p = m["pr"]
        rows.append(("Precision / Recall", f"{p['precision']:.4f} / {p['recall']:.4f}",
                     f"k={p['k']}, N={p['n_gen']}/{p['n_real']}, {p.get('extractor', 'vgg16-fc2')}"))
        if "density" in p:
            rows.append(("Density / Coverage", f"{p['density']:.4f} / {p['coverage']:.4f}", f"k={p['k']}"))
    if "kid" in m:
        k = m["kid"]
        rows.append(("KID", f"{k['mean']:.6f} ± {k['std']:.6f}",
                     f"{k['num_subsets']} subsets of {k['subset_size']}, seed {k['seed']}"))
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
