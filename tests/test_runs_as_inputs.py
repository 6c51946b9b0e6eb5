"""A distillation run is an input: its folder (latest EMA snapshot), a snapshot, or a checkpoint (EMA or raw)."""
import json
import os
import stat

import pytest
import torch
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core.device import check_device
from sidbench.core.errors import SidbenchError
from sidbench.gen.models import load_base, load_generator_unet, resolve_generator


@pytest.fixture(scope="module")
def run(tiny_sd, tmp_path_factory):
    """Two real iterations of `sidbench distill` (a snapshot at the end, checkpoints at 1 and 2)."""
    tmp = tmp_path_factory.mktemp("run")
    (tmp / "p.txt").write_text("a red circle\na dog\nx\na tree\n")
    res = CliRunner().invoke(app, ["distill", "--base", str(tiny_sd), "--prompts", str(tmp / "p.txt"), "--run-dir",
                                   str(tmp / "run"), "--batch", "2", "--batch-per-device", "2", "--duration-kimg",
                                   "0.004", "--lr-gen", "1e-3", "--lr-fake", "1e-3", "--checkpoint-every", "1",
                                   "--trackers", "none", "-q"])
    assert res.exit_code == 0, res.output
    return tmp / "run"


def _first(net):
    return net.conv_in.weight.detach().clone()


def test_a_run_folder_means_its_latest_snapshot_and_raw_means_the_trained_generator(run, tiny_sd):
    base = load_base(tiny_sd)
    snap = run / "snapshots" / (run / "snapshots" / "LATEST").read_text().strip()
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    assert resolve_generator(run) == (snap, "snapshot")
    assert resolve_generator(run, "raw") == (ckpt, "checkpoint")
    state = torch.load(ckpt, weights_only=True)
    ema, raw = _first(load_generator_unet(run, base)), _first(load_generator_unet(run, base, "raw"))
    assert torch.equal(ema, _first(load_generator_unet(snap, base)))               # the snapshot is the EMA
    assert torch.equal(ema, state["ema"]["conv_in.weight"])
    assert torch.equal(_first(load_generator_unet(ckpt, base)), ema)                # a checkpoint: EMA by default
    assert torch.equal(raw, state["generator"]["conv_in.weight"]) and not torch.equal(raw, ema)


def test_export_and_generate_take_a_run_folder_and_record_what_it_resolved_to(run, tiny_sd, tmp_path):
    r = CliRunner().invoke(app, ["export", "--generator", str(run), "--which", "raw", "--base", str(tiny_sd),
                                 "--out", str(tmp_path / "raw-unet")])
    assert r.exit_code == 0, r.output
    base = load_base(tiny_sd)
    assert torch.equal(_first(load_generator_unet(tmp_path / "raw-unet")), _first(load_generator_unet(run, base, "raw")))
    (tmp_path / "p.txt").write_text("a dog\na tree\n")
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--generator", str(run), "--prompts",
                                 str(tmp_path / "p.txt"), "--out", str(tmp_path / "img"), "-q"])
    assert r.exit_code == 0, r.output
    g = json.loads((tmp_path / "img" / "sidbench_generate.json").read_text())["networks"]["generator"]
    assert g["kind"] == "snapshot" and g["resolved"].endswith((run / "snapshots" / "LATEST").read_text().strip())


def test_wrong_generator_inputs_are_named_errors(run, tmp_path):
    snap = run / "snapshots" / (run / "snapshots" / "LATEST").read_text().strip()
    with pytest.raises(SidbenchError, match="snapshot folder holds one generator"):
        resolve_generator(snap, "raw")
    with pytest.raises(SidbenchError, match="generator not found"):
        resolve_generator(tmp_path / "nope")
    with pytest.raises(SidbenchError, match="--which 'best'"):
        resolve_generator(run, "best")
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(SidbenchError, match="no snapshot or checkpoint yet"):
        resolve_generator(tmp_path / "empty-run")
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(SidbenchError, match="cannot read checkpoint"):
        load_generator_unet(tmp_path / "x.pt", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only case")
def test_cuda_on_a_cpu_build_is_a_named_error(tiny_sd, tmp_path):
    with pytest.raises(SidbenchError, match="--device cuda: this torch .* use --device cpu"):
        check_device("cuda")
    with pytest.raises(SidbenchError, match="not a device name"):
        check_device("gpu0")
    (tmp_path / "p.txt").write_text("a dog\n")
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(tmp_path / "p.txt"), "--out",
                                 str(tmp_path / "o"), "--device", "cuda"])
    assert r.exit_code == 2 and "--device cuda" in r.stderr and "Traceback" not in r.output


def test_exports_and_snapshots_carry_iteration_kimg_and_the_run_config(run, tiny_sd, tmp_path):
    snap = run / "snapshots" / (run / "snapshots" / "LATEST").read_text().strip()
    made = json.loads((snap / "sidbench_export.json").read_text())["made_by"]
    assert (made["iteration"], made["kimg"], made["config"]["lr_gen"]) == (2, 0.004, 1e-3)
    r = CliRunner().invoke(app, ["export", "--generator", str(sorted((run / "checkpoints").glob("*.pt"))[0]),
                                 "--base", str(tiny_sd), "--out", str(tmp_path / "it1")])
    assert r.exit_code == 0, r.output
    made = json.loads((tmp_path / "it1" / "sidbench_export.json").read_text())["made_by"]
    assert (made["kind"], made["which"], made["iteration"], made["kimg"]) == ("checkpoint", "ema", 1, 0.002)
    # A safetensors export is shared like any output: the umask's mode, not mkstemp's 0600.
    r = CliRunner().invoke(app, ["export", "--generator", str(run), "--base", str(tiny_sd), "--format", "safetensors",
                                 "--out", str(tmp_path / "g.safetensors")])
    assert r.exit_code == 0, r.output
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "g.safetensors").stat().st_mode) == 0o666 & ~umask


def test_a_folder_of_other_settings_is_refused_and_eval_records_the_sidecar(run, tiny_sd, tmp_path, tiny):
    from sidbench.eval.api import EvalConfig, evaluate

    (tmp_path / "p.txt").write_text("a dog\na tree\na boat\n")
    gen = ["generate", "--base", str(tiny_sd), "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "img"),
           "-q"]
    r = CliRunner().invoke(app, [*gen, "--steps", "2", "--n", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*gen, "--steps", "2"])                    # same settings, more images: continues
    assert r.exit_code == 0 and "2 kept" in r.output, r.output
    before = {p.name: p.read_bytes() for p in (tmp_path / "img").iterdir()}
    r = CliRunner().invoke(app, [*gen, "--steps", "3", "--cfg", "2"])
    assert r.exit_code == 2 and "steps 2 -> 3" in r.stderr and "cfg 1.0 -> 2.0" in r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "img").iterdir()} == before   # nothing touched
    r = CliRunner().invoke(app, [*gen, "--generator", str(run)])
    assert r.exit_code == 2 and "generator_sha256 None ->" in r.stderr
    r = CliRunner().invoke(app, [*gen, "--steps", "3", "--overwrite"])
    assert r.exit_code == 0 and "3 written" in r.output
    side = json.loads((tmp_path / "img" / "sidbench_generate.json").read_text())
    assert side["config"]["steps"] == 3 and side["this_run"]["status"] == "complete"

    res = evaluate(str(tmp_path / "img"), str(tmp_path / "img"), EvalConfig(random_weights=True, use_cache=False,
                                                                             progress=False), extractor=tiny)
    made = res["inputs"]["generated"]["made_by"]
    assert made["config"]["steps"] == 3 and made["prompts_md5"] == side["prompts"]["md5"]
    assert res["subject"]["steps"] == 3
    (tmp_path / "other.txt").write_text("x\ny\nz\n")
    with pytest.raises(SidbenchError, match="CLIP would pair images with the wrong captions"):
        evaluate(str(tmp_path / "img"), None, EvalConfig(fid=False, clip=True, prompts=str(tmp_path / "other.txt"),
                                                         random_weights=True, progress=False))


def test_a_refused_resume_leaves_the_run_folder_untouched(run, tiny_sd):
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    r = CliRunner().invoke(app, ["distill", "--base", str(tiny_sd), "--prompts", str(run.parent / "p.txt"),
                                 "--run-dir", str(run), "--batch", "2", "--batch-per-device", "2", "--duration-kimg",
                                 "0.006", "--lr-gen", "5e-4", "--lr-fake", "1e-3", "--trackers", "none", "-q"])
    assert r.exit_code == 2 and "lr_gen (0.001 -> 0.0005)" in r.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
