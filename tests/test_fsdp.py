"""FSDP2 (sharding = fsdp) with 2 gloo processes on CPU: the same losses as one process (within float rounding of
the reordered sums), a checkpoint written by 2 processes resumed by 1, and the trained state per process measured
at about half the DDP one."""
import json

import pytest
from safetensors.torch import load_file

from conftest import run_sidbench


def args(sd, prompts, run, iters, *extra):
    return ["distill", "--base", str(sd), "--prompts", str(prompts), "--run-dir", str(run), "--batch", "4",
            "--batch-per-device", "1", "--duration-kimg", str(iters * 4 / 1000), "--lr-gen", "1e-4", "--lr-fake",
            "1e-4", "--checkpoint-every", "1", "--trackers", "none", "-q", *extra]


def log(run):
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_fsdp_units_are_the_blocks_then_the_root(tiny_sd):
    from diffusers import UNet2DConditionModel

    from distill.fsdp import units

    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd / "unet"))
    got = units(unet)
    assert got == [*unet.down_blocks, *unet.up_blocks, unet.mid_block]


@pytest.mark.slow
def test_fsdp_two_processes_equal_one_resume_on_one_and_halve_the_trained_state(tiny_sd, train_prompts, tmp_path):
    prompts = train_prompts
    fsdp = ("--sharding", "fsdp")
    one = run_sidbench(args(tiny_sd, prompts, tmp_path / "one", 4, *fsdp))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_sidbench(args(tiny_sd, prompts, tmp_path / "two", 2, *fsdp), processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())[-1] == "ckpt-00000002.dcp"
    # The 2-process checkpoint (one DCP folder, a shard per process) resumed on 1 process, to iteration 4.
    resumed = run_sidbench(args(tiny_sd, prompts, tmp_path / "two", 4, *fsdp, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in (tmp_path / "two" / "log.txt").read_text()
    l1, l2 = log(tmp_path / "one"), log(tmp_path / "two")
    assert [x["iteration"] for x in l2] == [1, 2, 3, 4]
    for a, b in zip(l1, l2):  # the stated bound: the sums' order changes, nothing else
        assert b["loss_fake"] == pytest.approx(a["loss_fake"], rel=1e-5)
        assert b["loss_gen"] == pytest.approx(a["loss_gen"], rel=1e-4, abs=1e-6)
    s1, s2 = (load_file(str(tmp_path / r / "snapshots" / "ema-00000004" / "diffusion_pytorch_model.safetensors"))
              for r in ("one", "two"))
    assert max(float((s1[k] - s2[k]).abs().max()) for k in s1) <= 2.5e-4  # Adam's sign flips at ~0 gradients
    # The run's generator for generate / eval: its EMA snapshot; the raw one is refused with the reason.
    from sidbench.core.errors import SidbenchError
    from sidbench.gen.models import resolve_generator

    assert resolve_generator(tmp_path / "two")[1] == "snapshot"
    with pytest.raises(SidbenchError, match="distributed .FSDP. checkpoint"):
        resolve_generator(tmp_path / "two", "raw")
    # Memory: the trained state (G and fake score weights, gradients, Adam; the EMA) per process, FSDP vs DDP.
    ddp = run_sidbench(args(tiny_sd, prompts, tmp_path / "ddp", 1), processes=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    per_ddp, per_fsdp = log(tmp_path / "ddp")[0]["static_mb"], l2[0]["static_mb"]
    assert per_ddp == pytest.approx(l1[0]["static_mb"], rel=1e-6)  # DDP holds everything on every process
    assert 0.45 < per_fsdp / per_ddp < 0.55, (per_fsdp, per_ddp)
