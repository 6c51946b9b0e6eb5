"""`sidbench report`: tables against published numbers, one protocol at a time; plots; the HTML page."""
from __future__ import annotations

import csv
import io
import json
import os
import math
from pathlib import Path

import pandas as pd
import pytest

from sidbench.core import logkeys
import typer
from typer.testing import CliRunner

from sidbench.core.errors import SidbenchError
from sidbench.report import (build_table, render, guidance_value, html_report, load_published, load_results,
                             plot_tradeoff, plot_training_curves, to_csv, to_html, to_latex, to_markdown)
from sidbench.cli.report import report_cmd
from sidbench.eval.results import mark_not_comparable, new_results, save, subject

REPO = Path(__file__).resolve().parents[1]
SHARED_PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "data" / "published.csv"

PUBLISHED = """method,teacher,steps,guidance,protocol,prompts,fid,clip,kimg,source,note
SD1.5 teacher,SD1.5,50,cfg 3,coco2014-30k,30000,8.59,0.308,,paper T Table 1,
PeRFlow,SD1.5,4,,coco2014-30k,30000,11.31,,,paper P,
SiD-LSG,SD1.5,1,LSG k=1.5,coco2014-30k,30000,8.15,0.304,18789,paper S Table 1,longer training
SiD-LSG,SD1.5,1,LSG k=2,coco2014-30k,30000,9.56,0.313,,paper S Table 1,
InstaFlow-0.9B,SD1.5,1,,coco2017-5k,5000,23.3,,,paper I,different protocol
"""


def _result(path: Path, protocol: str, name: str, guidance: str, fid: float, clip: float | None,
            kid: float | None = None, not_comparable: str | None = None) -> Path:
    res = new_results(protocol=protocol, command=["test"])
    res["subject"] = subject(name=name, method="SiD-LSG", teacher="SD1.5", steps=1, guidance=guidance, kimg=5000)
    res["metrics"]["fid"] = {"value": fid, "n_gen": 30000, "n_ref": 40504, "mode": "clean"}
    if clip is not None:
        res["metrics"]["clip"] = {"value": clip, "n": 30000, "variant": "gigagan", "model": {"name": "ViT-g-14"},
                                  "prompts_truncated": 0}
    if kid is not None:
        res["metrics"]["kid"] = {"mean": kid, "std": 1e-4, "num_subsets": 100, "subset_size": 1000, "seed": 0}
    if not_comparable:
        mark_not_comparable(res, not_comparable)
    save(res, path)
    return path


@pytest.fixture
def world(tmp_path):
    """Four results files (two protocols, one not comparable) and a small published table."""
    pub = tmp_path / "published.csv"
    pub.write_text(PUBLISHED)
    files = [
        _result(tmp_path / "a.json", "coco2014-30k", "run-a", "LSG k=1.5", 8.4567, 0.30512, kid=0.0012345),
        _result(tmp_path / "b.json", "coco2014-30k", "run_b", "LSG k=2", 7.999, 0.3101),
        _result(tmp_path / "c.json", "coco2017-5k", "run-c", "LSG k=1.5", 20.1, 0.3),
        _result(tmp_path / "d.json", "coco2014-30k", "run-d", "LSG k=3", 50.0, 0.25,
                not_comparable="a network with random weights (architecture only)"),
    ]
    return tmp_path, files, pub


@pytest.fixture
def table(world):
    _, files, pub = world
    return build_table(load_results(files), load_published(pub), "coco2014-30k", delta_to="run-a")


def _nan_eq(a, b):
    return (isinstance(a, float) and math.isnan(a) and b is None) or a == pytest.approx(b, abs=1e-9)


def test_load_results_one_row_per_file(world):
    _, files, _ = world
    df = load_results(files)
    assert list(df["name"]) == ["run-a", "run_b", "run-c", "run-d"]
    assert list(df["protocol"]) == ["coco2014-30k", "coco2014-30k", "coco2017-5k", "coco2014-30k"]
    assert list(df["comparable"]) == [True, True, True, False]
    assert df.loc[0, "fid"] == 8.4567 and df.loc[0, "kid"] == 0.0012345 and df.loc[0, "n_gen"] == 30000
    shown = df.loc[0, "source"].removeprefix("ours (").removesuffix(")")   # relative to here, or the file name
    assert not os.path.isabs(shown), shown                                # never an absolute path
    assert shown == "a.json" or (Path.cwd() / shown).resolve() == files[0].resolve(), shown
    assert load_results(files[:1], relative_to=files[0].parent.parent).loc[0, "source"] == \
        f"ours ({files[0].parent.name}/a.json)"


def test_load_results_refuses_other_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"fid": 3}))
    with pytest.raises(SidbenchError, match="not a sidbench.results/1"):
        load_results([bad])
    with pytest.raises(SidbenchError, match="does not exist"):
        load_results([tmp_path / "missing.json"])


def test_table_values_grouping_sorting_deltas_best(table):
    r = table.rows
    assert list(r["label"]) == ["SD1.5 teacher, SD1.5, cfg 3", "PeRFlow, SD1.5, 4 steps", "run_b",
                                "SiD-LSG, SD1.5, LSG k=1.5, 18789 kimg", "run-a", "SiD-LSG, SD1.5, LSG k=2"]
    assert list(r["group"]) == ["teacher", "multi-step", "one-step", "one-step", "one-step", "one-step"]
    assert list(r["ours"]) == [False, False, True, False, True, False]
    # Rounded as papers round: FID 2 decimals, CLIP 3, KID x1000 2.
    assert list(r["fid"]) == [8.59, 11.31, 8.00, 8.15, 8.46, 9.56]
    assert [_nan_eq(a, b) for a, b in zip(r["clip"], [0.308, None, 0.310, 0.304, 0.305, 0.313])] == [True] * 6
    assert r.loc[r["label"] == "run-a", "kid_x1000"].item() == 1.23
    # Deltas to run-a.
    assert list(r["delta_fid"]) == [0.13, 2.85, -0.46, -0.31, 0.0, 1.10]
    assert [_nan_eq(a, b) for a, b in zip(r["delta_clip"], [0.003, None, 0.005, -0.001, 0.0, 0.008])] == [True] * 6
    assert list(r["is_ref"]) == [False, False, False, False, True, False]
    assert table.delta_to == "run-a"
    # Best FID (lowest) and best CLIP (highest), over the whole table.
    assert list(r.loc[r["best_fid"], "label"]) == ["run_b"]
    assert list(r.loc[r["best_clip"], "label"]) == ["SiD-LSG, SD1.5, LSG k=2"]
    assert any("other protocols (coco2017-5k)" in n for n in table.notes)


def test_other_protocol_and_not_comparable_are_listed_apart(table):
    assert "run-c" not in set(table.rows["label"]) and "run-d" not in set(table.rows["label"])
    assert "InstaFlow-0.9B" not in set(table.rows["method"])
    ex = table.excluded.set_index("label")
    assert list(ex.index) == ["run-c", "run-d"]
    assert ex.loc["run-c", "reason"] == "protocol coco2017-5k, this table is coco2014-30k"
    assert ex.loc["run-d", "reason"].startswith("not comparable: a network with random weights")
    md = to_markdown(table)
    main, apart = md.split("Listed apart")
    assert "run-c" not in main and "run-d" not in main
    assert "run-c" in apart and "coco2017-5k" in apart and "run-d" in apart and "not comparable" in apart


def test_not_comparable_kept_only_when_asked_and_flagged(world):
    _, files, pub = world
    t = build_table(load_results(files), load_published(pub), "coco2014-30k", include_not_comparable=True)
    assert "run-d" in set(t.rows["label"]) and list(t.excluded["label"]) == ["run-c"]
    assert "run-d (ours) †" in to_markdown(t).replace("SiD-LSG: ", "")
    assert any(n.startswith("† NOT comparable to published numbers (run-d): a network") for n in t.notes)


def test_table_of_the_other_protocol(world):
    _, files, pub = world
    t = build_table(load_results(files), load_published(pub), "coco2017-5k")
    assert list(t.rows["label"]) == ["run-c", "InstaFlow-0.9B, SD1.5"]
    assert set(t.excluded["label"]) == {"run-a", "run_b", "run-d"}
    assert t.rows["delta_fid"].isna().all()


def test_delta_to_must_name_one_row_of_the_table(world):
    _, files, pub = world
    ours, published = load_results(files), load_published(pub)
    with pytest.raises(SidbenchError, match="matches 2 rows"):
        build_table(ours, published, "coco2014-30k", delta_to="SiD-LSG")
    with pytest.raises(SidbenchError, match="listed apart"):
        build_table(ours, published, "coco2014-30k", delta_to="run-c")
    with pytest.raises(SidbenchError, match="matches no row"):
        build_table(ours, published, "coco2014-30k", delta_to="nope")
    t = build_table(ours, published, "coco2014-30k", delta_to="sid-lsg, sd1.5, lsg k=2")   # a label, any case
    assert t.rows.loc[t.rows["is_ref"], "fid"].item() == 9.56
    with pytest.raises(SidbenchError, match="unknown protocol"):
        build_table(ours, published, "coco2014-10k")


def test_markdown_text(table):
    md = to_markdown(table)
    assert "| Group" in md and "ΔFID" in md and "KID×10³" in md
    assert "**8.00**" in md and "**0.313**" in md
    assert "| ref." in md or " ref. |" in md
    assert "+0.13" in md and "-0.46" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 6                                          # header, rule, 6 rows
    assert lines[2].startswith("| Teacher") and lines[3].startswith("| Multi-step") and lines[4].startswith("| One-step")


def test_latex_text(table):
    tex = to_latex(table)
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert tex.count(r"\midrule") == 3                                   # after the header, then between 3 groups
    body = tex.split(r"\midrule", 1)[1]
    assert body.index("Multi-step") > body.index(r"\midrule") and "\\midrule\nOne-step" in body
    assert r"\textbf{8.00}" in tex and r"\textbf{0.313}" in tex
    assert tex.count(r"\textbf") == 2
    assert r"run\_b" in tex                                              # escaped
    assert r"$-0.46$" in tex and r"$+0.13$" in tex and r"$\Delta$FID" in tex
    rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    assert len(rows) == 1 + 6
    assert "% Listed apart" in tex and "%   run-c" in tex
    assert "run-c" not in tex.split(r"\end{tabular}")[0]


def test_csv_text(table):
    text = to_csv(table)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].startswith("protocol,group,label,method,name,teacher,steps,guidance,kimg,prompts,fid,clip")
    assert len(rows) == 6
    assert [r["fid"] for r in rows] == ["8.59", "11.31", "8.00", "8.15", "8.46", "9.56"]
    assert [r["delta_fid"] for r in rows] == ["0.13", "2.85", "-0.46", "-0.31", "0.00", "1.10"]
    assert [r["clip"] for r in rows] == ["0.308", "", "0.310", "0.304", "0.305", "0.313"]
    a = rows[4]
    assert (a["label"], a["kid_x1000"], a["is_ref"], a["ours"], a["steps"], a["kimg"]) == \
        ("run-a", "1.23", "True", "True", "1", "5000")
    assert {r["protocol"] for r in rows} == {"coco2014-30k"}
    assert "run-c" not in text and "run-d" not in text


def test_packaged_published_table():
    df = load_published()
    assert len(df) >= 20 and (df["source"] != "").all()
    assert set(df["group"]) <= {"teacher", "multi-step", "one-step"}
    sid = df[(df["method"] == "SiD-LSG") & (df["kimg"] == 18789)]
    assert sid["fid"].item() == 8.15 and sid["clip"].item() == 0.304 and sid["protocol"].item() == "coco2014-30k"
    assert set(df.loc[df["method"].str.contains("teacher"), "group"]) == {"teacher"}
    assert set(df.loc[df["steps"] > 1, "group"]) <= {"teacher", "multi-step"}
    if SHARED_PUBLISHED.is_file():                                     # same facts as the shared table
        shared = pd.read_csv(SHARED_PUBLISHED, dtype=str, keep_default_na=False)
        ours = pd.read_csv(REPO / "sidbench" / "report" / "published.csv", dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(ours[list(shared.columns)], shared)


def test_published_rows_need_a_source_and_numbers(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text(PUBLISHED.splitlines()[0] + "\nX,SD1.5,1,,coco2014-30k,30000,9.0,,,,\n")
    with pytest.raises(SidbenchError, match="line 2: X has no source"):
        load_published(p)
    p.write_text(PUBLISHED.splitlines()[0] + "\nX,SD1.5,1,,coco2014-30k,30000,nine,,,src,\n")
    with pytest.raises(SidbenchError, match="fid='nine' is not a number"):
        load_published(p)
    p.write_text("method,fid\nX,9\n")
    with pytest.raises(SidbenchError, match="missing column"):
        load_published(p)


def test_guidance_value():
    assert guidance_value("LSG k=1.5") == 1.5 and guidance_value("cfg 3") == 3.0 and guidance_value(None) is None


def _log(path: Path) -> Path:
    lines = [{logkeys.KIMG: k, logkeys.PROXY_FID: 40 / (1 + k / 100), logkeys.PROXY_CLIP: 0.25 + k / 20000, "loss": -0.1}
             for k in range(0, 1001, 100)]
    lines[3].pop(logkeys.PROXY_CLIP)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    return path


def test_plots_written(table, tmp_path):
    png, svg = plot_tradeoff(table, tmp_path / "plots" / "tradeoff")
    assert png.suffix == ".png" and png.stat().st_size > 1024 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()
    png, svg = plot_training_curves(_log(tmp_path / "log.jsonl"), tmp_path / "plots" / "curves")
    assert png.stat().st_size > 1024 and "<svg" in svg.read_text()
    assert "proxy FID" in svg.read_text() or "proxy" in svg.read_text()


def test_training_log_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kimg": 1, "proxy_fid": 3}\n{"proxy_fid": 2}\n')
    with pytest.raises(SidbenchError, match="line 2: every record needs a numeric 'kimg'"):
        plot_training_curves(bad, tmp_path / "c")
    bad.write_text('{"kimg": 1, "loss": 3}\n')
    with pytest.raises(SidbenchError, match="no record has 'proxy_fid' or 'proxy_clip'"):
        plot_training_curves(bad, tmp_path / "c")


def test_html_report(table, tmp_path):
    from PIL import Image

    png, _ = plot_tradeoff(table, tmp_path / "tradeoff")
    grid = tmp_path / "grid.png"
    Image.new("RGB", (64, 32), (200, 30, 30)).save(grid)
    out = html_report(table, {"FID-CLIP trade-off": png}, image_grid=grid, out=tmp_path / "r.html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "</html>" in page
    assert page.count("data:image/png;base64,") == 2
    assert "run-a" in page and "SD1.5 teacher" in page and "font-weight: bold" in page
    assert "Listed apart" in page and "run-c" in page.split("Listed apart")[1]
    assert "run-c" not in to_html(table).split("Listed apart")[0]


def _app():
    app = typer.Typer()
    app.command("report")(report_cmd)

    @app.command("other")
    def _other():                                   # a second command, so "report" is a subcommand as in sidbench
        pass

    return app


def test_cli(world):
    tmp, files, pub = world
    runner = CliRunner()
    args = ["report", *map(str, files), "--against", str(pub), "--delta-to", "run-a", "--protocol", "coco2014-30k"]
    r = runner.invoke(_app(), args)
    assert r.exit_code == 0, r.output
    assert "**8.00**" in r.stdout and "| Teacher" in r.stdout
    assert "listed apart" in r.stderr and "run-c" in r.stderr

    r = runner.invoke(_app(), [*args, "--format", "latex", "--out", str(tmp / "t.tex")])
    assert r.exit_code == 0, r.output
    assert r"\toprule" in (tmp / "t.tex").read_text()

    r = runner.invoke(_app(), [*args, "--format", "csv", "--out", str(tmp / "t.csv"), "--plots-dir", str(tmp / "p")])
    assert r.exit_code == 0, r.output
    assert len(list(csv.DictReader((tmp / "t.csv").open()))) == 6
    assert (tmp / "p" / "tradeoff.png").stat().st_size > 1024 and (tmp / "p" / "tradeoff.svg").is_file()

    log = _log(tmp / "log.jsonl")
    r = runner.invoke(_app(), [*args, "--format", "html", "--out", str(tmp / "r.html"), "--curves", str(log)])
    assert r.exit_code == 0, r.output
    assert (tmp / "r.html").read_text().count("data:image/png;base64,") == 2

    r = runner.invoke(_app(), ["report", str(files[0]), "--against", "none"])
    assert r.exit_code == 0 and "SD1.5 teacher" not in r.stdout and "run-a" in r.stdout


@pytest.mark.parametrize("extra, message", [
    (["--format", "docx"], "'docx' is not one of 'md', 'latex', 'csv', 'html'"),
    (["--format", "html"], "--out"),
    (["--grid", "g.png"], "--format html"),
    (["--curves", "log.jsonl"], "--plots-dir"),
    (["--delta-to", "SiD-LSG"], "matches 2 rows"),
    (["--protocol", "coco9"], "unknown protocol"),
])
def test_cli_errors(world, extra, message):
    _, files, pub = world
    r = CliRunner().invoke(_app(), ["report", *map(str, files), "--against", str(pub), "--protocol", "coco2014-30k",
                                    *extra])
    assert r.exit_code == 2
    said = " ".join(r.stderr.replace("│", " ").split())
    assert ("error:" in r.stderr or "Invalid value" in r.stderr) and message in said


def test_a_table_with_every_result_apart_still_renders_and_duplicate_names_stay_apart(world, tmp_path):
    _, files, _ = world
    empty = build_table(load_results([files[2]]), None, "coco2014-30k")
    assert len(empty.rows) == 0 and list(empty.excluded["label"]) == ["run-c"]
    for fmt in ("md", "latex", "html"):
        text = render(empty, fmt)
        assert "run-c" in text and "every result is listed apart" in text
    assert render(empty, "csv").count("\n") == 1                    # the header: no row
    twin = _result(tmp_path / "twin.json", "coco2014-30k", "run-a", "LSG k=2", 9.0, 0.31)
    t = build_table(load_results([files[0], twin]), None, "coco2014-30k", delta_to="twin")     # a file stem
    assert list(t.rows["label"]) == ["run-a (a.json)", "run-a (twin.json)"]
    assert t.delta_to == "run-a (twin.json)" and list(t.rows["delta_fid"]) == [-0.54, 0.0]
