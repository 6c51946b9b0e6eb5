"""Every supported family through one interface, on tiny random models built in diffusers layout.

Known answers: the family's conditioning equals its diffusers pipeline's ``encode_prompt``; the teacher's N-step
sampler equals the pipeline's own loop on the same initial noise; the one-step generator and both SiD losses
equal literal restatements written in the family's own parametrisation, with the network called the way the
pipeline calls it; a resumed trainer is bitwise the uninterrupted one; accumulation rounds equal one round. Then
the CLI: distil, resume, export, generate and evaluate the export, for each family.
"""
import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from sidbench.core.errors import SidbenchError
from sidbench.gen import tiny
from sidbench.gen.families import pack_latents, unpack_latents
from sidbench.gen.models import load_base

FAMILIES = ("sdxl", "sd3", "flux", "sana")
PROMPTS = ["a red cube on a table", "two cats", ""]


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: getattr(tiny, f"build_tiny_{f}")(root / f) for f in FAMILIES}


@pytest.fixture(scope="session")
def bases(family_folders):
    return {f: load_base(p) for f, p in family_folders.items()}


def pipeline(folder, family):
    import diffusers

    cls = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline",
           "sana": "SanaPipeline"}[family]
    pipe = getattr(diffusers, cls).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def literal_call(family, base, net, x, t, prompt_embeds):
    """The network called as the family's diffusers pipeline calls it (written out here, not the adapter)."""
    c = prompt_embeds
    if family == "sdxl":
        return net(x, t, encoder_hidden_states=c["encoder_hidden_states"],
                   added_cond_kwargs={"text_embeds": c["text_embeds"], "time_ids": c["time_ids"]}).sample
    if family == "sd3":
        return net(hidden_states=x, timestep=t, encoder_hidden_states=c["encoder_hidden_states"],
                   pooled_projections=c["pooled_projections"]).sample
    if family == "flux":
        b, ch, h, w = x.shape
        ids = torch.zeros(h // 2, w // 2, 3)
        ids[..., 1] += torch.arange(h // 2)[:, None]
        ids[..., 2] += torch.arange(w // 2)[None, :]
        out = net(hidden_states=pack_latents(x), timestep=t / 1000, guidance=c["guidance"],
                  pooled_projections=c["pooled_projections"], encoder_hidden_states=c["encoder_hidden_states"],
                  txt_ids=torch.zeros(c["encoder_hidden_states"].shape[1], 3), img_ids=ids.reshape(-1, 3)).sample
        return unpack_latents(out, ch, h, w)
    if family == "sana":
        return net(hidden_states=x, encoder_hidden_states=c["encoder_hidden_states"],
                   encoder_attention_mask=c["encoder_attention_mask"], timestep=t).sample
    raise AssertionError(family)


# --- loading ------------------------------------------------------------------------------------------------

def test_the_family_comes_from_model_index_and_other_pipelines_are_refused_by_name(bases, family_folders, tmp_path):
    assert {f: b.family.name for f, b in bases.items()} == {f: f for f in FAMILIES}
    assert type(bases["flux"].net).__name__ == "FluxTransformer2DModel" and bases["flux"].image_seq_len == 16
    assert bases["sana"].prediction_type == "flow" and bases["sdxl"].prediction_type == "epsilon"
    odd = tmp_path / "kandinsky"
    odd.mkdir()
    (odd / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(SidbenchError, match="KandinskyV22Pipeline.*not supported.*StableDiffusionXLPipeline.*FluxPipeline"):
        load_base(odd)
    index = json.loads((family_folders["sd3"] / "model_index.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for part in family_folders["sd3"].iterdir():
        if part.is_dir():
            (bad / part.name).symlink_to(part)
    (bad / "model_index.json").write_text(json.dumps({**index, "transformer": ["evil_lib", "Net"]}))
    with pytest.raises(SidbenchError, match="transformer.*evil_lib"):
        load_base(bad)


# --- conditioning and the teacher's sampler against the pipelines --------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_conditioning_equals_the_pipelines_encode_prompt(family, bases, family_folders):
    base, pipe = bases[family], pipeline(family_folders[family], family)
    ours, unc = base.encode(PROMPTS[:2]).tensors, base.unconditional().tensors
    with torch.no_grad():
        if family == "sdxl":
            pe, ne, pp, np_ = pipe.encode_prompt(PROMPTS[:2], device="cpu", do_classifier_free_guidance=True)
            h = base.family.default_height(base)
            ids = pipe._get_add_time_ids((h, h), (0, 0), (h, h), pe.dtype,
                                         text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
            refs = [(ours["encoder_hidden_states"], pe), (ours["text_embeds"], pp), (ours["time_ids"], ids.expand(2, 6)),
                    (unc["encoder_hidden_states"], ne[:1]), (unc["text_embeds"], np_[:1])]
            assert float(ne.abs().max()) == 0  # force_zeros_for_empty_prompt
        elif family == "sd3":
            pe, ne, pp, np_ = pipe.encode_prompt(PROMPTS[:2], None, None, device="cpu", do_classifier_free_guidance=True)
            refs = [(ours["encoder_hidden_states"], pe), (ours["pooled_projections"], pp),
                    (unc["encoder_hidden_states"], ne[:1]), (unc["pooled_projections"], np_[:1])]
        elif family == "flux":
            pe, pp, _ = pipe.encode_prompt(PROMPTS[:2], None, device="cpu")
            refs = [(ours["encoder_hidden_states"], pe), (ours["pooled_projections"], pp),
                    (ours["guidance"], torch.full((2,), 3.5))]  # FluxPipeline's guidance_scale default
        else:
            import inspect

            chi = inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default
            pe, pm, ne, nm = pipe.encode_prompt(PROMPTS[:2], do_classifier_free_guidance=True, device="cpu",
                                                complex_human_instruction=chi)
            refs = [(ours["encoder_hidden_states"], pe), (ours["encoder_attention_mask"], pm),
                    (unc["encoder_hidden_states"], ne[:1]), (unc["encoder_attention_mask"], nm[:1])]
    for mine, theirs in refs:  # to float rounding: the pipeline encodes "" once per prompt, batched
        assert mine.shape == theirs.shape and torch.allclose(mine, theirs.to(mine.dtype), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_sampler_equals_the_pipelines_own_loop(family, bases, family_folders):
    from sidbench.gen.sampling import TeacherSampler, initial_noise

    base, pipe = bases[family], pipeline(family_folders[family], family)
    z = initial_noise([3, 4], base.latent_shape())
    k = 1.0 if family == "flux" else 2.5  # FLUX.1-dev: embedded guidance, no CFG pass
    sampler = TeacherSampler(base, steps=3, cfg=k, scheduler_name="euler" if family == "sdxl" else None)
    ours = sampler.latents(z.clone(), sampler.encode(PROMPTS[:2]))
    h = base.family.default_height(base)
    kw = {"use_resolution_binning": False} if family == "sana" else {}
    latents = pack_latents(z.clone()) if family == "flux" else z.clone()
    ref = pipe(prompt=PROMPTS[:2], num_inference_steps=3, guidance_scale=3.5 if family == "flux" else k, height=h,
               width=h, latents=latents, output_type="latent", **kw).images
    if family == "flux":
        ref = unpack_latents(ref, *z.shape[1:])
    assert float((ours - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


# --- the method's formulas in each family's own terms ---------------------------------------------------------

def _perturbed(net, seed, scale=0.02):
    out = copy.deepcopy(net).requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_generator_and_both_losses_equal_literal_restatements(family, bases):
    from distill.loss import SiDLoss
    from sidbench.gen.diffusion import schedule_of

    base = bases[family]
    d = schedule_of(base)
    G, fake, teacher = _perturbed(base.net, 1), _perturbed(base.net, 2), base.net
    B = 3
    shape = base.latent_shape()
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(B, *shape, generator=g), torch.randn(B, *shape, generator=g)
    t = torch.tensor([100, 500, 900])
    cond = base.encode(PROMPTS)                     # the third prompt is "" (a dropped one)
    uncond = base.unconditional()
    flow = base.prediction_type == "flow"
    t_init = 999 if flow else 625
    k1, k2, k4, alpha = 2.0, 1.5, 3.0, 1.2

    def row(i):  # sample i's conditioning as the pipeline would hold it
        return {k: v[i:i + 1] for k, v in cond.tensors.items()}

    def urow():
        return uncond.tensors

    def net_time(ti):
        return d.sigmas[ti].float().view(1) * 1000 if flow else torch.tensor([ti])

    def coef(ti):  # x_t = a x0 + s eps
        if flow:
            s = float(d.sigmas[ti])
            return 1 - s, s
        ab = float(base.alphas_cumprod[ti])
        return ab ** 0.5, (1 - ab) ** 0.5

    def x0_of(out, x, ti):
        a, s = coef(ti)
        return x - s * out if flow else (x - s * out) / a  # velocity: x_t - sigma v; eps: (x_t - s eps) / a

    def guided(net, x, ti, i, k):
        o_c = literal_call(family, base, net, x, net_time(ti), row(i))
        if k == 1:
            return o_c
        o_u = literal_call(family, base, net, x, net_time(ti), urow())
        return o_u + k * (o_c - o_u)

    with torch.no_grad():
        x_g = d.one_step(G, z, cond, t_init)
        lit_g = []
        for i in range(B):
            a, s = coef(t_init)
            x_in = s * z[i:i + 1]
            lit_g.append(x0_of(literal_call(family, base, G, x_in, net_time(t_init), row(i)), x_in, t_init))
        lit_g = torch.cat(lit_g)
        assert torch.allclose(x_g, lit_g, atol=1e-5, rtol=1e-5)

        loss = SiDLoss(d, k1=k1, k2=k2, k4=k4, alpha=alpha)
        lA, _, _ = loss.fake_score_loss(fake, x_g, t, eps, cond, uncond, global_batch=4)
        lB, _ = loss.generator_loss(fake, teacher, x_g, t, eps, cond, uncond, global_batch=4)
        litA = litB = 0.0
        for i in range(B):
            ti = int(t[i])
            a, s = coef(ti)
            x0, e = x_g[i:i + 1], eps[i:i + 1]
            x_t = a * x0 + s * e
            target = e - x0 if flow else e  # the velocity (eps - x0) or the noise
            litA += float(((guided(fake, x_t, ti, i, k1) - target) ** 2).sum())
            y_fake, y_real = x0_of(guided(fake, x_t, ti, i, k2), x_t, ti), x0_of(guided(teacher, x_t, ti, i, k4), x_t, ti)
            w = float((x0 - y_real).abs().mean())
            litB += float(((y_real - y_fake) * ((y_real - x0) - alpha * (y_real - y_fake))).sum()) / w
    assert float(lA) == pytest.approx(litA / 4, rel=1e-4)
    assert float(lB) == pytest.approx(litB / 4, rel=1e-4, abs=1e-7)


# --- the trainer: resume, accumulation ------------------------------------------------------------------------

def _cfg(folder, prompts, run, **kw):
    from distill.config import resolve

    values = dict(base=str(folder), prompts=str(prompts), run_dir=str(run), batch=4, batch_per_device=4,
                  lr_gen=1e-3, lr_fake=1e-3, trackers="none", duration_kimg=0.012)
    values.update(kw)
    return resolve(None, values)


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_is_bitwise_and_accumulation_rounds_equal_one_round(family, bases, family_folders, tmp_path):
    from distill.loop import Trainer

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\ntwo cats\na blue sphere\na green cone\n")
    preset = {"sdxl": "sdxl-start", "sd3": "sd3-start", "flux": "flux-start", "sana": "sana-start"}[family]
    cfg = _cfg(family_folders[family], prompts, tmp_path / "r", preset=preset, precision="fp32",
               grad_checkpointing=False, prompt_dropout=0.25)
    straight = Trainer(cfg, base=bases[family])
    one_round = straight.step()
    straight.step()
    first = Trainer(cfg, base=bases[family])
    first.step()
    state = copy.deepcopy(first.state())
    resumed = Trainer(cfg, base=bases[family])  # a cold prompt cache, as after a restart
    resumed.load_state(state)
    resumed.step()
    for a, b in ((straight.generator, resumed.generator), (straight.fake, resumed.fake), (straight.ema, resumed.ema)):
        assert torch.equal(_flat(a), _flat(b))
    assert not torch.equal(_flat(straight.generator), _flat(bases[family].net))  # it trained
    rounds = Trainer(_cfg(family_folders[family], prompts, tmp_path / "r1", preset=preset, precision="fp32",
                          grad_checkpointing=False, prompt_dropout=0.25, batch_per_device=1), base=bases[family])
    four_rounds = rounds.step()  # the same samples, one at a time: losses and summed gradients agree
    for key in ("loss_fake", "loss_gen", "grad_norm_fake", "grad_norm_gen", "fake_teacher_gap"):
        assert four_rounds[key] == pytest.approx(one_round[key], rel=1e-5, abs=1e-9), key


def test_embedded_guidance_reaches_every_flux_call_and_is_refused_elsewhere(bases, family_folders, tmp_path):
    from distill.loop import Trainer

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\n")
    tr = Trainer(_cfg(family_folders["flux"], prompts, tmp_path / "f", embedded_guidance=2.0, lsg=1.0), base=bases["flux"])
    assert float(tr.embed(["a red cube"]).tensors["guidance"][0]) == 2.0 and float(tr.embed.empty.tensors["guidance"][0]) == 2.0
    with pytest.raises(SidbenchError, match="embedded_guidance.*no guidance input"):
        Trainer(_cfg(family_folders["sd3"], prompts, tmp_path / "s", embedded_guidance=2.0), base=bases["sd3"])


# --- the CLI, end to end, per family --------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_cli_distill_resume_export_then_generate_and_eval_the_export(family, family_folders, tmp_path):
    from sidbench.cli.app import app

    folder, run = family_folders[family], tmp_path / "run"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\ntwo cats\na blue sphere\na green cone\n")
    preset = {"sdxl": "sdxl-start", "sd3": "sd3-start", "flux": "flux-start", "sana": "sana-start"}[family]
    args = ["distill", "--base", str(folder), "--prompts", str(prompts), "--run-dir", str(run), "--preset", preset,
            "--batch", "2", "--batch-per-device", "2", "--precision", "fp32", "--lr-gen", "1e-4", "--lr-fake", "1e-4",
            "--checkpoint-every", "1", "--trackers", "none", "-q"]
    r = CliRunner().invoke(app, [*args, "--duration-kimg", "0.002"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*args, "--duration-kimg", "0.004"])  # resumes from iteration 1
    assert r.exit_code == 0, r.output
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in log] == [1, 2] and "resumed from" in (run / "log.txt").read_text()
    saved = json.loads((run / "config.json").read_text())
    assert saved["t_init"] == 999 and saved["batch"] == 2  # the preset's, below the flags
    export = tmp_path / "g.safetensors"
    r = CliRunner().invoke(app, ["export", "--generator", str(run), "--out", str(export), "--format", "safetensors",
                                 "--base", str(folder)])
    assert r.exit_code == 0, r.output
    imgs = tmp_path / "imgs"
    r = CliRunner().invoke(app, ["generate", "--base", str(folder), "--generator", str(export), "--prompts",
                                 str(prompts), "--out", str(imgs), "--batch", "2", "-q"])
    assert r.exit_code == 0, r.output
    side = json.loads((imgs / "sidbench_generate.json").read_text())
    assert side["config"]["t_init"] == 999  # from the run, through the export's metadata
    assert side["networks"]["base"]["family"] == family and len(list(imgs.glob("*.png"))) == 4
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["eval", "--base", str(folder), "--generator", str(export), "--prompts", str(prompts),
                                 "--ref", str(imgs), "--extractor", "world-cnn", "--gen-batch", "2", "--no-cache",
                                 "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    fid = json.loads(out.read_text())["metrics"]["fid"]["value"]
    assert fid == pytest.approx(0.0, abs=1e-6)  # in memory = the written images, same seeds


def test_two_processes_equal_one_for_a_flow_transformer(family_folders, tmp_path):
    """torchrun with 2 processes = 1 process at the same global batch, on FLUX (packed latents, ids, guidance)."""
    from conftest import run_sidbench

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\ntwo cats\na blue sphere\na green cone\n")

    def args(run):
        return ["distill", "--base", family_folders["flux"], "--prompts", prompts, "--run-dir", run, "--preset",
                "flux-start", "--precision", "fp32", "--batch", "4", "--batch-per-device", "1", "--duration-kimg",
                "0.008", "--lr-gen", "1e-4", "--lr-fake", "1e-4", "--trackers", "none", "-q"]

    one = run_sidbench(args(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_sidbench(args(tmp_path / "two"), processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    l1, l2 = [[json.loads(x) for x in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in ("one", "two")]
    assert len(l1) == len(l2) == 2
    for a, b in zip(l1, l2):  # sums over samples in another order: equal to rounding
        assert b["loss_fake"] == pytest.approx(a["loss_fake"], rel=1e-5)
        assert b["loss_gen"] == pytest.approx(a["loss_gen"], rel=1e-4, abs=1e-6)
    s1, s2 = [torch.load(sorted((tmp_path / r / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
              for r in ("one", "two")]
    for net in ("generator", "fake"):  # Adam (beta1 = 0) may flip a near-zero gradient's step: up to 2 x lr
        diff = torch.cat([(s1[net][k] - s2[net][k]).abs().flatten() for k in s1[net]])
        assert float(diff.max()) <= 2.5e-4 and float((diff > 1e-6).float().mean()) < 1e-2
