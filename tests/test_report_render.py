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
