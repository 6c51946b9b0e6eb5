"""Generation on tiny random diffusers models saved in diffusers layout: loading every generator format,
the restricted unpickler, per-image seeds, resume, in-memory = on-disk metrics, 2-process sharding."""
import copy
import json
import os
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core.errors import SidbenchError
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.gen.generate import GenerateConfig, GeneratedImages, build_sampler, generate
from sidbench.gen.models import load_base, load_generator_unet, load_sid_pickle
from sidbench.gen.sampling import OneStepSampler, initial_noise

from conftest import run_sidbench, write_images


@pytest.fixture(scope="session")
def generators(tiny_sd, tmp_path_factory):
    """The same perturbed UNet as a diffusers folder, a safetensors file and a SiD-LSG-style .pkl."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("gen")
    base = load_base(tiny_sd)
    g = copy.deepcopy(base.unet)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.01 * torch.randn_like(p))
    g.save_pretrained(d / "folder")
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(d / "g.safetensors"))
    with open(d / "g.pkl", "wb") as f:
        pickle.dump({"ema": g}, f)
    return d, g


def test_every_generator_format_loads_the_same_weights(tiny_sd, generators):
    d, g = generators
    base = load_base(tiny_sd)
    ref = g.state_dict()
    for path in (d / "folder", d / "g.safetensors", d / "g.pkl"):
        net = load_generator_unet(path, base)
        assert all(torch.equal(ref[k], v) for k, v in net.state_dict().items()), path


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"ema": Evil()}, f)
    with pytest.raises(SidbenchError, match="refusing to unpickle .*system"):
        load_sid_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()
    with open(tmp_path / "eval.pkl", "wb") as f:
        pickle.dump({"ema": 1}, f)
    with pytest.raises(SidbenchError, match="UNet2DConditionModel"):
        load_sid_pickle(tmp_path / "eval.pkl")


def test_one_step_latent_is_the_published_formula(tiny_sd, generators):
    _, g = generators
    base = load_base(tiny_sd)
    s = OneStepSampler(base, generator=copy.deepcopy(g))
    z = initial_noise([3, 4], (4, 8, 8))
    cond = torch.randn(2, 77, 32)
    abar = base.scheduler.alphas_cumprod[625].double()
    assert float(abar) == pytest.approx(0.137769, abs=1e-6)
    x_in = (1 - abar).sqrt().float() * z
    with torch.no_grad():
        eps = g(x_in, torch.tensor([625, 625]), encoder_hidden_states=cond).sample
    expected = (x_in - (1 - abar).sqrt().float() * eps) / abar.sqrt().float()   # = 2.5017 (z - eps)
    torch.testing.assert_close(s.latents(z, cond), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expected, 2.5017 * (z - eps) / 1.0, rtol=2e-4, atol=2e-4)


def test_image_i_comes_from_seed_i_whatever_the_batch(tiny_sd, generators, prompt_file):
    d, _ = generators
    sampler, _ = build_sampler(GenerateConfig(base=str(tiny_sd), prompts=str(prompt_file), generator=str(d / "g.pkl")))
    prompts = prompt_file.read_text().splitlines()
    noise = {b: torch.cat([initial_noise(list(range(k, min(8, k + b))), (4, 8, 8)) for k in range(0, 8, b)])
             for b in (1, 3, 8)}
    assert torch.equal(noise[1], noise[3]) and torch.equal(noise[1], noise[8])
    out = {}
    for b in (1, 3, 8):
        prod = GeneratedImages(sampler, prompts, batch_size=b)
        out[b] = np.stack([im for batch in prod.batches(range(8)) for im in batch.items])
    for b in (3, 8):
        assert np.abs(out[1].astype(int) - out[b].astype(int)).max() <= 1


def test_generate_resumes_and_redoes_broken_files(tiny_sd, generators, prompt_file, tmp_path):
    d, _ = generators
    cfg = GenerateConfig(base=str(tiny_sd), prompts=str(prompt_file), generator=str(d / "folder"), n=6, batch_size=4)
    whole = tmp_path / "whole"
    generate(cfg, whole, progress=False)
    part = tmp_path / "part"
    generate(GenerateConfig(**{**cfg.__dict__, "n": 3}), part, progress=False)   # interrupted after 3 images
    (part / "000001.png").write_bytes(b"\x89PNG broken")
    killed, racing = part / ".000004.png.k1ll3d_0.png", part / ".000005.png.n0w0n3r5.png"
    killed.write_bytes(b"\x89PNG half")
    os.utime(killed, (1e9, 1e9))  # left by a process that ran long ago
    racing.write_bytes(b"\x89PNG half")
    os.utime(racing, (4e9, 4e9))  # being written by a process started after this one: not touched
    side = generate(cfg, part, progress=False)
    assert side["this_run"] == {"status": "complete", "written": 4, "redone_broken": 1, "kept": 2, "overwrite": False,
                                "leftovers_removed": 1}
    assert not killed.exists() and racing.exists()
    racing.unlink()
    for i in range(6):
        assert (part / f"{i:06d}.png").read_bytes() == (whole / f"{i:06d}.png").read_bytes()
    meta = json.loads((part / "sidbench_generate.json").read_text())
    assert meta["networks"]["generator"]["sha256"] and meta["prompts"]["md5"] and meta["seeds"].startswith("image i")
    assert not [f for f in os.listdir(part) if f.startswith(".")]


def test_in_memory_metrics_equal_generate_then_eval(tiny_sd, generators, prompt_file, tmp_path, tiny):
    import open_clip

    from test_clip_score import TINY

    (tmp_path / "sidbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(tmp_path))
    d, _ = generators
    write_images(tmp_path / "ref", [np.asarray(im) for im in np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)])
    gcfg = GenerateConfig(base=str(tiny_sd), prompts=str(prompt_file), generator=str(d / "g.safetensors"), batch_size=3)
    generate(gcfg, tmp_path / "png", progress=False)
    ecfg = EvalConfig(kid=True, kid_subset_size=5, clip=True, pr=True, pr_k=2, prompts=str(prompt_file), clip_model="sidbench-tiny-clip",
                      random_weights=True, use_cache=False, progress=False)
    on_disk = evaluate(str(tmp_path / "png"), str(tmp_path / "ref"), ecfg, extractor=tiny)
    sampler, info = build_sampler(gcfg)
    prompts = prompt_file.read_text().splitlines()
    in_mem = evaluate(GeneratedImages(sampler, prompts, batch_size=5, info=info), str(tmp_path / "ref"), ecfg,
                      extractor=tiny)
    # Same images; the float32 features of batches of 5 and of the folder's batches round differently on some CPUs,
    # and 10 images give a rank-deficient covariance, so FID moved by 1.5e-8 relative on this project's machine
    # (2026-12-01). One level in one pixel of one image moved it by 1.4e-5 (measured), so rel 1e-6 still catches it.
    for key in ("fid",):
        assert in_mem["metrics"][key]["value"] == pytest.approx(on_disk["metrics"][key]["value"], rel=1e-6)
    assert in_mem["metrics"]["kid"]["mean"] == pytest.approx(on_disk["metrics"]["kid"]["mean"], rel=1e-6, abs=1e-12)
    assert in_mem["metrics"]["clip"]["value"] == pytest.approx(on_disk["metrics"]["clip"]["value"], abs=1e-7)
    assert in_mem["metrics"]["pr"]["precision"] == on_disk["metrics"]["pr"]["precision"]
    assert in_mem["metrics"]["pr"]["recall"] == on_disk["metrics"]["pr"]["recall"]
    assert in_mem["inputs"]["generated"]["kind"] == "generated in memory"


def test_cli_generate_export_and_teacher(tiny_sd, generators, prompt_file, tmp_path):
    d, g = generators
    r = CliRunner().invoke(app, ["export", "--generator", str(d / "g.pkl"), "--out", str(tmp_path / "exp")])
    assert r.exit_code == 0, r.output
    assert torch.equal(load_generator_unet(tmp_path / "exp").conv_in.weight, g.conv_in.weight)
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(prompt_file), "--n", "2",
                                 "--steps", "2", "--cfg", "3", "--out", str(tmp_path / "teacher"), "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path / "teacher")) == ["000000.png", "000001.png", "sidbench_generate.json"]
    meta = json.loads((tmp_path / "teacher" / "sidbench_generate.json").read_text())
    assert meta["networks"]["sampler"] == {"kind": "teacher", "steps": 2, "cfg": 3.0, "scheduler": "ddim"}
    r = CliRunner().invoke(app, ["generate", "--base", str(tmp_path / "nope"), "--prompts", str(prompt_file),
                                 "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and f"no such folder: {tmp_path / 'nope'}" in r.output


@pytest.mark.slow
def test_two_processes_equal_one_in_memory(tiny_sd, generators, prompt_file, tmp_path):
    d, _ = generators
    write_images(tmp_path / "ref", [im for im in np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)])
    six = tmp_path / "six.txt"  # (no --n: torchrun's own parser takes it for an abbreviation of its options)
    six.write_text("\n".join(prompt_file.read_text().splitlines()[:6]) + "\n")
    args = ["eval", "--base", str(tiny_sd), "--generator", str(d / "g.pkl"), "--prompts", str(six), "--ref", str(tmp_path / "ref"), "--random-weights", "--batch", "1", "--gen-batch", "2",
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    one = run_sidbench([*args, "--out", tmp_path / "one.json"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_sidbench([*args, "--out", tmp_path / "two.json"], processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())["metrics"]["fid"]["value"]
    b = json.loads((tmp_path / "two.json").read_text())["metrics"]["fid"]["value"]
    assert b == pytest.approx(a, rel=1e-9)
