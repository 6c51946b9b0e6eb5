"""Rectified-flow maths (sidbench.gen.diffusion.FlowMatching): diffusers' grid, exact x0 identities, the one-step
rule, and a known answer: SiD on an analytic Gaussian world with the exact velocity as teacher."""
import math

import pytest
import torch

from sidbench.gen.diffusion import FlowMatching, schedule_of

from flow_world import FlowWorld


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_the_grid_is_diffusers_flow_match_training_grid(shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    fm = FlowMatching.from_config(ref.config)
    torch.testing.assert_close(fm.sigmas.float(), ref.sigmas.flip(0)[:1000].float(), rtol=1e-6, atol=1e-7)
    t = torch.tensor([0, 499, 999])
    torch.testing.assert_close(fm.net_timestep(t), ref.timesteps.flip(0)[t].float(), rtol=1e-6, atol=1e-4)


def test_flux_dynamic_shift_is_diffusers_time_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                          base_image_seq_len=256, max_image_seq_len=4096)
    fm = FlowMatching.from_config(ref.config, image_seq_len=1024)  # 512 px in FLUX (64x64 latent, 2x2 patches)
    mu = 0.5 + (1.15 - 0.5) * (1024 - 256) / (4096 - 256)
    base = torch.arange(1, 1001, dtype=torch.float64) / 1000
    torch.testing.assert_close(fm.sigmas, ref.time_shift(mu, 1.0, base), rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match="image_seq_len"):
        FlowMatching.from_config(ref.config)


def test_x0_identities_are_exact():
    fm = FlowMatching(shift=3.0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 4, 8, 8, generator=g)
    t = torch.tensor([0, 10, 300, 625, 900, 999])
    x_t = fm.add_noise(x0, eps, t)
    v = fm.target(x0, eps, t)
    torch.testing.assert_close(v, eps - x0)
    torch.testing.assert_close(fm.x0(v, x_t, t), x0, rtol=0, atol=2e-6)  # the exact velocity gives x0 back
    s = fm.sigma(t, x0)
    torch.testing.assert_close(x_t, (1 - s) * x0 + s * eps)
    assert fm.fake_loss_weight(t, x0) is None


def test_one_step_is_x_in_minus_sigma_times_the_generator():
    fm = FlowMatching(shift=3.0)
    captured = {}

    class G(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, t, encoder_hidden_states):
            captured["t"] = t
            return type("Out", (), {"sample": self.w * x + 1.0})()

    z = torch.randn(3, 4, 2, 2)
    x_g = fm.one_step(G(), z, torch.zeros(3, 1, 1), 625)
    s = float(fm.sigmas[625])
    torch.testing.assert_close(x_g, s * z - s * (0.5 * s * z + 1.0))
    torch.testing.assert_close(captured["t"], torch.full((3,), s * 1000, dtype=torch.float32))
    assert math.isclose(s, 3 * 0.626 / (1 + 2 * 0.626), rel_tol=1e-12)


def test_schedule_of_a_flow_base_is_flow_matching():
    world = FlowWorld([[0.0]], [[1.0]])
    assert isinstance(schedule_of(world.base), FlowMatching) and world.base.prediction_type == "flow"


MEANS = [[-1.0, 0.0], [1.0, 0.5]]
VARIANCES = [[0.09, 0.25], [0.16, 0.04]]


@pytest.mark.parametrize("settings", [{}, dict(t_sampling="logit-normal", gen_weighting="1-minus-sigma", t_min=0,
                                                t_max=999)], ids=["sid-lsg", "sid-dit-time-and-weight"])
def test_sid_moves_a_one_step_generator_to_each_class_mean_and_variance_under_a_flow_teacher(tmp_path, settings):
    """Known answer through the real Trainer: with the exact velocity as teacher, k = 1 SiD reaches the data, with
    SiD-LSG's uniform times and 1/w, and with the SiD-DiT code's logit-normal times and 100 (1 - sigma) weight."""
    from distill.config import resolve
    from distill.loop import Trainer

    world = FlowWorld(MEANS, VARIANCES)
    prompts = tmp_path / "classes.txt"
    prompts.write_text("\n".join(world.prompts()) + "\n")
    cfg = resolve(overrides=dict(base="flow-world", prompts=str(prompts), run_dir=str(tmp_path / "run"), lsg=1.0,
                                 batch=64, batch_per_device=64, lr_gen=1e-2, lr_fake=3e-2, ema_mimg=0.0,
                                 trackers="none", **settings))
    tr = Trainer(cfg, base=world.base, generator=world.generator, fake=world.fake)
    start_mean, start_var = world.sample_stats(tr.generator)
    means, variances = [], []
    for it in range(500):
        tr.step()
        if it >= 333:
            m, v = world.sample_stats(tr.generator)
            means.append(m)
            variances.append(v)
    mean, var = torch.stack(means).mean(0), torch.stack(variances).mean(0)
    assert not torch.allclose(start_var.log(), world.variances.log(), atol=0.35)  # it had somewhere to go
    assert torch.allclose(mean, world.means, atol=0.1), (start_mean, mean)
    assert torch.allclose(var.log(), world.variances.log(), atol=0.35), (start_var, var)


def test_logit_normal_times_follow_the_sid_dit_distribution():
    """sigma = sigmoid(n), n ~ N(log 2, 1.6^2): quartiles 0.405 / 0.667 / 0.855 (known), on the nearest grid time."""
    from distill.randomness import draws

    fm = FlowMatching(shift=1.0)
    t_of_normal = lambda n: fm.index_of(1 / (1 + math.exp(-(math.log(2) + 1.6 * n))))  # noqa: E731
    _, _, t, _ = draws(0, 0, 0, range(4000), (1, 1, 1), 0, 999, 0.0, t_of_normal=t_of_normal)
    sig = fm.sigmas[t]
    q = torch.quantile(sig, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    torch.testing.assert_close(q, torch.tensor([0.405, 2 / 3, 0.855], dtype=torch.float64), atol=0.03, rtol=0)
    again = draws(0, 0, 0, range(4000), (1, 1, 1), 0, 999, 0.0, t_of_normal=t_of_normal)[2]
    assert torch.equal(t, again)  # a function of (seed, iteration, phase, index) like every draw
    clamped = draws(0, 0, 0, range(500), (1, 1, 1), 100, 800, 0.0, t_of_normal=t_of_normal)[2]
    assert int(clamped.min()) == 100 and int(clamped.max()) == 800


def test_the_sid_dit_phase_b_weight_is_a_literal_restatement():
    """loss = sum 100 (1 - sigma) (y_real - y_fake) ((y_real - x_g) - alpha (y_real - y_fake)) / B."""
    from distill.loss import SiDLoss

    world = FlowWorld(MEANS, VARIANCES)
    fm = schedule_of(world.base)
    loss_fn = SiDLoss(fm, k1=1.0, k2=1.0, k4=1.0, alpha=1.2, weighting="1-minus-sigma")
    g = torch.Generator().manual_seed(1)
    x_g, eps = torch.randn(5, 2, 1, 1, generator=g), torch.randn(5, 2, 1, 1, generator=g)
    t = torch.tensor([50, 300, 500, 700, 950])
    cond = world.base.text_encoder(torch.tensor([[0], [1], [0], [1], [0]]))[0]
    uncond = world.base.text_encoder(torch.full((1, 1), world.C))[0]
    loss, _ = loss_fn.generator_loss(world.fake, world.teacher, x_g, t, eps, cond, uncond, global_batch=8)
    s = fm.sigmas[t].float().view(-1, 1, 1, 1)
    x_t = (1 - s) * x_g + s * eps
    y_fake = x_t - s * world.fake(x_t, s.flatten() * 1000, cond).sample
    y_real = x_t - s * world.teacher(x_t, s.flatten() * 1000, cond).sample
    d = y_real - y_fake
    expected = (100 * (1 - s) * d * ((y_real - x_g) - 1.2 * d)).sum() / 8
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)


def test_the_flow_only_settings_are_refused_for_a_ddpm_teacher(tmp_path):
    from distill.config import resolve
    from distill.loop import Trainer
    from sidbench.core.errors import SidbenchError

    from gmm_world import GMMWorld

    world = GMMWorld(MEANS, VARIANCES)
    (tmp_path / "p.txt").write_text("class0\nclass1\n")
    for extra in (dict(t_sampling="logit-normal"), dict(gen_weighting="1-minus-sigma")):
        cfg = resolve(overrides=dict(base="gmm-world", prompts=str(tmp_path / "p.txt"), run_dir=str(tmp_path / "r"),
                                     batch=4, batch_per_device=4, trackers="none", **extra))
        with pytest.raises(SidbenchError, match="flow-matching teachers"):
            Trainer(cfg, base=world.base, generator=world.generator, fake=world.fake)
