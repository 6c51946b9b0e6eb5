import json

from typer.testing import CliRunner

from sidbench.cli import app


def test_demo_quick_runs_offline_and_orders_the_sets(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "table.md").is_file()
    fids = [json.loads((tmp_path / f"results-{i}.json").read_text())["metrics"]["fid"]["value"] for i in range(1, 5)]
    # Known truth: a fresh sample of the true world is closest; heavy pixel noise is farthest.
    assert fids[0] < fids[1] < fids[2] < fids[3]
