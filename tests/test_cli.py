import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.eval.extractors.registry import ExtractorSpec, register_extractor
from sidbench.eval.stats import FeatureStats

from conftest import TinyFeatures

runner = CliRunner()


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch, tmp_path):
    # A registry entry with no real weights file: --random-weights builds it, like any stand-in.
    register_extractor(ExtractorSpec("tiny-test", "test network", 16, ("clean", "legacy_tensorflow"), None,
                                     load=lambda p, m: None, random=lambda seed, m: TinyFeatures(16, seed)),
                       replace=True)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


BASE = ["--extractor", "tiny-test", "--random-weights", "-q"]


def test_eval_writes_results_and_prints_a_table(two_folders, tmp_path):
    a, b = two_folders
    code, out = run("eval", "--images", a, "--ref", b, "--fid", "--kid", "--kid-subset-size", 10,
                    "--name", "mine", "--method", "SiD-LSG", "--steps", 1, "--out", tmp_path / "r.json", *BASE)
    assert code == 0, out
    assert "FID" in out and "KID" in out and "NOT comparable" in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert set(r["metrics"]) == {"fid", "kid"} and r["inputs"]["reference"]["cache_hit"] is False
    assert r["subject"]["name"] == "mine" and r["subject"]["method"] == "SiD-LSG" and r["subject"]["steps"] == 1
    code, out = run("eval", "--images", a, "--ref", b, "--out", tmp_path / "r2.json", *BASE)
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["inputs"]["reference"]["cache_hit"] is True
    assert r2["metrics"]["fid"]["value"] == pytest.approx(r["metrics"]["fid"]["value"], rel=1e-12)


def test_shards_merge_and_evaluate_like_one_pass(two_folders, tmp_path):
    a, b = two_folders
    # One image per batch: float32 conv kernels may round differently for other batch sizes on some CPUs (1e-7
    # relative on this project's AMD machine, 2026-12-01), and this test is about the float64 merge, not them.
    ONE = (*BASE, "--batch", 1)
    for i in range(3):
        code, out = run("stats", "compute", "--images", a, "--shard", f"{i}/3", "--out", tmp_path / f"s{i}.npz", *ONE)
        assert code == 0, out
    code, out = run("stats", "merge", *[tmp_path / f"s{i}.npz" for i in range(3)], "--out", tmp_path / "m.npz")
    assert code == 0, out
    code, out = run("stats", "compute", "--images", a, "--out", tmp_path / "whole.npz", *ONE)
    m, w = FeatureStats.load(tmp_path / "m.npz"), FeatureStats.load(tmp_path / "whole.npz")
    assert m.n == w.n == 20
    np.testing.assert_allclose(m.mean, w.mean, rtol=1e-10)
    np.testing.assert_allclose(m.cov, w.cov, rtol=1e-10, atol=1e-14)
    code, out = run("eval", "--images", tmp_path / "m.npz", "--ref", b, "--out", tmp_path / "r1.json", *ONE)
    assert code == 0, out
    code, out = run("eval", "--images", a, "--ref", b, "--no-cache", "--out", tmp_path / "r2.json", *ONE)
    f1 = json.loads((tmp_path / "r1.json").read_text())["metrics"]["fid"]["value"]
    f2 = json.loads((tmp_path / "r2.json").read_text())["metrics"]["fid"]["value"]
    assert f1 == pytest.approx(f2, rel=1e-9)


def test_stats_made_under_other_settings_are_refused(two_folders, tmp_path):
    a, b = two_folders
    code, _ = run("stats", "compute", "--images", b, "--pre-resize", 32, "--out", tmp_path / "ref.npz", *BASE)
    assert code == 0
    code, out = run("eval", "--images", a, "--ref", tmp_path / "ref.npz", *BASE)
    assert code == 2 and "pre_resize" in out and "cannot be mixed" in out
    code, out = run("eval", "--images", a, "--ref", tmp_path / "ref.npz", "--pre-resize", 32, "--kid", *BASE)
    assert code == 2 and "KID" in out


def test_clear_errors(tmp_path):
    code, out = run("eval", "--images", tmp_path / "nope", "--ref", tmp_path, *BASE)
    assert code == 2 and "not found" in out
    code, out = run("stats", "compute", "--images", tmp_path, "--shard", "3/2", "--out", tmp_path / "x.npz", *BASE)
    assert code == 2 and "shard" in out
    code, out = run("eval", "--images", tmp_path, "--ref", tmp_path, "--mode", "fast", *BASE)
    assert code == 2 and "'fast' is not one of" in out and "legacy_tensorflow" in out  # the choices, named


def test_weights_list_names_every_known_file():
    code, out = run("weights", "list")
    assert code == 0 and "inception-2015-12-05" in out and "vgg16" in out


def test_the_extractor_registry_refuses_a_taken_name():
    from sidbench.core.errors import SidbenchError

    spec = ExtractorSpec("tiny-test", "another network", 8, ("clean",), None, load=lambda p, m: None,
                         random=lambda seed, m: TinyFeatures(8, seed))
    with pytest.raises(SidbenchError, match="'tiny-test' is already registered"):
        register_extractor(spec)


def test_array_key_names_the_image_array_of_an_npz_holding_several(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8) for _ in range(2))
    np.savez(tmp_path / "two.npz", first=a, second=b)
    np.save(tmp_path / "ref.npy", b)
    code, out = run("eval", "--images", tmp_path / "two.npz", "--ref", tmp_path / "ref.npy", *BASE)
    assert code == 2 and "--array-key" in out                       # the flag the message names exists
    code, out = run("eval", "--images", tmp_path / "two.npz", "--array-key", "second", "--ref", tmp_path / "ref.npy",
                    "--out", tmp_path / "r.json", *BASE)
    assert code == 0, out
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["fid"]["value"] == pytest.approx(0, abs=1e-6)


def test_version_and_short_help_follow_the_conventions():
    import subprocess
    import sys

    import sidbench

    proc = subprocess.run([sys.executable, "-m", "sidbench", "--version"], capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == f"sidbench {sidbench.__version__}"
    code, out = run("eval", "-h")
    assert code == 0 and "eval [OPTIONS]" in " ".join(out.split())


def test_a_generator_without_its_base_is_a_named_error(tmp_path):
    code, out = run("eval", "--images", tmp_path, "--generator", tmp_path / "g", "--ref", tmp_path, *BASE)
    assert code == 2 and "--generator is evaluated in memory on its base model: give --base" in " ".join(out.split())
