"""SiD-LSG trainer: the loss against a literal re-statement, guidance, EMA, non-finite handling,
config rules, SIGKILL + resume = uninterrupted (bitwise), 2 processes = 1, and a tiny end-to-end run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from distill.config import resolve
from distill.ema import ema_beta
from distill.loop import sanitize_grads
from distill.loss import SiDLoss
from sidbench.gen.diffusion import Diffusion, add_noise, guided_output
from sidbench.core.errors import SidbenchError
from sidbench.gen.tiny import SD_SCHEDULER, tiny_unet

from conftest import random_images, run_sidbench, write_images


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a red circle\na blue square\ntwo cats\na dog on a mat\na tree\nthe moon\na boat\n")
    return p


def alphas():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD_SCHEDULER).alphas_cumprod.double()


def literal_x0(net, x_t, t, cond, uncond, k, abar):
    """One sample at a time, guidance written out: the formula, not our vectorised code."""
    outs = []
    for i in range(x_t.shape[0]):
        xi, ti = x_t[i:i + 1], t[i:i + 1]
        e_c = net(xi, ti, encoder_hidden_states=cond[i:i + 1]).sample
        e = e_c if k == 1 else net(xi, ti, encoder_hidden_states=uncond).sample + k * (
            e_c - net(xi, ti, encoder_hidden_states=uncond).sample)
        a = abar[t[i]].float()
        outs.append((xi - (1 - a).sqrt() * e) / a.sqrt())
    return torch.cat(outs)


@pytest.mark.parametrize("k2,k4,alpha", [(1.0, 1.0, 1.0), (1.5, 1.5, 1.0), (1.0, 3.0, 1.2)])
def test_generator_loss_equals_the_literal_formula(k2, k4, alpha):
    fake, teacher = tiny_unet(seed=1).eval(), tiny_unet(seed=2).eval()
    ab = alphas()
    B = 3
    g = torch.Generator().manual_seed(0)
    x_g = torch.randn(B, 4, 8, 8, generator=g, requires_grad=True)
    eps = torch.randn(B, 4, 8, 8, generator=g)
    t = torch.tensor([20, 500, 979])
    cond, uncond = torch.randn(B, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    loss_fn = SiDLoss(Diffusion(ab), k1=1.0, k2=k2, k4=k4, alpha=alpha)
    ours, _ = loss_fn.generator_loss(fake, teacher, x_g, t, eps, cond, uncond, global_batch=8)
    (g_ours,) = torch.autograd.grad(ours, x_g)

    a = ab[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x_g + (1 - a).sqrt() * eps
    y_fake = literal_x0(fake, x_t, t, cond, uncond, k2, ab)
    y_real = literal_x0(teacher, x_t, t, cond, uncond, k4, ab)
    total = 0
    for i in range(B):
        w = (x_g[i] - y_real[i]).abs().mean().detach().clamp_min(1e-5)
        total = total + ((y_real[i] - y_fake[i]) * ((y_real[i] - x_g[i]) - alpha * (y_real[i] - y_fake[i])) / w).sum()
    literal = total / 8
    (g_lit,) = torch.autograd.grad(literal, x_g)
    assert float(ours) == pytest.approx(float(literal), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(g_ours, g_lit, rtol=1e-4, atol=1e-6)


def test_fake_score_loss_is_the_epsilon_mse_over_the_global_batch():
    fake = tiny_unet(seed=3).eval()
    ab = alphas()
    g = torch.Generator().manual_seed(1)
    x_g, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t, cond, uncond = torch.tensor([100, 900]), torch.randn(2, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    ours, bad, _ = SiDLoss(Diffusion(ab), k1=1.5).fake_score_loss(fake, x_g, t, eps, cond, uncond, global_batch=4)
    a = ab[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x_g + (1 - a).sqrt() * eps
    e = fake(x_t, t, encoder_hidden_states=uncond.expand(2, -1, -1)).sample
    e = e + 1.5 * (fake(x_t, t, encoder_hidden_states=cond).sample - e)
    assert float(ours) == pytest.approx(float(((e - eps) ** 2).sum() / 4), rel=1e-5)
    assert not bad.any()


def test_phase_b_gradients_flow_through_x_t():
    fake, teacher = tiny_unet(seed=1).eval(), tiny_unet(seed=2).eval()
    ab = alphas()
    g = torch.Generator().manual_seed(5)
    x_g = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    eps, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([300, 700])
    cond, uncond = torch.randn(2, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    loss_fn = SiDLoss(Diffusion(ab), k2=1.0, k4=1.0)
    loss, _ = loss_fn.generator_loss(fake, teacher, x_g, t, eps, cond, uncond, 2)
    (full,) = torch.autograd.grad(loss, x_g)
    # The same loss with x_t detached before the networks: only the explicit x_g term is left.
    x_t = add_noise(x_g, eps, loss_fn.abar(t, x_g)).detach()
    y_f = loss_fn.diffusion.x0_estimate(fake, x_t, t, cond, uncond, 1.0)
    y_r = loss_fn.diffusion.x0_estimate(teacher, x_t, t, cond, uncond, 1.0)
    w = (x_g - y_r).abs().mean(dim=(1, 2, 3), keepdim=True).detach().clamp_min(1e-5)
    (detached,) = torch.autograd.grad(((y_r - y_f) * ((y_r - x_g) - (y_r - y_f)) / w).sum() / 2, x_g)
    assert (full - detached).norm() > 1e-3 * full.norm()


class Recorder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, encoder_hidden_states):
        self.calls.append((x.shape[0], encoder_hidden_states.clone()))
        return self.net(x, t, encoder_hidden_states=encoder_hidden_states)


def test_guidance_one_call_at_k1_and_the_batched_pair_otherwise():
    net = Recorder(tiny_unet(seed=4).eval())
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([10, 20, 30])
    cond, uncond = torch.randn(3, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    out1 = guided_output(net, x, t, cond, uncond, 1.0)
    assert len(net.calls) == 1 and net.calls[0][0] == 3 and torch.equal(net.calls[0][1], cond)
    net.calls.clear()
    out = guided_output(net, x, t, cond, uncond, 2.5)
    assert len(net.calls) == 1 and net.calls[0][0] == 6
    e_c = net.net(x, t, encoder_hidden_states=cond).sample
    e_u = net.net(x, t, encoder_hidden_states=uncond.expand(3, -1, -1)).sample
    torch.testing.assert_close(out, e_u + 2.5 * (e_c - e_u), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out1, e_c, rtol=1e-5, atol=1e-5)


def test_ema_half_life_ramp():
    assert ema_beta(512, 512 * 10, 0.05) == pytest.approx(0.5 ** (512 / (512 * 10 * 0.05)))
    assert ema_beta(512, 10**9, 0.05) == pytest.approx(0.5 ** (512 / 50000))


def test_non_finite_gradients_are_counted_and_replaced():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0])
    assert sanitize_grads([p]) == 3
    assert p.grad.tolist() == [0.0, 1e5, -1e5, 1.0]


def test_config_rules(tmp_path):
    assert resolve().cfg_eval_real == 1.5 and resolve().lr_gen == 1e-6 and resolve().batch == 512
    c = resolve(overrides={"lsg": 3.0, "cfg_train_fake": 1.0})
    assert (c.cfg_train_fake, c.cfg_eval_fake, c.cfg_eval_real) == (1.0, 3.0, 3.0)
    f = tmp_path / "run.toml"
    f.write_text('lr_gen = 5e-6\nbatch = 64\nlsg = 2.0\n')
    c = resolve(str(f), {"batch": 32})
    assert (c.lr_gen, c.batch, c.cfg_eval_real) == (5e-6, 32, 2.0)
    f.write_text('lr_generator = 5e-6\n')
    with pytest.raises(SidbenchError, match="unknown config key.*lr_generator"):
        resolve(str(f))
    with pytest.raises(SidbenchError, match="multiple"):
        resolve(overrides={"batch": 6, "batch_per_device": 4}).rounds(1)


def distill_args(sd, prompts, run, iters, extra=()):
    return ["distill", "--base", str(sd), "--prompts", str(prompts), "--run-dir", str(run), "--batch", "4",
            "--batch-per-device", "2", "--duration-kimg", str(iters * 4 / 1000), "--lr-gen", "1e-4",
            "--lr-fake", "1e-4", "--checkpoint-every", "1", "--keep-checkpoints", "3", "-q", *extra]


def run_cli(args, **kw):
    return run_sidbench(args, **kw)


def final_state(run):
    ck = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    return torch.load(ck, weights_only=True)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_sd, prompts, tmp_path):
    a = run_cli(distill_args(tiny_sd, prompts, tmp_path / "a", 5))
    assert a.returncode == 0, a.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "sidbench", *distill_args(tiny_sd, prompts, tmp_path / "b", 5)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 600
    while not (tmp_path / "b" / "checkpoints" / "ckpt-00000002.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "checkpoints" / "ckpt-00000005.pt").exists()
    b = run_cli(distill_args(tiny_sd, prompts, tmp_path / "b", 5, ["--resume", "auto"]))
    assert b.returncode == 0, b.stderr[-3000:]
    sa, sb = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert sa["iteration"] == sb["iteration"] == 5
    for net in ("generator", "ema", "fake"):
        for k in sa[net]:
            assert torch.equal(sa[net][k], sb[net][k]), (net, k)


@pytest.mark.slow
def test_two_processes_equal_one_at_the_same_global_batch(tiny_sd, prompts, tmp_path):
    one = run_cli(distill_args(tiny_sd, prompts, tmp_path / "one", 2, ["--batch-per-device", "1"]))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli(distill_args(tiny_sd, prompts, tmp_path / "two", 2, ["--batch-per-device", "1"]), processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    s1, s2 = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    # The sums over samples only change order, so losses agree to float rounding ...
    l1, l2 = [[json.loads(x) for x in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in ("one", "two")]
    for a, b in zip(l1, l2):
        assert b["loss_fake"] == pytest.approx(a["loss_fake"], rel=1e-5)
        assert b["loss_gen"] == pytest.approx(a["loss_gen"], rel=1e-4, abs=1e-6)
    # ... and so do the weights, except where Adam with beta1 = 0 divides a near-zero gradient by its own
    # magnitude: a rounding-level sign flip there moves that weight by up to 2 x lr (1e-4).
    for net in ("generator", "fake"):
        diff = torch.cat([(s1[net][k] - s2[net][k]).abs().flatten() for k in s1[net]])
        assert float(diff.max()) <= 2.5e-4 and float((diff > 1e-6).float().mean()) < 1e-3


def test_tiny_end_to_end_distill_generate_eval(tiny_sd, prompts, tmp_path, tiny):
    from sidbench.cli.app import app
    from sidbench.eval.api import EvalConfig, evaluate

    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, tmp_path / "run", 2, ["--text-encoder-dtype", "bf16"]))
    assert r.exit_code == 0, r.output
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in log] == [1, 2] and all("loss_gen" in x and "fake_teacher_gap" in x for x in log)
    snap = tmp_path / "run" / "snapshots" / (tmp_path / "run" / "snapshots" / "LATEST").read_text().strip()
    gen = ["generate", "--base", str(tiny_sd), "--generator", str(snap), "--prompts", str(prompts), "-q"]
    r = CliRunner().invoke(app, [*gen, "--out", str(tmp_path / "imgs")])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "imgs" / "sidbench_generate.json").read_text())  # the encoders as it trained
    assert side["config"]["text_encoder_dtype"] == side["networks"]["base"]["text_encoder_dtype"] == "bf16"
    from sidbench.gen.generate import GenerateConfig, build_sampler

    for asked, held in ((None, torch.bfloat16), ("fp32", torch.float32)):  # what the sampler really holds
        sampler, _ = build_sampler(GenerateConfig(base=str(tiny_sd), prompts=str(prompts), generator=str(snap),
                                                  text_encoder_dtype=asked))
        assert {p.dtype for m in sampler.base.text_encoders for p in m.parameters()} == {held}
    with pytest.raises(SidbenchError, match="--text-encoder-dtype fp32 with --precision bf16"):
        build_sampler(GenerateConfig(base=str(tiny_sd), prompts=str(prompts), generator=str(snap), precision="bf16",
                                     text_encoder_dtype="fp32"))  # an upcast of bf16 weights is not fp32's
    r = CliRunner().invoke(app, [*gen, "--out", str(tmp_path / "imgs"), "--text-encoder-dtype", "fp32"])
    assert r.exit_code == 2 and "text_encoder_dtype" in r.output  # other conditioning bits: not the same folder
    res = evaluate(str(tmp_path / "imgs"), str(tmp_path / "imgs"), EvalConfig(use_cache=False, progress=False),
                   extractor=tiny)
    assert res["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["batch"] == 4 and saved["cfg_eval_real"] == 1.5
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, tmp_path / "run", 3, ["--lr-gen", "1e-3"]))
    assert r.exit_code == 2 and "lr_gen" in r.output  # resuming under another trajectory setting is refused


@pytest.mark.slow
def test_zero1_sharded_optimiser_equals_one_process(tiny_sd, prompts, tmp_path):
    """ZeRO stage 1 shards the Adam moments; the updates (gradients summed first) stay those of one process.
    The proxy evaluation is collective too (each process generates its share), so it neither hangs nor changes."""
    write_images(tmp_path / "ref", random_images(6, seed=3))
    proxy = ["--proxy-every", "2", "--proxy-ref", str(tmp_path / "ref"), "--proxy-random-weights", "--proxy-prompts", "4"]
    one = run_cli(distill_args(tiny_sd, prompts, tmp_path / "one", 2, ["--batch-per-device", "1", *proxy]))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli(distill_args(tiny_sd, prompts, tmp_path / "two", 2,
                               ["--batch-per-device", "1", "--sharding", "zero1", *proxy]), processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    p1, p2 = [[json.loads(x) for x in (tmp_path / r / "log.jsonl").read_text().splitlines()][-1] for r in ("one", "two")]
    assert p2["proxy_fid"] == pytest.approx(p1["proxy_fid"], rel=1e-3)
    s1, s2 = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    for net in ("generator", "fake"):
        diff = torch.cat([(s1[net][k] - s2[net][k]).abs().flatten() for k in s1[net]])
        assert float(diff.max()) <= 2.5e-4 and float((diff > 1e-6).float().mean()) < 1e-3
    # The checkpoint holds the whole (consolidated) optimiser state, like an unsharded run's; the second moments
    # agree except where step 2's gradient saw one of the rounding-level weight differences above.
    for opt in ("opt_gen", "opt_fake"):
        assert sorted(s2[opt]["state"]) == sorted(s1[opt]["state"])
        a = torch.cat([st["exp_avg_sq"].flatten() for _, st in sorted(s1[opt]["state"].items())])
        b = torch.cat([st["exp_avg_sq"].flatten() for _, st in sorted(s2[opt]["state"].items())])
        rel = (a - b).abs() / a.abs().clamp_min(1e-30)
        assert float((rel > 1e-2).float().mean()) < 1e-2 and float(rel.median()) < 1e-4


@pytest.mark.parametrize("gen_steps", [1, 2])
def test_proxy_fid_and_clip_equal_an_evaluation_of_the_exported_snapshot(tiny_sd, prompts, tmp_path, gen_steps):
    """The proxy at the last iteration scores the same EMA generator that the final snapshot exports; a few-step
    run scores every step count (K under the plain keys) and draws a grid of each."""
    import open_clip

    from distill.loop import train
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.gen.generate import GenerateConfig, generate

    from test_clip_score import TINY

    d = tmp_path / "clipcfg"
    d.mkdir()
    (d / "sidbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(d))
    ref = tmp_path / "ref"
    write_images(ref, random_images(6, seed=3))
    cfg = resolve(overrides=dict(base=str(tiny_sd), prompts=str(prompts), run_dir=str(tmp_path / "run"), batch=4,
                                 batch_per_device=2, duration_kimg=0.008, lr_gen=1e-4, lr_fake=1e-4, checkpoint_every=0,
                                 proxy_every=1, proxy_prompts=4, proxy_ref=str(ref), proxy_random_weights=True,
                                 proxy_clip=True, proxy_clip_model="sidbench-tiny-clip", trackers="none",
                                 gen_steps=gen_steps, grid_every=2))
    train(cfg, resume="none", progress=False)
    grids = sorted(p.name for p in (tmp_path / "run" / "grids").iterdir())
    assert grids == (["grid-00000002.png"] if gen_steps == 1 else
                     ["grid-00000002-1step.png", "grid-00000002-2step.png"])
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in log] == [1, 2] and all("proxy_fid" in x and "proxy_clip" in x for x in log)
    snap = tmp_path / "run" / "snapshots" / (tmp_path / "run" / "snapshots" / "LATEST").read_text().strip()
    first4 = tmp_path / "first4.txt"
    first4.write_text("".join(p + "\n" for p in prompts.read_text().splitlines()[:4]))
    for n in range(1, gen_steps + 1):
        out = tmp_path / f"imgs{n}"
        generate(GenerateConfig(base=str(tiny_sd), generator=str(snap), prompts=str(first4), gen_steps=n), out,
                 progress=False)
        res = evaluate(str(out), str(ref), EvalConfig(random_weights=True, use_cache=False, progress=False,
                                                      clip=True, prompts=str(first4), clip_model="sidbench-tiny-clip"))
        tag = "" if n == gen_steps else f"_{n}step"
        assert log[-1]["proxy_fid" + tag] == pytest.approx(res["metrics"]["fid"]["value"], rel=1e-6, abs=1e-6)
        assert log[-1]["proxy_clip" + tag] == pytest.approx(res["metrics"]["clip"]["value"], rel=1e-6, abs=1e-7)
        assert res["subject"]["steps"] == n  # the sidecar's step count reaches the results
    # The seam a user crosses next: `sidbench report --curves` on this run's real log.
    from sidbench.report import read_training_log

    curves = read_training_log(tmp_path / "run" / "log.jsonl")
    assert curves["fid"].tolist() == pytest.approx([x["proxy_fid"] for x in log])
    assert curves["clip"].tolist() == pytest.approx([x["proxy_clip"] for x in log])


def test_wandb_tracker_gets_every_logged_line_and_a_missing_package_is_a_clear_error(tiny_sd, prompts, tmp_path,
                                                                                     monkeypatch):
    import importlib.machinery
    import types

    from distill.loop import train

    overrides = dict(base=str(tiny_sd), prompts=str(prompts), batch=4, batch_per_device=4, duration_kimg=0.008,
                     checkpoint_every=0, trackers="wandb", tracker_project="proj")
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(SidbenchError, match="pip install wandb"):
        train(resolve(overrides=dict(overrides, run_dir=str(tmp_path / "a"))), resume="none", progress=False)
    assert not (tmp_path / "a" / "checkpoints").exists()  # refused before any training

    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, values, step=None):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finish"] += 1

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: calls["init"].append(kw) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train(resolve(overrides=dict(overrides, run_dir=str(tmp_path / "b"))), resume="none", progress=False)
    assert calls["init"][0]["project"] == "proj" and calls["init"][0]["config"]["batch"] == 4
    lines = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [s for s, _ in calls["log"]] == [x["iteration"] for x in lines] == [1, 2]
    for (_, logged), line in zip(calls["log"], lines):
        assert logged["loss_gen"] == line["loss_gen"] and logged["loss_fake"] == line["loss_fake"]
    assert calls["finish"] == 1


class GaussianScore(torch.nn.Module):
    """The exact epsilon-predictor of data N(m, diag(v)) under the SD schedule (a UNet stand-in, per channel)."""

    def __init__(self, m, v, trainable: bool):
        super().__init__()
        self.abar = alphas().float()
        self.m = torch.nn.Parameter(torch.tensor(m), requires_grad=trainable)
        self.log_v = torch.nn.Parameter(torch.tensor(v).log(), requires_grad=trainable)

    def forward(self, x, t, encoder_hidden_states=None):
        from types import SimpleNamespace

        a = self.abar[t].view(-1, 1, 1, 1)
        m, v = self.m.view(1, -1, 1, 1), self.log_v.exp().view(1, -1, 1, 1)
        return SimpleNamespace(sample=(1 - a).sqrt() * (x - a.sqrt() * m) / (a * v + 1 - a))


def test_sid_drives_a_gaussian_generator_to_the_teachers_gaussian():
    """Known answer: with exact Gaussian score families, alternating phase A / phase B of our loss unit moves a
    generator x = mu + s z from N(0, 1) to the teacher's N(m, v), per channel (means, and variances over 25x)."""
    torch.manual_seed(0)
    m, v = [1.0, -0.5, 0.3, 2.0], [0.25, 1.0, 0.04, 0.5]
    teacher, fake = GaussianScore(m, v, False), GaussianScore([0.0] * 4, [1.0] * 4, True)
    mu, log_s = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    loss = SiDLoss(Diffusion(alphas()), k1=1.0, k2=1.0, k4=1.0, alpha=1.0)
    opt_g = torch.optim.Adam([mu, log_s], lr=1e-2, betas=(0.0, 0.999))
    opt_f = torch.optim.Adam(fake.parameters(), lr=3e-2, betas=(0.0, 0.999))
    B, cond = 256, torch.zeros(256, 1, 1)
    sample = lambda: mu.view(1, -1, 1, 1) + log_s.exp().view(1, -1, 1, 1) * torch.randn(B, 4, 1, 1)
    draw = lambda x: (torch.randint(20, 980, (B,)), torch.randn_like(x))
    means, variances = [], []
    for it in range(1500):
        x = sample().detach()
        lf, _, _ = loss.fake_score_loss(fake, x, *draw(x), cond, cond, B)
        opt_f.zero_grad()
        lf.backward()
        opt_f.step()
        x = sample()
        fake.requires_grad_(False)
        lg, _ = loss.generator_loss(fake, teacher, x, *draw(x), cond, cond, B)
        opt_g.zero_grad()
        lg.backward()
        opt_g.step()
        fake.requires_grad_(True)
        if it >= 1000:  # average the (noisy) end of the run
            means.append(mu.detach().clone())
            variances.append((2 * log_s.detach()).exp())
    mean, var = torch.stack(means).mean(0), torch.stack(variances).mean(0)
    assert torch.allclose(mean, torch.tensor(m), atol=0.08), mean
    assert torch.allclose(var.log(), torch.tensor(v).log(), atol=0.25), var   # within ~28 %; started 1/v away


def test_tensorboard_tracker_writes_events_when_installed(tiny_sd, prompts, tmp_path):
    pytest.importorskip("tensorboard")
    from distill.loop import train

    train(resolve(overrides=dict(base=str(tiny_sd), prompts=str(prompts), run_dir=str(tmp_path / "r"), batch=4,
                                 batch_per_device=4, duration_kimg=0.004, checkpoint_every=0)), resume="none",
          progress=False)
    assert list((tmp_path / "r" / "tensorboard").rglob("events.out.tfevents.*"))
