"""Few-step SiD (gen_steps K > 1): the step schedule, the gradient path, a known answer on the analytic Gaussian
world (the uniform mixture of 1..K-step outputs trained to the data makes every step count match it), and the
tiny-SD seams (train, resume bitwise, export, generate with each step count)."""
import json

import pytest
import torch

from distill.config import resolve
from distill.loop import Trainer
from distill.randomness import steps_this_iteration
from sidbench.gen.diffusion import Diffusion, FlowMatching

from gmm_world import GMMWorld

MEANS = [[-1.0, 0.0], [1.0, 0.5]]
VARIANCES = [[0.09, 0.25], [0.16, 0.04]]


def test_step_times_follow_each_familys_reference_rule():
    world = GMMWorld(MEANS, VARIANCES)
    d = Diffusion.of(world.base)
    assert d.step_times(625, 1) == [625]
    assert d.step_times(625, 2) == [625, 312]           # floor(t_init (1 - i/K)), sid_sd_sampler
    assert d.step_times(625, 4) == [625, 468, 312, 156]
    fm = FlowMatching(shift=1.0)
    assert [round(float(fm.sigmas[t]), 6) for t in fm.step_times(999, 4)] == [1.0, 0.75, 0.5, 0.25]
    fm3 = FlowMatching(shift=3.0)  # SD3's shifted grid: the same sigmas, at other grid times
    assert [round(float(fm3.sigmas[t]), 2) for t in fm3.step_times(999, 4)] == [1.0, 0.75, 0.5, 0.25]


def test_few_step_is_one_step_at_k1_and_backpropagates_through_the_last_step_only():
    world = GMMWorld(MEANS, VARIANCES)
    d = Diffusion.of(world.base)
    g = world.few_step_generator([625, 312])
    z = torch.randn(6, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    n1 = torch.randn(6, 2, 1, 1, generator=torch.Generator().manual_seed(1))
    cond = world.base.text_encoder(torch.tensor([[0], [1], [0], [1], [0], [1]]))[0]
    assert torch.equal(d.few_step(g, z, cond, 625, 1, 2), d.one_step(g, z, cond, 625))
    out = d.few_step(g, z, cond, 625, 2, 2, [n1])
    out.sum().backward()
    assert g.alpha.grad[0].abs().sum() == 0 and g.beta.grad[0].abs().sum() == 0  # step 1 ran without gradients
    assert g.alpha.grad[1].abs().sum() > 0
    with torch.no_grad():  # the two steps by hand: D1 = x0(G(x_0, 625)), x_1 = noise(D1, n1, 312), D2 = x0(G(x_1))
        d1 = d.one_step(g, z, cond, 625)
        x1 = d.add_noise(d1, n1, torch.full((6,), 312))
        t = torch.full((6,), 312)
        d2 = d.x0(g(x1, t, encoder_hidden_states=cond).sample, x1, t)
    assert torch.allclose(out.detach(), d2, atol=1e-6)
    with pytest.raises(Exception, match="1..2"):
        d.few_step(g, z, cond, 625, 3, 2, [n1, n1])


def test_the_step_count_is_drawn_uniformly_per_iteration():
    draws = [steps_this_iteration(0, it, 3) for it in range(3000)]
    counts = [draws.count(k) for k in (1, 2, 3)]
    assert set(draws) == {1, 2, 3} and all(900 < c < 1100 for c in counts), counts
    assert all(steps_this_iteration(5, it, 1) == 1 for it in range(10))


def test_two_step_sid_matches_the_data_at_one_and_two_steps(tmp_path):
    """Known answer: K = 2, k = 1, exact teacher; the fake score is an equal-weight mixture of two Gaussians per
    prompt, the exact family for the generator's mixture of its 1- and 2-step outputs (one Gaussian would only
    pin the mixture's first two moments, and the steps could trade variance). The mixture matching the data forces
    each Gaussian component to it: both step counts reach each class's mean and variance, from the teacher's
    posterior means, which shrink the variance 10-100-fold."""
    world = GMMWorld(MEANS, VARIANCES)
    prompts = tmp_path / "classes.txt"
    prompts.write_text("\n".join(world.prompts()) + "\n")
    cfg = resolve(overrides=dict(base="gmm-world", prompts=str(prompts), run_dir=str(tmp_path / "run"), lsg=1.0,
                                 batch=256, batch_per_device=256, lr_gen=1e-2, lr_fake=3e-2, ema_mimg=0.0,
                                 trackers="none", gen_steps=2))
    times = Diffusion.of(world.base).step_times(cfg.t_init, 2)
    gen = world.few_step_generator(times)
    start = [gen.stats(k, world.C) for k in (1, 2)]
    tr = Trainer(cfg, base=world.base, generator=gen, fake=world.mixture_fake(gen))
    iters, acc = 900, {1: [], 2: []}
    drawn = []
    for it in range(iters):
        drawn.append(tr.step()["gen_steps_drawn"])
        if it >= iters * 2 // 3:
            for k in (1, 2):
                acc[k].append(tr.generator.stats(k, world.C))
    assert set(drawn) == {1, 2}
    for k in (1, 2):
        mean = torch.stack([m for m, _ in acc[k]]).mean(0)
        var = torch.stack([v for _, v in acc[k]]).mean(0)
        print(k, "steps: mean", mean.tolist(), "var", var.tolist(), "start var", start[k - 1][1].tolist())
        assert torch.allclose(mean, world.means, atol=0.1), (k, mean)
        assert torch.allclose(var.log(), world.variances.log(), atol=0.35), (k, var)
    for k in (1, 2):  # both step counts had to move: the teacher's posterior means shrink the variance
        assert (start[k - 1][1].log() - world.variances.log()).abs().max() > 0.7, (k, start[k - 1][1])


def _distill(sd, prompts, run, iters, *extra):
    from typer.testing import CliRunner

    from sidbench.cli.app import app

    args = ["distill", "--base", str(sd), "--prompts", str(prompts), "--run-dir", str(run), "--batch", "2",
            "--batch-per-device", "2", "--duration-kimg", str(iters * 2 / 1000), "--lr-gen", "1e-4", "--lr-fake",
            "1e-4", "--checkpoint-every", "1", "--gen-steps", "2", "--trackers", "none", "-q", *extra]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


def test_tiny_sd_two_step_run_resumes_bitwise_exports_and_generates_at_each_step_count(tiny_sd, train_prompts,
                                                                                        tmp_path):
    from typer.testing import CliRunner

    from sidbench.cli.app import app

    assert [steps_this_iteration(0, it, 2) for it in range(4)] == [1, 2, 2, 2]  # both step counts are trained
    _distill(tiny_sd, train_prompts, tmp_path / "a", 4)
    _distill(tiny_sd, train_prompts, tmp_path / "b", 2)
    _distill(tiny_sd, train_prompts, tmp_path / "b", 4, "--resume", "auto")
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [x["gen_steps_drawn"] for x in log] == [1, 2, 2, 2]
    sa, sb = (torch.load(sorted((tmp_path / r / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
              for r in ("a", "b"))
    assert sa["iteration"] == sb["iteration"] == 4 and sa["config"]["gen_steps"] == 2
    for net in ("generator", "ema", "fake"):
        assert all(torch.equal(sa[net][k], sb[net][k]) for k in sa[net]), net

    runner = CliRunner()
    r = runner.invoke(app, ["export", "--generator", str(tmp_path / "a"), "--out", str(tmp_path / "exp")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "exp" / "sidbench_export.json").read_text())["made_by"]["gen_steps"] == 2
    r = runner.invoke(app, ["export", "--generator", str(tmp_path / "a"), "--out", str(tmp_path / "e4"),
                            "--gen-steps", "4"])
    assert r.exit_code != 0 and "trained for 2 steps" in r.output

    def generate(out, *extra):
        res = runner.invoke(app, ["generate", "--base", str(tiny_sd), "--generator", str(tmp_path / "exp"),
                                  "--prompts", str(train_prompts), "--out", str(tmp_path / out), "-q", *extra])
        return res

    for out, extra in (("k2", ()), ("k1", ("--gen-steps", "1")), ("k2b", ("--gen-steps", "2"))):
        assert generate(out, *extra).exit_code == 0
    side = json.loads((tmp_path / "k2" / "sidbench_generate.json").read_text())
    assert side["config"]["gen_steps"] == 2 and side["networks"]["sampler"]["kind"] == "few-step"
    assert side["networks"]["sampler"]["step_times"] == [625, 312]
    from PIL import Image
    import numpy as np

    img = {k: np.asarray(Image.open(tmp_path / k / "000000.png")) for k in ("k1", "k2", "k2b")}
    assert np.array_equal(img["k2"], img["k2b"]) and not np.array_equal(img["k1"], img["k2"])
    bad = generate("k3", "--gen-steps", "3")
    assert bad.exit_code != 0 and "trained for 1..2 steps" in bad.output
    mixed = generate("k2", "--gen-steps", "1")  # the folder holds 2-step images: not mixed in silently
    assert mixed.exit_code != 0 and "gen_steps" in mixed.output


def test_tiny_sd3_two_step_run_resumes_bitwise_exports_and_generates_on_the_flow_grid(tmp_path, train_prompts):
    """The same on a rectified-flow DiT (tiny SD3): a resumed 2-step run equal to an uninterrupted one, steps at
    sigma 1 and 0.5 of its shifted grid, the step count carried through a safetensors export into generate."""
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from sidbench.cli.app import app
    from sidbench.gen.models import load_base
    from sidbench.gen.diffusion import schedule_of
    from sidbench.gen.tiny import build_tiny_sd3

    folder = build_tiny_sd3(tmp_path / "sd3")
    runner = CliRunner()

    def distill(run, iters, *extra):
        r = runner.invoke(app, ["distill", "--base", str(folder), "--prompts", str(train_prompts), "--run-dir",
                                str(tmp_path / run), "--preset", "sd3-start", "--gen-steps", "2", "--batch", "2",
                                "--batch-per-device", "2", "--precision", "fp32", "--duration-kimg",
                                str(iters * 2 / 1000), "--checkpoint-every", "1", "--trackers", "none", "-q", *extra])
        assert r.exit_code == 0, r.output

    distill("run", 3)
    distill("half", 2)  # interrupted after 2 of 3 iterations (1-, then 2-step: both trained), resumed
    distill("half", 3, "--resume", "auto")
    sa, sb = (torch.load(sorted((tmp_path / r / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
              for r in ("run", "half"))
    assert sa["iteration"] == sb["iteration"] == 3
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["gen_steps_drawn"] for x in log[:2]] == [1, 2]
    for net in ("generator", "ema", "fake"):
        assert all(torch.equal(sa[net][k], sb[net][k]) for k in sa[net]), net
    r = runner.invoke(app, ["export", "--generator", str(tmp_path / "run"), "--out", str(tmp_path / "g.safetensors"),
                            "--format", "safetensors", "--base", str(folder)])
    assert r.exit_code == 0, r.output
    fm = schedule_of(load_base(folder))
    times = fm.step_times(999, 2)
    assert [round(float(fm.sigmas[t]), 2) for t in times] == [1.0, 0.5]
    for n in (1, 2):
        r = runner.invoke(app, ["generate", "--base", str(folder), "--generator", str(tmp_path / "g.safetensors"),
                                "--prompts", str(train_prompts), "--out", str(tmp_path / f"k{n}"), "--gen-steps",
                                str(n), "--batch", "2", "-q"])
        assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "k2" / "sidbench_generate.json").read_text())
    assert side["networks"]["sampler"]["step_times"] == times and side["networks"]["sampler"]["step_grid"] == 2
    a, b = (np.asarray(Image.open(tmp_path / k / "000000.png")) for k in ("k1", "k2"))
    assert not np.array_equal(a, b)
