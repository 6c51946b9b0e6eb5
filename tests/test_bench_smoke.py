"""The GPU benchmarks run for real in their --smoke mode (tiny models on the CPU, same code path), so they work the
first time a GPU machine is lent, and record their row in bench/RESULTS.md's format (here into a copy of it)."""
from __future__ import annotations

import datetime
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def bench_module():
    """bench/gpu_distill_sd15.py as a module (its results helpers are shared by both benchmarks)."""
    spec = importlib.util.spec_from_file_location("gpu_distill_sd15_under_test", BENCH / "gpu_distill_sd15.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in line[1:-1].split("|")]


def section_table(text: str, script: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table under the ``## ... `bench/<script>` `` heading."""
    lines = text.splitlines()
    start = [i for i, l in enumerate(lines) if l.startswith("## ") and f"`bench/{script}`" in l]
    assert len(start) == 1, f"one section heading for {script}, found {len(start)}"
    end = next((i for i in range(start[0] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [l for l in lines[start[0] + 1:end] if l.startswith("|")]
    assert len(table) >= 2 and set(table[1].replace("|", "")) == {"-"}, table[:2]
    return cells(table[0]), [cells(l) for l in table[2:]]


# In this process (each script's main with its argv), as `python bench/<script> --smoke --results F` runs it,
# without paying a fresh interpreter's imports three times.
@pytest.mark.parametrize("script", ["gpu_distill_sd15.py", "gpu_eval_30k.py", "gpu_distill_families.py",
                                    "gpu_default_device.py"])
def test_gpu_benchmark_smoke_run_records_a_row(script, tmp_path, capsys, monkeypatch):
    original = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    results = tmp_path / "RESULTS.md"
    results.write_text(original, encoding="utf-8")
    header, rows = section_table(original, script)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their shared helpers from bench/
    spec = importlib.util.spec_from_file_location(f"smoke_{script[:-3]}", BENCH / script)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)
    days = {datetime.date.today().isoformat()}
    mod.main(["--smoke", "--results", str(results)])
    out = capsys.readouterr().out
    days.add(datetime.date.today().isoformat())  # a run across midnight may carry either date
    assert (BENCH / "RESULTS.md").read_text(encoding="utf-8") == original  # the repository's file is untouched
    text = results.read_text(encoding="utf-8")
    new_header, new_rows = section_table(text, script)
    assert new_header == header and header[:3] == ["date", "machine", "command"] and len(header) > 3
    assert len(new_rows) == len(rows) + 1 and new_rows[1:] == rows  # newest first, old rows kept
    row = new_rows[0]
    assert len(row) == len(header) and all(row)
    assert row[0] in days
    assert row[1].startswith("CPU smoke") and f"{os.cpu_count()} cores" in row[1]
    assert row[2].startswith(f"`python bench/{script} --smoke`") and str(tmp_path) not in row[2]
    assert all(any(ch.isdigit() for ch in c) for c in row[3:]), row  # a figure in every figure cell
    # Only that one line was added; every other section is as it was.
    added = [l for l in text.splitlines() if l not in original.splitlines()]
    assert len(added) == 1 and cells(added[0]) == row
    assert text.replace(added[0] + "\n", "", 1) == original
    assert f"| {' | '.join(row)} |" in out  # the row printed is the row recorded


def test_record_row_creates_inserts_and_refuses_another_format(tmp_path):
    b = bench_module()
    header = ["date", "machine", "command", "figure"]
    f = tmp_path / "R.md"
    b.record_row(f, "x.py", "X", header, ["d1", "m", "`c`", "1 s"])  # no file: created with section and table
    assert f.read_text() == ("# Benchmark results\n\n## X — `bench/x.py`\n\n| date | machine | command | figure |\n"
                             "|---|---|---|---|\n| d1 | m | `c` | 1 s |\n")
    b.record_row(f, "x.py", "X", header, ["d2", "m|n", "`c`", "2 s"])  # newest first; a '|' cannot split a cell
    assert f.read_text().splitlines()[-2:] == ["| d2 | m/n | `c` | 2 s |", "| d1 | m | `c` | 1 s |"]
    f.write_text("# R\n\n## Y — `bench/y.py`\nGoal: y.\n\n## Z — `bench/z.py`\nz\n")
    b.record_row(f, "y.py", "Y", header, ["d", "m", "c", "3"])  # a section without a table gets one, in place
    assert f.read_text() == ("# R\n\n## Y — `bench/y.py`\nGoal: y.\n\n| date | machine | command | figure |\n"
                             "|---|---|---|---|\n| d | m | c | 3 |\n\n## Z — `bench/z.py`\nz\n")
    with pytest.raises(ValueError, match="columns"):
        b.record_row(f, "y.py", "Y", [*header, "other"], ["d", "m", "c", "3", "4"])
    with pytest.raises(ValueError, match="cells"):
        b.record_row(f, "y.py", "Y", header, ["d", "m"])
    assert b.command_line(["bench/x.py", "--smoke", "--results", "/tmp/r.md", "--n", "3", "--results=/q"]) == \
        "python bench/x.py --smoke --n 3"
