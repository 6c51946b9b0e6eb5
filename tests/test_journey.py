"""The user journey, each stage reading the previous stage's real files, through the CLI as a user types it.

distill and the folder eval run as separate processes (``python -m sidbench ...``); generate, the in-memory eval
and the reports go through the same command line in this process (typer's runner), to keep the test's time down.

distill (a few iterations) -> its EMA snapshot -> generate -> eval --fid --kid --clip --pr (random-weight
networks) -> report in md, LaTeX, CSV and HTML with --curves on the run's own log.jsonl and --plots-dir;
and the same generator evaluated in memory (eval --base --generator), which must give the same numbers.
Run on the tiny SD (latent space). The demo teacher (pixel space, shipped in the package) ran here too until
issue 15; it now goes distill -> eval through `sidbench demo --quick` from the wheel (test_wheel), and the newer
families go distill -> resume -> export -> generate -> eval in tests/test_families.py, so the suite stays in time.
"""
import csv
import json

import numpy as np
import pytest

from conftest import run_sidbench, write_images
from sidbench.core import logkeys
from sidbench.demo.run import ASSETS
from sidbench.demo.world import sample_world

pytestmark = pytest.mark.slow
METRICS = ["--fid", "--kid", "--clip", "--pr", "--random-weights", "--clip-model", "ViT-B-32", "--kid-subset-size", "4",
           "--pr-k", "2", "--batch", "8", "--no-cache", "-q"]


def _ok(args):
    proc = run_sidbench(args)
    assert proc.returncode == 0, f"sidbench {' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _cli(args):
    """The same command line, in this process (typer's test runner): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from sidbench.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def _cli_ok(args):
    code, out, err = _cli(args)
    assert code == 0, f"sidbench {' '.join(map(str, args))}\n{out[-2000:]}\n{err[-3000:]}"
    return out, err


@pytest.fixture(params=["latent"])
def world(request, tmp_path, tiny_sd):
    """(teacher folder, prompt file, reference folder) for the demo teacher or the tiny SD."""
    if request.param == "pixel":
        refs, _ = sample_world(16, 16, seed=1)
        _, captions = sample_world(8, 16, seed=2)
        base = ASSETS / "teacher"
    else:
        refs = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
        captions = ["a red circle", "a dog", "two cats on a sofa", "x", "a kitchen", "a tree", "a boat", "the moon"]
        base = tiny_sd
    write_images(tmp_path / "ref", list(refs))
    (tmp_path / "prompts.txt").write_text("\n".join(captions) + "\n")
    return request.param, base, tmp_path / "prompts.txt", tmp_path / "ref"


def test_distill_generate_eval_report(world, tmp_path):
    name, base, prompts, ref = world
    run = tmp_path / "run"
    _ok(["distill", "--base", base, "--prompts", prompts, "--run-dir", run, "--batch", "4", "--batch-per-device", "2",
         "--duration-kimg", "0.008", "--lr-gen", "1e-4", "--lr-fake", "1e-4", "--proxy-every", "1", "--proxy-ref", ref,
         "--proxy-prompts", "4", "--proxy-random-weights", "--trackers", "none", "-q"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r[logkeys.ITERATION] for r in log] == [1, 2]
    assert all(isinstance(r[logkeys.PROXY_FID], float) and r[logkeys.KIMG] > 0 for r in log)  # the writer's keys
    snapshot = run / "snapshots" / (run / "snapshots" / "LATEST").read_text().strip()

    _cli_ok(["generate", "--base", base, "--generator", snapshot, "--prompts", prompts, "--out", tmp_path / "images",
             "--batch", "8", "-q"])
    sidecar = json.loads((tmp_path / "images" / "sidbench_generate.json").read_text())
    assert sidecar["networks"]["generator"]["path"] == str(snapshot.resolve())
    label = ["--method", "SiD-LSG", "--teacher", name, "--steps", "1"]
    _ok(["eval", "--images", tmp_path / "images", "--ref", ref, "--prompts", prompts, "--out", tmp_path / "disk.json",
         *METRICS, *label])
    _cli_ok(["eval", "--base", base, "--generator", snapshot, "--prompts", prompts, "--ref", ref, "--gen-batch", "8",
             "--out", tmp_path / "memory.json", "--name", "in-memory", *METRICS, *label])
    disk, memory = (json.loads((tmp_path / f).read_text()) for f in ("disk.json", "memory.json"))
    for key in ("fid", "clip"):
        assert memory["metrics"][key]["value"] == pytest.approx(disk["metrics"][key]["value"], rel=1e-6, abs=1e-9)
    assert memory["metrics"]["kid"]["mean"] == pytest.approx(disk["metrics"]["kid"]["mean"], rel=1e-6, abs=1e-12)
    assert memory["metrics"]["pr"]["precision"] == disk["metrics"]["pr"]["precision"]
    assert memory["inputs"]["generated"]["kind"] == "generated in memory" and disk["subject"]["steps"] == 1

    # By default the report shows the user's own rows, with their protocol, flagged † (random weights), in
    # every format; it writes its page, plots and curves.
    results = [tmp_path / "disk.json", tmp_path / "memory.json"]
    for fmt, ext in (("md", "md"), ("latex", "tex"), ("csv", "csv"), ("html", "html")):
        out = tmp_path / f"report.{ext}"
        _, err = _cli_ok(["report", *results, "--format", fmt, "--out", out, "--curves", run / "log.jsonl",
                          "--plots-dir", tmp_path / "plots"])
        text = out.read_text()
        assert "listed apart" not in err and "in-memory" in text
        if fmt != "csv":
            assert "random weights" in text and "†" in text   # the reasons, beside the rows
    # A named protocol lists them apart, with their reasons, beside that protocol's published rows.
    _, err = _cli_ok(["report", *results, "--protocol", "coco2014-30k", "--out", tmp_path / "coco.md"])
    assert "listed apart" in err and "random weights" in err
    assert "SD1.5 teacher" in (tmp_path / "coco.md").read_text()
    for stem in ("tradeoff", "training_curves"):
        assert (tmp_path / "plots" / f"{stem}.png").stat().st_size > 0 and (tmp_path / "plots" / f"{stem}.svg").is_file()
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()

    # The same results in a table of their own protocol: our rows, with their numbers.
    _cli_ok(["report", *results, "--protocol", "custom", "--include-not-comparable", "--against", "none", "--format",
             "csv", "--out", tmp_path / "ours.csv"])
    rows = list(csv.DictReader((tmp_path / "ours.csv").open()))
    assert len(rows) == 2 and {r["method"] for r in rows} == {"SiD-LSG"}
    fids = sorted(float(r["fid"]) for r in rows)
    assert fids == pytest.approx(sorted(round(x["metrics"]["fid"]["value"], 2) for x in (disk, memory)), abs=0.006)

    # A log whose writer drifted (the proxy key renamed) no longer gives curves: the report says so and stops.
    drifted = tmp_path / "drifted.jsonl"
    drifted.write_text("".join(json.dumps({("fid" if k == logkeys.PROXY_FID else k): v for k, v in r.items()}) + "\n"
                               for r in log))
    code, _, err = _cli(["report", *results, "--curves", drifted, "--plots-dir", tmp_path / "plots2"])
    assert code == 2 and logkeys.PROXY_FID in err
