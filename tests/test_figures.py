"""Paper-ready figures: each is rendered from small synthetic inputs and checked for what a reader needs.

300 dpi PNG and an SVG beside it, byte-reproducible; axes that say what is better; legends with the expected
entries; guidance as colour with a colour bar naming its values; point labels that overlap neither each other
nor a marker and stay inside the axes; lines only between rows that differ in guidance alone; a sample grid
with white gutters and each row's name drawn in the image.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sidbench.core.errors import SidbenchError
from sidbench.report import build_table, figstyle, load_published, load_results
from sidbench.report.plots import (plot_tradeoff, plot_training_curves, tradeoff_figure, tradeoff_joins,
                                   tradeoff_metrics, training_curves_figure)
from sidbench.eval.results import new_results, save, subject

PUBLISHED = """method,teacher,steps,guidance,protocol,prompts,fid,clip,kimg,source,note
SD1.5 teacher,SD1.5,50,cfg 3,coco2014-30k,30000,8.59,0.308,,paper T Table 1,
SiD-LSG,SD1.5,1,LSG k=1.5,coco2014-30k,30000,8.71,0.302,8806,paper S Table 1,
SiD-LSG,SD1.5,1,LSG k=1.5,coco2014-30k,30000,8.15,0.304,18789,paper S Table 1,longer training
SiD-LSG,SD1.5,1,LSG k=2,coco2014-30k,30000,9.56,0.313,,paper S Table 1,
SiD-LSG,SD1.5,1,LSG k=3,coco2014-30k,30000,13.21,0.314,,paper S Table 1,
SiD-LSG,SD2.1-base,1,LSG k=1.5,coco2014-30k,30000,9.52,0.308,,paper S Table 1,
SiD-LSG,SD2.1-base,1,LSG k=2,coco2014-30k,30000,10.97,0.318,,paper S Table 1,
SwiftBrush,SD2.1,1,,coco2014-30k,30000,16.67,0.29,,paper W,
"""


# ------------------------------------------------------------------------------------------------ helpers

def _png_dpi(path: Path) -> tuple[float, float]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.info["dpi"]


def _assert_files(paths, stem: Path):
    png, svg = (Path(p) for p in paths)
    assert png == stem.with_name(stem.name + ".png") and svg == stem.with_name(stem.name + ".svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _png_dpi(png) == pytest.approx((300, 300), abs=0.5)
    text = svg.read_text()
    assert "<svg" in text and "<dc:date>" not in text and "Matplotlib v" not in text
    assert b"Software" not in png.read_bytes()[:4096]       # no tool version in the PNG's text chunks


def _boxes(artists, renderer):
    """The text's own box (an annotation's window extent would include its leader line)."""
    from matplotlib.text import Text

    return [tuple(Text.get_window_extent(a, renderer).extents) for a in artists]


def _overlap(a, b, tol=0.5):
    return min(a[2], b[2]) - max(a[0], b[0]) > tol and min(a[3], b[3]) - max(a[1], b[1]) > tol


def _inside(box, frame, tol=1.0):
    return (box[0] >= frame[0] - tol and box[1] >= frame[1] - tol and box[2] <= frame[2] + tol
            and box[3] <= frame[3] + tol)


def _check_labels(fig, ax):
    """Point labels: none overlaps another, none covers a marker, all inside the axes; no text leaves the figure."""
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    anns = [t for t in ax.texts if t.get_text()]
    assert anns
    boxes = _boxes(anns, r)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not _overlap(a, b), f"labels {anns[i].get_text()!r} and {anns[j].get_text()!r} overlap"
    frame = ax.get_window_extent(r).extents
    for t, b in zip(anns, boxes):
        assert _inside(b, frame), f"label {t.get_text()!r} leaves the axes"
    markers = np.concatenate([c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
                              if len(c.get_offsets())])
    for t, b in zip(anns, boxes):
        for x, y in markers:
            assert not (b[0] + 1 < x < b[2] - 1 and b[1] + 1 < y < b[3] - 1), f"label {t.get_text()!r} covers a marker"
    whole = fig.bbox.extents
    for text, b in figstyle.text_boxes(fig):
        assert _inside(b, whole), f"{text!r} is clipped by the figure's edge"
    return anns


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the figure has no legend"
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _colorbar_ticks(fig, label: str) -> list[str]:
    for ax in fig.axes:
        if ax.get_ylabel() == label:
            return [t.get_text() for t in ax.get_yticklabels()]
    raise AssertionError(f"no colour bar labelled {label!r}")


def _result(path: Path, name: str, guidance: str, fid: float, clip: float, kimg=5000) -> Path:
    res = new_results(protocol="coco2014-30k", command=["test"])
    res["subject"] = subject(name=name, method="SiD-LSG", teacher="SD1.5", steps=1, guidance=guidance, kimg=kimg)
    res["metrics"]["fid"] = {"value": fid, "n_gen": 30000, "n_ref": 40504, "mode": "clean"}
    res["metrics"]["clip"] = {"value": clip, "n": 30000, "variant": "gigagan", "model": {"name": "ViT-g-14"},
                              "prompts_truncated": 0}
    save(res, path)
    return path


@pytest.fixture
def table(tmp_path):
    pub = tmp_path / "published.csv"
    pub.write_text(PUBLISHED)
    ours = [_result(tmp_path / "a.json", "run-a", "LSG k=1.5", 8.45, 0.305),
            _result(tmp_path / "b.json", "run-b", "LSG k=2", 8.0, 0.310),
            _result(tmp_path / "c.json", "run-c", "LSG k=3", 9.7, 0.312),
            _result(tmp_path / "d.json", "run-d-long", "LSG k=2", 7.8, 0.309, kimg=20000)]
    return build_table(load_results(ours), load_published(pub), "coco2014-30k")


# ------------------------------------------------------------------------------------- saver, labeller

def test_saver_writes_300dpi_png_and_svg_byte_for_byte_reproducible(tmp_path):
    def draw():
        with figstyle.style():
            fig = figstyle.new_figure(3, 2)
            ax = fig.add_subplot()
            ax.plot([1, 2, 3], [3, 1, 2], label="a line")
            ax.legend()
        return fig

    first = figstyle.save_figure(draw(), tmp_path / "one" / "f")
    second = figstyle.save_figure(draw(), tmp_path / "two" / "f")
    _assert_files(first, tmp_path / "one" / "f")
    for a, b in zip(first, second):
        assert Path(a).read_bytes() == Path(b).read_bytes(), f"{Path(a).name} differs between two saves"


def test_place_labels_separates_a_crowded_cluster():
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(0, 0.3, 14), rng.normal(0, 0.3, 14)
    texts = [f"label {i}" for i in range(14)]

    def draw(place):
        with figstyle.style():
            fig = figstyle.new_figure(4, 3)
            ax = fig.add_subplot()
            ax.scatter(xs, ys, s=30)
            ax.set_xlim(-2.5, 2.5)
            ax.set_ylim(-2, 2)
            figstyle.freeze_layout(fig)
            if place:
                figstyle.place_labels(ax, xs, ys, texts)
            else:  # the naive way: every label at the same offset from its point
                for x, y, t in zip(xs, ys, texts):
                    ax.annotate(t, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
        return fig, ax

    fig, ax = draw(place=False)
    fig.draw_without_rendering()
    naive = _boxes(ax.texts, fig.canvas.get_renderer())
    assert any(_overlap(a, b) for a, b in itertools.combinations(naive, 2))   # the check can fail
    fig, ax = draw(place=True)
    anns = _check_labels(fig, ax)
    assert [a.get_text() for a in anns] == texts
    assert any(a.arrow_patch is not None for a in anns)   # labels moved away get a leader line


def test_guidance_scale_is_ordinal_and_greys_the_unrecorded():
    s = figstyle.GuidanceScale([3, 1.5, None, 2, 1.5, float("nan")])
    assert s.values == [1.5, 2.0, 3.0]
    assert len({s.colour(v) for v in s.values}) == 3
    assert s.colour(None) == s.colour(float("nan")) == figstyle.NO_GUIDANCE


# --------------------------------------------------------------------------------- report: trade-off

def test_tradeoff_figure_legend_colour_labels(table):
    fig = tradeoff_figure(table)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "FID (lower is better)" and ax.get_ylabel() == "CLIP score (higher is better)"
    legend = _legend_texts(fig)
    for entry in ("ours: SiD-LSG (SD1.5)", "SiD-LSG (SD1.5)", "SiD-LSG (SD2.1-base)", "SD1.5 teacher, 50 steps",
                  "SwiftBrush (SD2.1)", "grey: guidance not recorded"):
        assert entry in legend
    assert any(t.startswith("ours: guidance varied") for t in legend)
    assert any(t.startswith("published: guidance varied") for t in legend)
    assert _colorbar_ticks(fig, "guidance scale (LSG k or cfg)") == ["1.5", "2", "3"]
    labels = [a.get_text() for a in _check_labels(fig, ax)]
    # A series with several training lengths says which label is which; one with a single length does not.
    assert "k=1.5, 18789 kimg" in labels and "k=1.5, 8806 kimg" in labels
    assert "k=2, 20000 kimg" in labels and "k=2, 5000 kimg" in labels and "cfg 3" in labels
    # Colour is the guidance: every marker of one guidance value has that value's colour.
    scale = figstyle.GuidanceScale([1.5, 2, 3])
    edge = np.concatenate([c.get_edgecolors()[:, :3] for c in ax.collections])
    import matplotlib.colors as mc
    allowed = {tuple(np.round(mc.to_rgb(scale.colour(v)), 3)) for v in (1.5, 2, 3, None)}
    assert {tuple(np.round(e, 3)) for e in edge} <= allowed


def test_tradeoff_lines_join_only_rows_that_differ_in_guidance(table):
    rows = table.rows
    joins = tradeoff_joins(rows)
    key = ["ours", "method", "teacher", "steps", "kimg"]
    for idx in joins:
        g = rows.loc[idx]
        for col in key:
            assert g[col].isna().all() or g[col].nunique(dropna=False) == 1, f"a line joins rows of different {col}"
        assert g["guidance"].nunique() == len(g)
    label_sets = [set(rows.loc[idx, "label"]) for idx in joins]
    assert {"run-a", "run-b", "run-c"} in label_sets        # ours at 5000 kimg: one sweep
    assert not any("run-d-long" in s for s in label_sets)   # the longer run is a point only
    # Published SD1.5: k = 2, 3 (kimg not given) are joined; neither k = 1.5 row (8806, 18789 kimg) is.
    sd15 = rows[(~rows["ours"]) & (rows["method"] == "SiD-LSG") & (rows["teacher"] == "SD1.5")]
    joined = {i for idx in joins for i in idx}
    assert set(sd15.index[sd15["kimg"].notna()]).isdisjoint(joined)
    assert set(sd15.index[sd15["kimg"].isna()]) <= joined
    # And the figure draws exactly these lines, through these rows' points.
    fig = tradeoff_figure(table)
    drawn = [set(zip(*line.get_data())) for line in fig.axes[0].get_lines() if line.get_gid() == "join"]
    expected = [set(zip(rows.loc[idx, "fid"], rows.loc[idx, "clip"])) for idx in joins]
    assert sorted(map(sorted, drawn)) == sorted(map(sorted, expected))


def test_plot_tradeoff_writes_300dpi_png_and_svg(table, tmp_path):
    stem = tmp_path / "plots" / "tradeoff"
    _assert_files(plot_tradeoff(table, stem), stem)
    again = plot_tradeoff(table, tmp_path / "again" / "tradeoff")
    assert Path(again[0]).read_bytes() == (tmp_path / "plots" / "tradeoff.png").read_bytes()


def test_tradeoff_reads_metric_names_defensively(table):
    rows = table.rows
    assert tradeoff_metrics(rows)[:4] == ("fid", "FID", "clip", "CLIP score")
    renamed = dataclasses.replace(table, rows=rows.rename(columns={"fid": "FD (world-cnn)"}))
    assert tradeoff_metrics(renamed.rows)[:2] == ("FD (world-cnn)", "FD (world-cnn)")
    fig = tradeoff_figure(renamed)
    assert fig.axes[0].get_xlabel() == "FD (world-cnn) (lower is better)"
    snake = rows.rename(columns={"fid": "fd_world-cnn"})
    assert tradeoff_metrics(snake)[:2] == ("fd_world-cnn", "FD (world-cnn)")
    # A per-row extractor column naming a non-Inception net renames the axis of 'fid'.
    assert tradeoff_metrics(rows.assign(fid_extractor="dinov2-vitl14"))[1] == "FD (dinov2-vitl14)"
    assert tradeoff_metrics(rows.assign(fid_extractor="inception-v3-tf"))[1] == "FID"
    # A delta or best column is never taken for the metric itself.
    only_delta = rows.drop(columns=["fid"]).assign(delta_fid=1.0)
    with pytest.raises(SidbenchError, match="no FD/FID column"):
        tradeoff_metrics(only_delta)


def _mixed_table():
    """Rows of two protocols, one of them with an FD on another network and a reference row (the data)."""
    from sidbench.report.tables import ReportTable

    def row(label, protocol, method, guidance, fid=None, fd=None, clip=None, ours=True, reference=False,
            comparable=True, kimg=None):
        return {"label": label, "protocol": protocol, "group": "reference" if reference else "one-step",
                "method": method, "name": label, "teacher": "SD1.5", "steps": 1.0, "guidance": guidance,
                "kimg": kimg, "fid": fid, "clip": clip, "fd_world-cnn": fd, "fd": fid if fd is None else fd,
                "fd_network": None if fd is None else "world-cnn", "reference": reference, "ours": ours,
                "comparable": comparable, "delta_fid": 0.5, "best_fid": False}

    rows = pd.DataFrame([
        row("sid-15", "coco2014-30k", "SiD-LSG", "LSG k=1.5", fid=8.4, clip=0.305),
        row("sid-2", "coco2014-30k", "SiD-LSG", "LSG k=2", fid=8.9, clip=0.311),
        row("paper-2", "coco2014-30k", "SiD-LSG", "LSG k=2", fid=9.56, clip=0.313, ours=False),
        row("toy-1", "custom", "SiD-LSG", "LSG k=1", fd=527.0, clip=0.29, comparable=False),
        row("toy-2", "custom", "SiD-LSG", "LSG k=2", fd=998.0, clip=0.295, comparable=False),
        row("true images", "custom", "reference", None, fd=695.0, clip=0.31, reference=True),
    ])
    return ReportTable(protocol="coco2014-30k, custom", rows=rows, excluded=pd.DataFrame())


def test_tradeoff_never_mixes_protocols_or_networks_on_one_axis():
    from sidbench.report.plots import tradeoff_panels

    table = _mixed_table()
    panels = tradeoff_panels(table)
    assert [(p["protocol"], p["x"], p["x_name"]) for p in panels] == [
        ("coco2014-30k", "fid", "FID"), ("custom", "fd_world-cnn", "FD (world-cnn)")]
    assert set(panels[1]["rows"]["label"]) == {"toy-1", "toy-2", "true images"}
    fig = tradeoff_figure(table)
    data_axes = [ax for ax in fig.axes if ax.get_xlabel()]          # not the colour bar
    assert [ax.get_xlabel() for ax in data_axes] == ["FID (lower is better)", "FD (world-cnn) (lower is better)"]
    assert [ax.get_title() for ax in data_axes] == ["FID–CLIP score trade-off, protocol coco2014-30k",
                                                    "FD (world-cnn)–CLIP score trade-off, protocol custom"]
    legend = _legend_texts(fig)
    assert "reference (the data): true images" in legend
    assert "ours: SiD-LSG (SD1.5) † (not comparable)" in legend and "ours: SiD-LSG (SD1.5)" in legend
    # The reference row is a vertical line at its FD, not a point of a series, and no line reaches it.
    custom = data_axes[1]
    vlines = [line for line in custom.get_lines() if line.get_gid() != "join"]
    assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [695.0, 695.0]
    joins = [sorted(zip(*line.get_data())) for ax in data_axes for line in ax.get_lines() if line.get_gid() == "join"]
    assert joins == [[(8.4, 0.305), (8.9, 0.311)], [(527.0, 0.29), (998.0, 0.295)]]
    for ax in data_axes:
        _check_labels(fig, ax)


# -------------------------------------------------------------------------------- report: curves

def _log(path: Path) -> Path:
    lines = [{"kimg": k, "proxy_fid": 40 / (1 + k / 100) + (3 if k == 900 else 0), "proxy_clip": 0.25 + k / 20000}
             for k in range(0, 1001, 100)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_training_curves_figure(tmp_path):
    (tmp_path / "run-x").mkdir()
    log = _log(tmp_path / "run-x" / "log.jsonl")
    fig = training_curves_figure(log)
    fid_ax, clip_ax = fig.axes[:2]
    assert fid_ax.get_ylabel() == "proxy FID (lower is better)"
    assert clip_ax.get_ylabel() == "proxy CLIP score (higher is better)"
    assert fid_ax.get_xlabel().startswith("training length (kimg")
    fid_legend = [t.get_text() for t in fid_ax.get_legend().get_texts()]
    assert fid_legend == ["proxy FID, run run-x", "lowest: 3.636 at 1000 kimg"]
    assert [t.get_text() for t in clip_ax.get_legend().get_texts()][1] == "highest: 0.3 at 1000 kimg"
    for text, b in figstyle.text_boxes(fig):
        assert _inside(b, fig.bbox.extents), text
    stem = tmp_path / "curves"
    _assert_files(plot_training_curves(log, stem), stem)


# ------------------------------------------------------------------------------------------ the demo

def _demo_rows(ks=(1.0, 1.5, 2.0, 3.0)):
    rows = [{"sampler": "true images (FD floor)", "group": "reference", "kind": "data", "fd": 695.0,
             "adherence": 1.0, "k": None},
            {"sampler": "teacher 1 step from t=999", "group": "teacher", "kind": "teacher", "fd": 2127.0,
             "adherence": 0.938, "k": None},
            {"sampler": "generator at init (teacher 1 step, t=625)", "group": "teacher", "kind": "teacher",
             "fd": 1729.0, "adherence": 0.932, "k": None}]
    fd_t, ad_t = {1.0: 630, 1.5: 644, 2.0: 1600, 3.0: 3350}, {1.0: 0.955, 1.5: 0.992, 2.0: 0.994, 3.0: 0.9942}
    rows += [{"sampler": f"teacher DDIM-25, cfg {k:g}", "group": "teacher", "kind": "teacher", "fd": float(fd_t[k]),
              "adherence": ad_t[k], "k": k} for k in ks]
    from sidbench.demo.run import _label

    fd = {1.0: (403, 527), 1.5: (599, 789), 2.0: (815, 998), 3.0: (1140, 1255)}
    ad = {1.0: (0.976, 0.980), 1.5: (0.980, 0.983), 2.0: (0.981, 0.984), 3.0: (0.984, 0.987)}
    for k in ks:
        for w, which in enumerate(("raw", "EMA")):
            rows.append({"sampler": _label(k, which), "group": "distilled", "kind": "one-step",
                         "fd": float(fd[k][w]), "adherence": ad[k][w], "k": k})
    return rows


def _demo_curves(ks):
    return {k: [{"iteration": i, "kimg": i * 0.064, "proxy_n": 500,
                 **{f"proxy_fd_{t}": 1700 / (1 + i / 30) + 300 * k + 40 * (t == "raw") for t in ("ema", "raw")},
                 **{f"proxy_adherence_{t}": 0.93 + i / 3000 + k / 300 for t in ("ema", "raw")},
                 **{f"proxy_noise_{t}": 4.1 + i / 150 + 0.3 * (t == "raw") for t in ("ema", "raw")}}
                for i in range(0, 121, 30)] for k in ks}


def _demo_grids(rows, n=6):
    rng = np.random.default_rng(1)
    names = ["true images"] + [r["sampler"] for r in rows if r["group"] != "reference"]
    # Random pixels, never white: a white pixel in the grid is a gutter or margin.
    return {name: rng.integers(0, 200, (n, 16, 16, 3)).astype(np.uint8) for name in names}


@pytest.mark.parametrize("ks", [(1.0, 2.0), (1.0, 1.5, 2.0, 3.0)])
def test_demo_trade_off_figure(ks):
    from sidbench.demo.run import trade_off_figure

    rows = _demo_rows(ks)
    fig = trade_off_figure(pd.DataFrame(rows), ks)
    ax = fig.axes[0]
    assert "lower is better" in ax.get_xlabel() and "higher is better" in ax.get_ylabel()
    assert ax.get_xscale() == "log"
    assert _legend_texts(fig) == ["teacher DDIM-25 (cfg = k)", "SiD one step, EMA (guided: k4 = k, t <= 400)",
                                  "SiD one step, raw generator (no EMA)",
                                  "fresh true images (FD 695 to the data)"]
    assert _colorbar_ticks(fig, "guidance scale (SiD: k; teacher: cfg)") == [f"{k:g}" for k in ks]
    labels = sorted(a.get_text() for a in _check_labels(fig, ax))
    assert labels == sorted([f"cfg {k:g}" for k in ks] + [f"k={k:g}" for k in ks] * 2)
    # Each line joins one sampler's rows at different k, and nothing else.
    df = pd.DataFrame(rows)
    for line in ax.get_lines():
        if line.get_gid() != "join":
            continue
        pts = list(zip(*line.get_data()))
        hit = [df[(df["fd"] == x) & (df["adherence"] == y)].iloc[0] for x, y in pts]
        kinds = {("teacher" if r["sampler"].startswith("teacher") else r["sampler"].rsplit(", ", 1)[-1]) for r in hit}
        assert len(kinds) == 1 and len({r["k"] for r in hit}) == len(hit) == len(ks)


def test_demo_curves_figure():
    from sidbench.demo.run import curves_figure

    ks = (1.0, 1.5, 2.0)
    fig = curves_figure(_demo_curves(ks))
    assert _legend_texts(fig) == ["EMA generator (the report's row)", "raw generator"]
    assert _colorbar_ticks(fig, "guidance scale k") == ["1", "1.5", "2"]
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 3 and all(ax.get_xlabel() == "training length (kimg)" for ax in panels)
    assert [ax.get_title() for ax in panels] == ["FD to the data (lower is better)",
                                                 "prompt adherence (higher is better)",
                                                 "background noise (lower is better)"]
    scale = figstyle.GuidanceScale(ks)
    import matplotlib.colors as mc
    colours = {mc.to_hex(line.get_color()) for line in panels[0].get_lines()}
    assert colours == {scale.colour(k) for k in ks}
    for text, b in figstyle.text_boxes(fig):
        assert _inside(b, fig.bbox.extents), text


def test_demo_samples_grid_has_gutters_and_row_names(tmp_path):
    from sidbench.demo.run import _samples_figure, samples_figure

    rows = _demo_rows((1.0, 2.0))
    grids = _demo_grids(rows)
    groups = ["reference", "teacher", "teacher", "teacher", "teacher", "d1", "d1", "d2", "d2"]
    fig, lay = samples_figure(grids, groups=groups)
    _assert_files(_samples_figure(tmp_path, grids, groups=groups), tmp_path / "samples")
    png = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    assert png.shape == (lay["height"], lay["width"], 3)
    white = np.array(lay["background"], np.uint8)
    labels = list(grids)
    n_cols = 6
    tiles = {(i, j): (y0, x0, y1, x1) for i, j, y0, x0, y1, x1 in lay["tiles"]}
    assert len(tiles) == len(labels) * n_cols
    for (i, j), (y0, x0, y1, x1) in tiles.items():
        expect = np.repeat(np.repeat(grids[labels[i]][j], 5, 0), 5, 1)
        assert np.array_equal(png[y0:y1, x0:x1], expect), f"tile {i},{j} is not its image, pixel for pixel"
        if j + 1 < n_cols:                                       # the gutter to its right is white
            nx0 = tiles[(i, j + 1)][1]
            assert nx0 - x1 >= 8 and (png[y0:y1, x1:nx0] == white).all()
        if i + 1 < len(labels):                                  # and the one below it
            ny0 = tiles[(i + 1, j)][0]
            assert ny0 - y1 >= 8 and (png[y1:ny0, x0:x1] == white).all()
    # A wider gap between groups of rows than within a group.
    gaps = [lay["rows"][i + 1][0] - lay["rows"][i][1] for i in range(len(labels) - 1)]
    assert gaps[0] > gaps[1] == gaps[2] and gaps[4] > gaps[5]
    # Every row's name is drawn at its left, in the image: ink in the label margin beside every row.
    first_x = min(x0 for _, x0, _, _ in tiles.values())
    for y0, y1 in lay["rows"]:
        margin = png[y0:y1, :lay["label_right"] + 2]
        assert (margin != white).any(axis=2).sum() > 40, f"no row name beside row at y={y0}"
    # The names are real text: each one, at the left of the tiles, inside the image, none overlapping another.
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    texts = [t for t in fig.texts if not t.get_text().startswith("Samples")]
    assert [t.get_text().replace("\n", " ") for t in texts] == labels
    boxes = _boxes(texts, r)
    for b in boxes:
        assert b[0] >= 0 and b[2] <= first_x and 0 <= b[1] and b[3] <= lay["height"]
    assert not any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    for text, b in figstyle.text_boxes(fig):                     # the title too: nothing is cut off
        assert _inside(b, (0, 0, lay["width"], lay["height"]), tol=0), text
    svg = (tmp_path / "samples.svg").read_text()
    assert "generator at init" in svg and "<image" in svg
    assert (tmp_path / "samples.txt").read_text().startswith("rows, top to bottom: true images;")


def test_demo_replot_redraws_every_figure_from_the_folder(tmp_path):
    from sidbench.demo.run import read_figure_data, replot, write_figure_data

    ks = (1.0, 2.0)
    rows = _demo_rows(ks)
    grids = _demo_grids(rows)
    write_figure_data(tmp_path, rows, _demo_curves(ks), grids, ks=ks, mode="full")
    first = replot(tmp_path)
    names = sorted(Path(p).name for p in first)
    assert names == sorted(f"{n}.{e}" for n in ("fd_adherence", "fd_curve", "samples") for e in ("png", "svg"))
    before = {Path(p).name: Path(p).read_bytes() for p in first}
    for p in first:
        Path(p).unlink()
    again = replot(tmp_path)
    assert {Path(p).name: Path(p).read_bytes() for p in again} == before   # same data, same bytes
    for p in again:
        if str(p).endswith(".png"):
            assert _png_dpi(Path(p)) == pytest.approx((300, 300), abs=0.5)
    r2, c2, g2, k2 = read_figure_data(tmp_path)
    assert list(g2) == list(grids) and all(np.array_equal(g2[n], grids[n]) for n in grids)
    assert k2 == list(ks) and sorted(c2) == list(ks) and r2[0]["sampler"] == rows[0]["sampler"]
    # Rows only (no curves, no samples): the trade-off alone is drawn.
    rows_only = tmp_path / "rows-only"
    rows_only.mkdir()
    write_figure_data(rows_only, rows, {}, {}, ks=ks, mode="full")
    assert sorted(Path(p).name for p in replot(rows_only)) == ["fd_adherence.png", "fd_adherence.svg"]
    with pytest.raises(SidbenchError, match="figure_data.json does not exist"):
        replot(tmp_path / "nowhere")
