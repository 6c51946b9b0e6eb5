"""What a report means, on results made by the real ``evaluate`` (the demo's world-cnn, random-weight Inception,
a test stand-in network): whose rows a table shows and on which protocol, which column a distance goes in, which
rows can be best, how sources and KID are printed, and that ``eval`` and ``report`` print KID in one unit.

Each test is a friction a user met: every custom result listed apart from a default coco2014-30k table; FDs of
three networks sharing the FID column; the data floor bolded as best; absolute paths as sources; KID printed
"± 0.000000" with no word that every subset was the whole set; KID raw in ``eval`` but x1000 in ``report``.
"""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import sidbench.demo  # noqa: F401  (registers the world-cnn extractor)
from conftest import tiny_extractor
from sidbench.cli.app import app
from sidbench.demo.run import ASSETS
from sidbench.demo.world import sample_world
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.extractors.registry import build_extractor
from sidbench.eval.results import print_table, save
from sidbench.report import build_table, load_published, load_results, render, to_csv, to_markdown
from sidbench.report.tables import KID_TITLE

N = 160                                   # enough for the world-cnn FD of true images to be the lowest


def _quiet(**kw) -> EvalConfig:
    return EvalConfig(use_cache=False, progress=False, **kw)


@pytest.fixture(scope="module")
def made(tmp_path_factory, inception_random):
    """Results files written by ``evaluate``: the demo world's samplers on world-cnn (custom protocol), the data
    floor (true images, marked as reference), one on random-weight Inception, one on a stand-in network, and a
    coco2014-30k run with deviations (on world-cnn)."""
    d = tmp_path_factory.mktemp("results")
    wc = build_extractor("world-cnn", weights=str(ASSETS / "world_cnn.safetensors"))
    ref, _ = sample_world(N, 16, seed=10)
    floor, _ = sample_world(N, 16, seed=11)
    other, _ = sample_world(N, 16, seed=12)
    rng = np.random.default_rng(0)
    noisy = np.clip(other.astype(int) + rng.integers(-80, 81, other.shape), 0, 255).astype(np.uint8)
    swapped = np.ascontiguousarray(other[..., ::-1])                 # colours wrong: far from the data
    world = _quiet(mode="inside-network", kid=True)                  # KID subsets of min(N, 1000) = N: the whole set
    files = {}

    def run(key, images, reference, cfg, subject, extractor=wc, edit=None):
        res = evaluate(images, reference, cfg, extractor=extractor, subject=subject)
        if edit:
            edit(res)
        save(res, d / f"{key}.json")
        files[key] = d / f"{key}.json"
        return res

    with pytest.warns(Warning):                                      # N <= dim: singular covariance, said
        run("floor", floor, ref, world, {"name": "true images (FD floor)", "method": "reference"})
        run("noisy", noisy, ref, world, {"name": "noisy sampler", "method": "SiD-LSG", "steps": 1})
        run("swapped", swapped, ref, world, {"name": "swapped colours", "method": "SiD-LSG", "steps": 1})
        run("rand", noisy[:4], ref[:4], _quiet(kid=True, kid_subset_size=3, batch_size=4),
            {"name": "rand-inception", "method": "SiD-LSG", "steps": 1}, extractor=inception_random)
        run("tiny", noisy[:8], ref[:8], _quiet(), {"name": "tiny-net", "steps": 1}, extractor=tiny_extractor())
        run("coco", noisy[:8], ref[:8], _quiet(mode="inside-network", protocol="coco2014-30k", allow_deviation=True),
            {"name": "coco-on-world-cnn", "method": "SiD-LSG", "steps": 1})
        # The demo's own floor row, marked the way the demo can mark it: subject.kind = "reference".
        run("floor_kind", floor, ref, world, {"name": "floor by kind"}, edit=lambda r: r["subject"].update(kind="reference"))
    return d, files


def _cli(*args, cwd=None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    r = CliRunner().invoke(app, ["report", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.stdout, r.stderr


def _header(md: str) -> list[str]:
    return [c.strip() for c in next(ln for ln in md.splitlines() if ln.startswith("|")).strip("|").split("|")]


# ---------------------------------------------------------------------------------- whose rows, which protocol

def test_default_report_shows_own_results_with_their_protocol_and_only_matching_published_rows(made):
    _, f = made
    custom = [f[k] for k in ("floor", "noisy", "swapped", "rand", "tiny")]
    out, err = _cli(*custom)                                         # the packaged published rows, no --protocol
    assert "listed apart" not in err and "listed apart" not in out.lower()
    assert "| Protocol" in out and "custom" in out
    for name in ("true images (FD floor)", "noisy sampler", "swapped colours", "rand-inception", "tiny-net"):
        assert name in out
    assert "SD1.5 teacher" not in out and "SiD-LSG, SD1.5" not in out      # no published row is custom
    assert "published row(s) of other protocols (coco2014-30k, coco2017-5k) are not shown" in out

    # One result on coco2014-30k brings that protocol's published rows, and only those.
    t = build_table(load_results([*custom, f["coco"]]), load_published())
    assert not t.filtered and t.protocols == ["coco2014-30k", "custom"] and len(t.excluded) == 0
    pub = t.rows[~t.rows["ours"]]
    assert len(pub) and set(pub["protocol"]) == {"coco2014-30k"}
    assert t.rows.loc[t.rows["label"] == "coco-on-world-cnn", "protocol"].item() == "coco2014-30k"
    md = to_markdown(t)
    assert _header(md)[0] == "Protocol" and md.count("| coco2014-30k") == 1 and md.count("| custom") == 1  # per block


def test_protocol_option_filters_and_lists_the_rest_apart(made, monkeypatch):
    _, f = made
    every = [f[k] for k in ("floor", "noisy", "rand", "coco")]
    out, err = _cli(*every, "--protocol", "coco2014-30k")
    assert "SD1.5 teacher" in out and "| Protocol" not in out           # the title says the protocol
    main = out.split("Listed apart")[0]
    assert "noisy sampler" not in main and "coco-on-world-cnn" not in main
    assert "protocol custom, this table is coco2014-30k" in err
    assert "coco-on-world-cnn" in err and "not comparable" in err and "--include-not-comparable" in err

    out, _ = _cli(*every, "--protocol", "coco2014-30k", "--include-not-comparable")
    assert "coco-on-world-cnn (ours) †" in out.split("Listed apart")[0]

    # A custom table: our custom rows, the random-weight one apart unless asked, and no published row at all.
    t = build_table(load_results(every), load_published(), "custom")
    assert list(t.excluded["label"]) == ["rand-inception", "coco-on-world-cnn"] and t.rows["ours"].all()
    t = build_table(load_results(every), load_published(), "custom", include_not_comparable=True)
    assert "rand-inception" in set(t.rows["label"])
    assert any(n.startswith("† NOT comparable") and "random weights" in n for n in t.notes)


# ------------------------------------------------------------------------------------- a distance's network

def test_fd_on_another_network_has_its_own_column_and_is_never_an_fid(made):
    _, f = made
    t = build_table(load_results([f[k] for k in ("noisy", "swapped", "rand", "tiny")]), None)
    r = t.rows.set_index("label")
    tiny_net = "tiny-test, random weights seed 0"
    assert [c.title for c in t.network_columns] == ["FD (world-cnn)", "KD×10³ (world-cnn)", f"FD ({tiny_net})"]
    # FID holds Inception's distance only (random weights: flagged †); each other network has its own column.
    def has(col):
        return set(r.index[r[col].notna()])

    assert has("fid") == {"rand-inception"}
    assert has("fd_world-cnn") == {"noisy sampler", "swapped colours"}
    assert has("fd_tiny-test-random-weights-seed-0") == {"tiny-net"}
    assert not r.loc["rand-inception", "comparable"]
    for c in t.network_columns:                                      # never two networks in one column
        assert set(r.loc[r[c.key].notna(), "fd_network"]) == {c.network}
    md = to_markdown(t)
    head = _header(md)
    assert "FID" in head and "FD (world-cnn)" in head and f"FD ({tiny_net})" in head
    assert "not an FID" in md
    cols = next(csv.reader(io.StringIO(to_csv(t))))
    assert "fd_world-cnn" in cols and "best_fd_world-cnn" in cols and "fid" in cols

    # On a protocol whose FID is Inception's, an FD on world-cnn is not comparable, and never in the FID column.
    t = build_table(load_results([f["coco"]]), load_published(), "coco2014-30k", include_not_comparable=True)
    row = t.rows[t.rows["ours"]].iloc[0]
    assert np.isnan(row["fid"]) and not row["comparable"] and not row["best_fid"]
    assert "world-cnn features, not Inception v3: not an FID" in row["deviations"]

    # The eval table names it the same way.
    con = Console(record=True, width=240)
    print_table(json.loads(f["noisy"].read_text()), con)
    text = con.export_text()
    assert "FD (world-cnn)" in text and re.search(r"^\W*FID\W", text, re.M) is None


# ------------------------------------------------------------------------------------------ reference rows

def test_reference_rows_are_never_best(made):
    _, f = made
    t = build_table(load_results([f[k] for k in ("floor", "noisy", "swapped", "floor_kind")]), None)
    r = t.rows.set_index("label")
    fd = r["fd_world-cnn"]
    samplers = fd[~r["reference"]]
    assert fd["true images (FD floor)"] < samplers.min()                # the floor is the lowest FD ...
    assert set(r.index[r["reference"]]) == {"true images (FD floor)", "floor by kind"}   # method, or subject.kind
    assert set(r.loc[r["reference"], "group"]) == {"reference"}
    assert list(r.index[r["best_fd_world-cnn"]]) == [samplers.idxmin()]  # ... but the best is a sampler's
    md = to_markdown(t)
    floor_line = next(ln for ln in md.splitlines() if "true images (FD floor)" in ln and ln.startswith("|"))
    assert "**" not in floor_line and "(reference)" in floor_line and "Reference (data)" in floor_line
    assert "**" in next(ln for ln in md.splitlines() if samplers.idxmin() in ln)
    assert any("never marked best" in n for n in t.notes)


# ------------------------------------------------------------------------------------------------- sources

def test_sources_are_relative_never_absolute(made, tmp_path, monkeypatch):
    d, f = made
    files = [f["noisy"], f["floor"]]
    (tmp_path / "out").mkdir()
    for fmt, name in (("md", "t.md"), ("csv", "t.csv"), ("latex", "t.tex"), ("html", "t.html")):
        _cli(*files, "--format", fmt, "--out", tmp_path / "out" / name)
        text = (tmp_path / "out" / name).read_text()
        assert str(d) not in text and "noisy.json" in text
    out, _ = _cli(*files, cwd=d.parent, monkeypatch=monkeypatch)     # printed: relative to here
    assert f"ours ({d.name}/noisy.json)" in out and str(d) not in out
    t = build_table(load_results(files, relative_to=d), None)
    assert set(t.rows["source"]) == {"ours (noisy.json)", "ours (floor.json)"}


# ---------------------------------------------------------------------------------------------------- KID

def _eval_table(path) -> str:
    con = Console(record=True, width=240)
    print_table(json.loads(path.read_text()), con)
    return con.export_text()


def test_kid_over_the_whole_set_prints_no_spread_and_says_why(made):
    _, f = made
    res = json.loads(f["noisy"].read_text())
    kid = res["metrics"]["kid"]
    assert kid["subset_size"] == kid["n_gen"] == kid["n_ref"] == N and kid["std"] < 1e-6 * abs(kid["mean"])
    text = _eval_table(f["noisy"])
    line = next(ln for ln in text.splitlines() if "KD×10³ (world-cnn)" in ln)
    assert "±" not in line and "whole set" in text
    assert "warning: KID: every subset is the whole set" in " ".join(text.split())
    partial = _eval_table(f["rand"])                                 # subsets of 3 out of 4: a spread
    assert "±" in next(ln for ln in partial.splitlines() if KID_TITLE in ln) and "warning: KID" not in partial
    t = build_table(load_results([f["noisy"], f["rand"]]), None)
    assert any(n.startswith("KID of noisy sampler: every subset is the whole set") for n in t.notes)


def test_eval_and_report_print_kid_in_one_unit(made):
    _, f = made
    raw = json.loads(f["rand"].read_text())["metrics"]["kid"]["mean"]     # the file keeps the raw value
    text = _eval_table(f["rand"])
    row = next(ln for ln in text.splitlines() if KID_TITLE in ln)
    assert f"{raw * 1e3:.4f} ±" in row
    t = build_table(load_results([f["rand"]]), None)
    md = to_markdown(t)
    assert KID_TITLE in _header(md) and f"{raw * 1e3:.2f}" in md
    assert t.rows["kid_x1000"].item() == round(raw * 1e3, 2)
    assert r"KID$\times10^3$" in render(t, "latex") and "kid_x1000" in to_csv(t).splitlines()[0]
    assert any("KID multiplied by 1000" in n for n in t.notes)
