"""`distill --plan`: the static memory per part in closed form for each sharding, activations measured on fake
tensors equal to the same measurement on real ones, and a plan that does not fit refused with one that does."""
import pytest
import torch

from distill.plan import GIB, Setup, measure_activations, static_parts


def test_static_parts_divide_as_each_sharding_says():
    P, n = 1_000_000, 4
    ddp = static_parts(P, 0, 0, Setup(processes=n))
    assert ddp["teacher"] == 4 * P and ddp["generator + fake score: weights and gradients"] == 16 * P
    assert ddp["Adam moments, both nets"] == 16 * P and ddp["EMA"] == 4 * P
    z1 = static_parts(P, 0, 0, Setup(processes=n, sharding="zero1"))
    assert z1["Adam moments, both nets"] == 16 * P / n and z1["generator + fake score: weights and gradients"] == 16 * P
    f = static_parts(P, 0, 0, Setup(processes=n, sharding="fsdp"))
    assert f["teacher"] == 4 * P and all(f[k] == ddp[k] / n for k in f if k not in ("teacher",)
                                         and not k.startswith("text"))
    fs = static_parts(P, 0, 7, Setup(processes=n, sharding="fsdp", teacher_sharding="shard"))
    assert fs["teacher"] == 4 * P / n and fs["text encoders + VAE (frozen, fp32)"] == 28


def _tiny_unet_and_inputs(config):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(config)
    size = config["sample_size"]
    args = (torch.randn(1, config["in_channels"], size, size), torch.tensor([500]))
    return unet, (args, {"encoder_hidden_states": torch.randn(1, 77, config["cross_attention_dim"])})


@pytest.mark.parametrize("checkpointing", [False, True])
def test_fake_tensor_activations_equal_the_real_runs(tiny_sd, checkpointing):
    """The plan measures a real architecture's activations without running it: on fake tensors. On a network
    small enough to run, the two measurements are the same bytes."""
    from diffusers import UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    config = dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet")))
    real = measure_activations(*_tiny_unet_and_inputs(config), grad_checkpointing=checkpointing)
    with FakeTensorMode():
        fake = measure_activations(*_tiny_unet_and_inputs(config), grad_checkpointing=checkpointing)
    assert real > 0 and fake == real, (fake, real)


def test_phase_b_activations_count_each_network_and_its_guidance_branch():
    from distill.plan import phase_b_activations

    s = Setup(batch_per_device=3)  # CFG in the fake score and the teacher: both evaluate 2 x 3 samples
    assert phase_b_activations(s, (10, 1), (20, 2)) == (10 + 3) + 6 + 12  # fixed part: the generator's only
    s1 = Setup(batch_per_device=3, cfg_fake=False, cfg_teacher=False)
    assert phase_b_activations(s1, (10, 1), (20, 2)) == (10 + 3) + 3 + 6


def test_plan_refuses_what_does_not_fit_and_names_what_would(monkeypatch, capsys):
    from typer.testing import CliRunner

    import distill.plan as P
    from sidbench.cli.app import app

    monkeypatch.setattr(P, "activation_bytes", lambda name, precision="fp32", grad_checkpointing=False, batch=1:
                        int(((0.5 if precision == "bf16" else 1.0) * (0.3 if grad_checkpointing else 1.0) * batch
                             + (0.4 if precision == "bf16" else 0.0)) * GIB))
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "sd15"])
    assert r.exit_code == 0, r.output
    assert "total per device" in r.output and "3.20 GiB" in r.output  # SD1.5's 859.5M fp32 teacher
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "sd15", "--device-memory", "24"])
    assert r.exit_code != 0 and "does NOT fit" in r.output and "this would fit:" in r.output
    assert "sharding fsdp" in r.output
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "flux.1-dev", "--precision", "bf16",
                                 "--sharding", "fsdp", "--teacher-sharding", "shard", "--grad-checkpointing",
                                 "--processes", "8", "--device-memory", "80"])
    assert r.exit_code == 0 and "fits" in r.output, r.output
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "/no/such/folder"])
    assert r.exit_code != 0 and "known architecture" in r.output


def test_gradient_checkpointing_really_lowers_the_trained_networks_activations(tiny_sd, tmp_path):
    """The trainer's --grad-checkpointing switches on diffusers' checkpointing in both trained networks; on the
    tiny UNet it measurably lowers what one training forward + backward holds."""
    from diffusers import UNet2DConditionModel

    from distill.config import resolve
    from distill.loop import Trainer

    config = dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet")))
    plain = measure_activations(*_tiny_unet_and_inputs(config))
    ckpt = measure_activations(*_tiny_unet_and_inputs(config), grad_checkpointing=True)
    assert ckpt < plain, (ckpt, plain)
    (tmp_path / "p.txt").write_text("a cat\n")
    tr = Trainer(resolve(overrides=dict(base=str(tiny_sd), prompts=str(tmp_path / "p.txt"), run_dir=str(tmp_path / "r"),
                                        grad_checkpointing=True, batch=2, batch_per_device=2)))
    assert tr.generator.is_gradient_checkpointing and tr.fake.is_gradient_checkpointing
    assert not tr.teacher.is_gradient_checkpointing  # frozen: nothing to trade
