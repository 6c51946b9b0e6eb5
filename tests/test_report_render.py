"""The HTML report renders: headless Chromium takes a screenshot of it, and the screenshot is not blank."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from sidbench.report import build_table, html_report, load_published, load_results, plot_tradeoff
from sidbench.eval.results import new_results, save, subject


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def test_html_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    res = new_results(protocol="coco2014-30k", command=["test"])
    res["subject"] = subject(name="run-a", method="SiD-LSG", teacher="SD1.5", steps=1, guidance="LSG k=1.5", kimg=5000)
    res["metrics"]["fid"] = {"value": 8.45, "n_gen": 30000, "n_ref": 40504, "mode": "clean"}
    res["metrics"]["clip"] = {"value": 0.305, "n": 30000, "variant": "gigagan", "model": {"name": "ViT-g-14"},
                              "prompts_truncated": 0}
    save(res, tmp_path / "a.json")
    table = build_table(load_results([tmp_path / "a.json"]), load_published(), "coco2014-30k", delta_to="run-a")
    png, _ = plot_tradeoff(table, tmp_path / "tradeoff")
    grid = np.zeros((128, 256, 3), np.uint8)
    grid[:, :128] = (220, 40, 40)
    grid[:, 128:] = (40, 40, 220)
    Image.fromarray(grid).save(tmp_path / "grid.png")
    page = html_report(table, {"FID-CLIP trade-off": png}, image_grid=tmp_path / "grid.png", out=tmp_path / "r.html")

    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,900", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (900, 1200)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20            # text, rules and a plot, not one colour
    dark = (img.sum(axis=2) < 200).mean()
    assert 0.002 < dark < 0.5                                          # there is text, and the page is not black


def test_gallery_of_an_evaluation_shows_its_best_and_worst_images_in_chromium(tmp_path):
    """eval --per-sample writes the scores; report --gallery reads that result and renders the two ends."""
    import csv
    import re

    from typer.testing import CliRunner

    from conftest import random_images, write_images
    from sidbench.cli.app import app

    write_images(tmp_path / "gen", random_images(8, 3))
    prompts = [f"thing {i}" for i in range(7)] + ["<b>bold</b> & co"]
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in prompts))
    r = CliRunner().invoke(app, ["eval", "--images", str(tmp_path / "gen"), "--clip", "--prompts", str(tmp_path / "p.txt"),
                                 "--random-weights", "--clip-model", "ViT-B-32", "--per-sample", str(tmp_path / "s.csv"),
                                 "--out", str(tmp_path / "r.json"), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path / "r.json"), "--gallery", str(tmp_path / "g.html"),
                                 "--by", "clip", "--top", "3"])
    assert r.exit_code == 0, r.output
    with open(tmp_path / "s.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: -float(row["clip"]))
    page = (tmp_path / "g.html").read_text()
    shown = re.findall(r'<span class="prompt">(.*?)</span>', page)
    import html as H

    assert [H.unescape(s) for s in shown] == [x["prompt"] for x in rows[:3]] + [x["prompt"] for x in rows[::-1][:3]]
    assert "<b>bold</b> & co" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page  # prompts are escaped
    r = CliRunner().invoke(app, ["report", str(tmp_path / "r.json"), "--gallery", str(tmp_path / "x.html"), "--by", "hps"])
    assert r.exit_code != 0 and "no per-image score 'hps'" in r.output

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", (tmp_path / "g.html").resolve().as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert dom.count("<img") == 6 and "Highest 3 by clip" in dom
    shot = tmp_path / "g.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,900",
                    (tmp_path / "g.html").resolve().as_uri()], capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100  # the thumbnails are there, not only text
