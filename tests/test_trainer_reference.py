"""The trainer's remaining behaviours that the reference code defines: x0 through the scheduler config, NaN samples
dropped in phase B, the EMA ramp's image count, pure fp16, one skip decision for every process under loss scaling,
and v-prediction bases with the reference's fake-score weighting."""
import os

import pytest
import torch

from distill.config import resolve
from distill.loop import Trainer
from distill.loss import SiDLoss
from sidbench.gen.diffusion import Diffusion, guided_output
from sidbench.gen.sampling import OneStepSampler
from sidbench.gen.tiny import SD_SCHEDULER, build_tiny_sd, tiny_unet


@pytest.fixture(scope="module")
def tiny_sd_v(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("sdv") / "tiny-sd-v", prediction_type="v_prediction")


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a red circle\na blue square\ntwo cats\na dog on a mat\n")
    return p


def trainer(sd, prompts, run, **kw):
    cfg = resolve(overrides=dict(base=str(sd), prompts=str(prompts), run_dir=str(run), batch=4, batch_per_device=2,
                                 lr_gen=1e-4, lr_fake=1e-4, trackers="none", **kw))
    return Trainer(cfg)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("extra", [{}, {"clip_sample": True, "clip_sample_range": 0.5},
                                   {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5}])
def test_x0_equals_the_schedulers_pred_original_sample(prediction_type, extra):
    """The reference takes x0 from DDPMScheduler.step: our vectorised x0 equals it, clipping included."""
    from diffusers import DDPMScheduler

    sch = DDPMScheduler(**{**SD_SCHEDULER, "prediction_type": prediction_type, **extra})
    d = Diffusion(sch.alphas_cumprod, prediction_type, dict(sch.config))
    g = torch.Generator().manual_seed(0)
    x_t, out = 3 * torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([20, 625, 979])
    ours = d.x0(out, x_t, t)
    ref = torch.cat([sch.step(out[i:i + 1], int(t[i]), x_t[i:i + 1]).pred_original_sample for i in range(3)])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    if extra:
        assert float(ours.abs().max()) <= max(extra.get("clip_sample_range", 1.0), 1.0) + 1e-6


def test_sampler_and_trainer_share_one_generator_formula_with_the_config_clipping(tmp_path, prompts):
    sd = build_tiny_sd(tmp_path / "clip-sd", clip_sample=True, clip_sample_range=0.05)
    tr = trainer(sd, prompts, tmp_path / "run")
    z, cond = torch.randn(2, 4, 8, 8), tr.embed(["a tree", "the moon"])
    with torch.no_grad():
        x_train = tr.diffusion.one_step(tr.generator, z, cond, 625)
    x_eval = OneStepSampler(tr.base, generator=tr.generator).latents(z, cond)
    assert torch.equal(x_train, x_eval)
    assert float(x_train.abs().max()) <= 0.05 + 1e-7  # clip_sample applies in training, as through scheduler.step


def test_phase_b_drops_nan_samples_and_counts_them():
    fake, teacher = tiny_unet(seed=1).eval(), tiny_unet(seed=2).eval()
    from diffusers import DDPMScheduler

    loss_fn = SiDLoss(Diffusion(DDPMScheduler(**SD_SCHEDULER).alphas_cumprod), k2=1.5, k4=1.5)
    g = torch.Generator().manual_seed(0)
    x_g, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t, cond, uncond = torch.tensor([50, 400, 900]), torch.randn(3, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    bad = x_g.clone()
    bad[1, 0, 0, 0] = float("nan")
    loss, diag = loss_fn.generator_loss(fake, teacher, bad, t, eps, cond, uncond, global_batch=8)
    keep = torch.tensor([0, 2])
    clean, _ = loss_fn.generator_loss(fake, teacher, x_g[keep], t[keep], eps[keep], cond[keep], uncond, global_batch=8)
    assert torch.isfinite(loss) and float(loss) == pytest.approx(float(clean), rel=1e-5)
    assert diag["dropped"].tolist() == [False, True, False] and diag["w"].numel() == 2


def test_phase_b_log_counts_dropped_samples_and_the_step_still_updates(tiny_sd, prompts, tmp_path):
    tr = trainer(tiny_sd, prompts, tmp_path / "run", cfg_train_fake=1.0, cfg_eval_fake=1.0, cfg_eval_real=1.0)
    def first_sample_nan(module, inputs, out):  # NaN values with clean gradients (torch.where), in row 0
        mask = (torch.arange(out.sample.shape[0]) == 0).view(-1, 1, 1, 1)
        return type(out)(sample=torch.where(mask, torch.full_like(out.sample, float("nan")), out.sample))

    hook = tr.teacher.register_forward_hook(first_sample_nan)
    before = [p.detach().clone() for p in tr.generator.parameters()]
    stats = tr.phase_gen()
    hook.remove()
    assert stats["nan_dropped_gen"] == 2  # the first sample of each of the two accumulation rounds
    assert stats["loss_gen"] == stats["loss_gen"] and stats["nonfinite_gen"] == 0  # the NaN samples are not summed
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.generator.parameters()))


def test_ema_ramp_reads_the_image_count_before_the_increment(tiny_sd, prompts, tmp_path):
    """The reference's first EMA update has cur_nimg = 0, so beta = 0: the EMA becomes the generator."""
    tr = trainer(tiny_sd, prompts, tmp_path / "run", ema_mimg=0.05, ema_rampup=0.05)
    tr.step()
    assert all(torch.equal(a, b) for a, b in zip(tr.ema.parameters(), tr.generator.parameters()))
    tr.step()  # now beta = 0.5 ** (4 / (4 * 0.05)) > 0: the EMA lags
    assert not all(torch.equal(a, b) for a, b in zip(tr.ema.parameters(), tr.generator.parameters()))


def test_pure_fp16_mode_is_the_references(tiny_sd, prompts, tmp_path, monkeypatch):
    clipped = []
    real_clip = torch.nn.utils.clip_grad_value_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", lambda p, v: (clipped.append(v), real_clip(p, v))[1])
    tr = trainer(tiny_sd, prompts, tmp_path / "run", precision="fp16-pure")
    assert tr.cfg.adam_eps == 1e-6 and tr.opt_gen.param_groups[0]["eps"] == 1e-6
    assert {p.dtype for net in (tr.teacher, tr.fake, tr.generator, tr.ema) for p in net.parameters()} == {torch.float16}
    for _ in range(2):
        stats = tr.step()
    assert clipped == [1.0, 1.0]  # generator gradients clipped by value at 1, once per generator step
    moments = {v.dtype for opt in (tr.opt_gen, tr.opt_fake) for st in opt.state.values() for k, v in st.items()
               if k in ("exp_avg", "exp_avg_sq")}
    assert moments == {torch.float16}  # what --plan counts for this mode: 2 bytes a moment
    assert all(torch.equal(a, b) for a, b in zip(tr.ema.parameters(), tr.generator.parameters()))  # EMA off
    assert stats["loss_fake"] == stats["loss_fake"]
    assert resolve(overrides={"precision": "fp16-pure", "adam_eps": 1e-4}).adam_eps == 1e-4  # explicit wins


def _overflow_worker(rank, world, sd, prompts, run, init_file, out):
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    tr = trainer(sd, prompts, run, precision="fp16", cfg_train_fake=1.0, cfg_eval_fake=1.0,
                 cfg_eval_real=1.0)
    if rank == 1:  # an overflow on one process only
        tr.fake.register_forward_hook(lambda m, i, o: type(o)(sample=o.sample * float("inf")))
    before = [p.detach().clone() for p in tr.fake.parameters()]
    scale = tr.scaler.get_scale()
    tr.phase_fake()
    unchanged = all(torch.equal(a, b) for a, b in zip(before, tr.fake.parameters()))
    torch.save({"unchanged": unchanged, "scale_before": scale, "scale_after": tr.scaler.get_scale()},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_loss_scaling_takes_one_skip_decision_on_every_process(tiny_sd, prompts, tmp_path):
    """Gradients are summed before unscale_, so an overflow on one process makes every process skip the step."""
    import torch.multiprocessing as mp

    mp.spawn(_overflow_worker, args=(2, str(tiny_sd), str(prompts), str(tmp_path / "run"), str(tmp_path / "init"),
                                     str(tmp_path)), nprocs=2)
    r = [torch.load(tmp_path / f"rank{k}.pt") for k in range(2)]
    assert r[0]["unchanged"] and r[1]["unchanged"]
    assert r[0]["scale_after"] == r[1]["scale_after"] == r[0]["scale_before"] / 2


def test_v_prediction_base_trains_with_the_references_fake_score_weighting(tiny_sd_v, prompts, tmp_path):
    tr = trainer(tiny_sd_v, prompts, tmp_path / "run")
    assert tr.diffusion.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(4)
    x_g, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t, cond = torch.tensor([100, 800]), tr.embed(["a tree", "two cats"])
    ours, _, _ = tr.loss.fake_score_loss(tr.fake, x_g, t, eps, cond, tr.embed.empty, global_batch=4)
    a = tr.base.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x_g + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x_g  # diffusers' get_velocity
    pred = guided_output(tr.fake, x_t, t, cond, tr.embed.empty, 1.5)
    w = (a / (1 - a)).flatten()
    literal = sum(((pred[i] - v[i]) ** 2).sum() * w[i] / (w[i] + 1) for i in range(2)) / 4
    assert float(ours) == pytest.approx(float(literal), rel=1e-5)
    stats = tr.step()  # phase A and B run on a v-prediction base
    assert stats["loss_fake"] > 0 and stats["nan_samples"] == 0 and stats["nan_dropped_gen"] == 0


def test_guidance_diagnostics_are_logged(tiny_sd, prompts, tmp_path):
    tr = trainer(tiny_sd, prompts, tmp_path / "run", prompt_dropout=0.5)
    stats = tr.step()
    for key in ("gap_low_t", "gap_mid_t", "gap_high_t", "fake_err_cond", "fake_teacher_gap"):
        assert key in stats
    assert stats["fake_err_uncond"] is None or stats["fake_err_uncond"] >= 0
