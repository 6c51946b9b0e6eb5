import json

from typer.testing import CliRunner

from sidbench.cli import app
from sidbench.demo import ASSETS, check_assets


def test_shipped_teacher_matches_its_hashes():
    check_assets()  # the committed teacher and metric network are the ones SHA256SUMS names
    assert (ASSETS / "teacher" / "model_index.json").is_file()


def test_demo_quick_runs_the_whole_pipeline_offline(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "demo"
    rows = {r["sampler"]: r for r in json.loads((out / "rows.json").read_text())}
    # Known truth that holds even in the reduced run: fresh true images are the closest to the data,
    # and the teacher's one step from pure noise is far from it.
    floor, noise = rows["true images (FD floor)"], rows["teacher 1 step from t=999"]
    assert floor["fd"] < noise["fd"] and floor["adherence"] > 0.9
    for f in ("report.md", "table.md", "fd_adherence.png", "fd_adherence.svg", "fd_curve.png", "samples.png"):
        assert (out / f).stat().st_size > 100, f
    log = [json.loads(x) for x in (out / "runs" / "k1" / "log.jsonl").read_text().splitlines()]
    assert log and all("proxy_fd_ema" in x for x in log)
    r = json.loads(next((out / "results").glob("sid-k1-ema.json")).read_text())
    assert r["schema"] == "sidbench.results/1" and r["extractors"]["fid"]["name"] == "world-cnn"
