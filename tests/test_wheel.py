"""The package as users install it: a wheel, installed non-editable into a fresh venv, run with no repository files.

Everything sidbench reads at run time (published rows, demo assets, prompt and dataset manifests) must be package data.
The fresh venv gets sidbench only from the wheel (pip installs it, with its console script); its dependencies
(torch & co., gigabytes, and offline here) come from the test's own environment through a path line in a .pth
file, which adds that site-packages folder to sys.path without running its .pth files, so the checkout's
editable install stays invisible.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_images

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel (no network: the venv's setuptools) and install it, without dependencies, into a folder."""
    import shutil

    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tracked files: nothing untracked (or a stale build/ folder) can leak in, and the
    # checkout is left as it was.
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the tracked files")
    src = tmp / "src"
    for rel in filter(None, listed.stdout.split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp / "dist").glob("sidbench-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "zz_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return venv


def run_installed(venv: Path, *args, cwd: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return subprocess.run([str(venv / "bin" / "sidbench"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_wheel_runs_its_commands_without_the_checkout(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run_installed(installed, "--help", cwd=work)
    assert where.returncode == 0, where.stderr[-2000:]
    probe = subprocess.run([str(installed / "bin" / "python"), "-c", "import sidbench, distill; "
                            "print(sidbench.__file__); print(distill.__file__)"], cwd=work, capture_output=True, text=True)
    for line in probe.stdout.split():  # the wheel's copies, not the checkout's editable ones
        assert line.startswith(str(installed / "lib")), probe.stdout + probe.stderr

    rng = np.random.default_rng(0)
    write_images(work / "a", [im for im in rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)])
    write_images(work / "b", [im for im in rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)])
    ev = run_installed(installed, "eval", "--fid", "--images", "a", "--ref", "b", "--random-weights", "--no-cache",
                       "--out", "res.json", "-q", cwd=work)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads((work / "res.json").read_text())["metrics"]["fid"]["value"] > 0

    rep = run_installed(installed, "report", "res.json", "--protocol", "coco2014-30k", "--out", "table.md", cwd=work)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "SiD-LSG" in (work / "table.md").read_text()  # the published rows shipped inside the package

    (work / "prompts.txt").write_text("a red circle\na blue square\n")
    pc = run_installed(installed, "prompts", "check", "prompts.txt", cwd=work)
    assert pc.returncode == 0, pc.stderr[-3000:]

    data = run_installed(installed, "data", "list", "--json", cwd=work)  # the dataset manifests are package data
    assert data.returncode == 0, data.stderr[-3000:]
    assert {d["name"] for d in json.loads(data.stdout)["datasets"]} >= {"coco2014-val", "coco2017-val"}

    demo = run_installed(installed, "demo", "--quick", "--out", "demo", cwd=work)
    assert demo.returncode == 0, demo.stderr[-3000:]
    check_quick_demo(work / "demo")


def check_quick_demo(out: Path) -> None:
    """What `sidbench demo --quick` must write (the demo's assets are package data, so this runs from the wheel)."""
    rows = {r["sampler"]: r for r in json.loads((out / "rows.json").read_text())}
    # Known truth that holds even in the reduced run: fresh true images are the closest to the data,
    # and the teacher's one step from pure noise is far from it.
    floor, noise = rows["true images (FD floor)"], rows["teacher 1 step from t=999"]
    assert floor["fd"] < noise["fd"] and floor["adherence"] > 0.9
    assert floor["noise"] < 3 < noise["noise"] and floor["fd_noise_sensitive"] < noise["fd_noise_sensitive"]
    for f in ("report.md", "table.md", "fd_adherence.png", "fd_adherence.svg", "fd_curve.png", "samples.png"):
        assert (out / f).stat().st_size > 100, f
    log = [json.loads(x) for x in (out / "runs" / "k1" / "log.jsonl").read_text().splitlines()]
    assert log and all("proxy_fd_ema" in x for x in log)
    r = json.loads(next((out / "results").glob("sid-k1-ema.json")).read_text())
    assert r["schema"] == "sidbench.results/1" and r["extractors"]["fid"]["name"] == "world-cnn"
    # k = 1 and the guided run train for the same images from the same start, and the guided run is guided
    # only where the interval says (the run's own saved config, not the demo's constants).
    g_rows = [r for r in rows.values() if r.get("k") == 2.0 and r["group"] == "distilled"]
    assert g_rows and all(r["images_seen"] == rows["SiD (k=1), EMA"]["images_seen"] for r in g_rows)
    cfg = json.loads((out / "runs" / "k2" / "config.json").read_text())
    assert (cfg["cfg_eval_real"], cfg["cfg_train_fake"], cfg["cfg_eval_real_interval"]) == (2.0, 1.0, "0,400")
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "Retired" in report and "FD to the guided teacher" in report


