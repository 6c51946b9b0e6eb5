"""`distill --plan`: the static memory per part in closed form for each sharding, activations measured on fake
tensors equal to the same measurement on real ones, and a plan that does not fit refused with one that does."""
import pytest
import torch

from distill.plan import GIB, Setup, measure_activations, static_parts


def test_static_parts_divide_as_each_sharding_says():
    P, n = 1_000_000, 4
    ddp = static_parts(P, 0, 0, 0, Setup(processes=n))
    trained = "generator + fake score: weights, one net's gradients"
    assert ddp["teacher"] == 4 * P and ddp[trained] == 12 * P  # the trainer frees each phase's gradients
    assert ddp["Adam moments, both nets"] == 16 * P and ddp["EMA"] == 4 * P
    z1 = static_parts(P, 0, 0, 0, Setup(processes=n, sharding="zero1"))
    assert z1["Adam moments, both nets"] == 16 * P / n and z1[trained] == 12 * P
    f = static_parts(P, 0, 0, 0, Setup(processes=n, sharding="fsdp"))
    assert f["teacher"] == 4 * P and all(f[k] == ddp[k] / n for k in f if k not in ("teacher",)
                                         and not k.startswith(("text", "VAE")))
    fs = static_parts(P, 0, 7, 5, Setup(processes=n, sharding="fsdp", teacher_sharding="shard"))
    assert fs["teacher"] == 4 * P / n and fs["text encoders (frozen, fp32)"] == 28 and fs["VAE (frozen, fp32)"] == 20
    half = static_parts(P, 0, 7, 5, Setup(text_encoder_dtype="bf16"))
    assert half["text encoders (frozen, bf16)"] == 14 and half["VAE (frozen, fp32)"] == 20  # replicated, 2 B each


def _tiny_unet_and_inputs(config):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(config)
    size = config["sample_size"]
    args = (torch.randn(1, config["in_channels"], size, size), torch.tensor([500]))
    return unet, (args, {"encoder_hidden_states": torch.randn(1, 77, config["cross_attention_dim"])})


@pytest.mark.parametrize("checkpointing,frozen", [(False, False), (True, False), (True, True)])
def test_fake_tensor_activations_equal_the_real_runs(tiny_sd, checkpointing, frozen):
    """The plan measures a real architecture's activations without running it: on fake tensors. On a network
    small enough to run, the two measurements are the same bytes."""
    from diffusers import UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    config = dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet")))
    real = measure_activations(*_tiny_unet_and_inputs(config), grad_checkpointing=checkpointing, frozen=frozen)
    with FakeTensorMode():
        fake = measure_activations(*_tiny_unet_and_inputs(config), grad_checkpointing=checkpointing, frozen=frozen)
    assert real > 0 and fake == real, (fake, real)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_count_equals_torchs_memtracker_after_every_op(tiny_sd, checkpointing):
    """Our O(1)-per-op storage count against torch's MemTracker on the same ops: run under it, activations +
    temporaries + gradients agree to the byte after every op; its peak is the most activations it held."""
    from diffusers import UNet2DConditionModel
    from torch.distributed._tools.mem_tracker import MemTracker

    from distill.memory_trace import ActivationPeak

    net, (args, kwargs) = _tiny_unet_and_inputs(dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet"))))
    if checkpointing:
        net.enable_gradient_checkpointing()
    net.train()
    theirs_log, ours_log = [], []

    class Logged(ActivationPeak):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = super().__torch_dispatch__(func, types, args, kwargs)
            snap = reference._curr_mem_snap.get(torch.device("cpu"), {})
            theirs_log.append(sum(v for k, v in snap.items() if getattr(k, "name", "") in ("ACT", "TEMP", "GRAD")))
            ours_log.append((self.act + self.grad, self.act))
            return out

    reference = MemTracker()
    reference.track_external(net)
    with reference, Logged(net) as ours:
        net(*args, **kwargs).sample.pow(2).mean().backward()
    assert len(ours_log) > 500 and [o for o, _ in ours_log] == theirs_log
    assert ours.peak == max(a for _, a in ours_log) and ours.grad == sum(4 * p.numel() for p in net.parameters())


def test_phase_b_activations_count_each_network_and_its_guidance_branch():
    from distill.plan import phase_b_activations

    s = Setup(batch_per_device=3)  # CFG in the fake score and the teacher: both evaluate 2 x 3 samples
    assert phase_b_activations(s, (10, 1), (5, 2), (7, 4)) == (10 + 3) + (5 + 12) + (7 + 24)
    s1 = Setup(batch_per_device=3, cfg_fake=False, cfg_teacher=False)
    assert phase_b_activations(s1, (10, 1), (5, 2), (7, 4)) == (10 + 3) + (5 + 6) + (7 + 12)


def test_a_frozen_network_keeps_less_than_a_trained_one(tiny_sd):
    """Phase B's fake score and teacher take no weight gradients: what their backward to x_t keeps is less (a
    linear layer's input is kept for its weight's gradient only), and under bf16 autocast nothing is cached."""
    from diffusers import UNet2DConditionModel

    config = dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet")))
    for precision in ("fp32", "bf16"):
        trained = measure_activations(*_tiny_unet_and_inputs(config), precision=precision)
        frozen = measure_activations(*_tiny_unet_and_inputs(config), precision=precision, frozen=True)
        assert 0 < frozen < trained, (precision, frozen, trained)


def test_plan_refuses_what_does_not_fit_and_names_what_would(monkeypatch, capsys):
    from typer.testing import CliRunner

    import distill.plan as P
    from sidbench.cli.app import app

    monkeypatch.setattr(P, "activation_bytes", lambda name, precision="fp32", grad_checkpointing=False, batch=1,
                        frozen=False:
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
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "stabilityai/stable-diffusion-xl-base-1.0"])
    assert r.exit_code == 0 and "SDXL UNet" in r.output, r.output


def test_plan_reads_a_folders_teacher_config_as_the_architecture_it_has(tiny_sd, tmp_path, monkeypatch):
    """A diffusers folder (configs, no weights needed) whose UNet has SD1.5's shapes is planned as SD1.5; the tiny
    SD's UNet matches no known architecture and is refused by name."""
    import json

    from typer.testing import CliRunner

    import distill.plan as P
    from sidbench.cli.app import app
    from sidbench.gen.architectures import build

    monkeypatch.setattr(P, "activation_bytes", lambda *a, **k: GIB)
    folder = tmp_path / "my-sd15"
    build("SD1.5 UNet").save_config(folder / "unet")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                         "unet": ["diffusers", "UNet2DConditionModel"]}))
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", str(folder)])
    assert r.exit_code == 0 and "memory plan: SD1.5 UNet" in r.output, r.output
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", str(folder)])
    assert r.exit_code != 0 and "known architecture" in r.output  # other shapes: not SD1.5 any more
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", str(tiny_sd)])
    assert r.exit_code != 0 and str(tiny_sd) in r.output


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
    assert not tr.teacher.is_gradient_checkpointing  # its own switch: --recompute-teacher


def test_bf16_text_encoders_give_the_fp32_conditioning_to_bf16_precision(tiny_sd, tmp_path):
    """--text-encoder-dtype bf16 holds the encoders in bf16 (half their memory); the conditioning they give is
    the fp32 one to bf16's precision (8 bits of mantissa), in the model's dtype."""
    from distill.config import resolve
    from distill.loop import Trainer

    (tmp_path / "p.txt").write_text("a cat\n")
    conds = []
    for dtype in ("fp32", "bf16"):
        tr = Trainer(resolve(overrides=dict(base=str(tiny_sd), prompts=str(tmp_path / "p.txt"), batch=1,
                                            batch_per_device=1, run_dir=str(tmp_path / dtype), text_encoder_dtype=dtype)))
        assert {p.dtype for m in tr.base.text_encoders for p in m.parameters()} == {getattr(torch, dtype.replace(
            "fp32", "float32").replace("bf16", "bfloat16"))}
        conds.append(tr.embed(["a cat"]).tensors["encoder_hidden_states"])
    full, half = conds
    assert half.dtype == full.dtype == torch.float32 and not torch.equal(half, full)
    assert torch.allclose(half, full, rtol=0.05, atol=0.05 * float(full.abs().max()))


def test_recompute_teacher_recomputes_the_same_numbers(tiny_sd, tmp_path):
    """Phase B back-propagates through the frozen teacher; checkpointing it only recomputes: one training step
    leaves the generator and the fake score bitwise equal to the step without it."""
    from distill.config import resolve
    from distill.loop import Trainer

    (tmp_path / "p.txt").write_text("a cat\na dog\n")
    nets = []
    for on in (False, True):
        tr = Trainer(resolve(overrides=dict(base=str(tiny_sd), prompts=str(tmp_path / "p.txt"), batch=2,
                                            batch_per_device=2, run_dir=str(tmp_path / f"r{on}"),
                                            recompute_teacher=on)))
        assert tr.teacher.is_gradient_checkpointing == on
        tr.step()
        nets.append([p.detach().clone() for p in (*tr.generator.parameters(), *tr.fake.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*nets))


def test_recompute_teacher_is_refused_on_a_diffusers_that_checkpoints_only_in_training(monkeypatch):
    """diffusers < 0.32 skips checkpointing in eval mode, where the teacher lives: the option is refused with the
    version found, not silently ignored; 0.32 and later (dev builds included) pass."""
    import importlib.metadata

    from distill.loop import _require_eval_checkpointing
    from sidbench.core.errors import SidbenchError

    for found, refused in (("0.31.0", True), ("0.30.3", True), ("0.32.0.dev0", False), ("0.42.1", False)):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, v=found: v)
        if refused:
            with pytest.raises(SidbenchError, match=rf"--recompute-teacher needs diffusers >= 0.32 \(found {found}\)"):
                _require_eval_checkpointing()
        else:
            _require_eval_checkpointing()
    from distill.config import resolve
    from distill.loop import Trainer

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.31.0")
    with pytest.raises(SidbenchError, match="needs diffusers >= 0.32"):  # before any loading: no such base exists
        Trainer(resolve(overrides=dict(base="/nonexistent/sd", prompts="/nonexistent/p.txt", recompute_teacher=True)))


PHASE_PEAKS = """
import json, sys
import torch
from distill.config import resolve
from distill.loop import Trainer, _memory
from sidbench.core.device import reset_peak_rss

if not reset_peak_rss():
    print(json.dumps(None)); sys.exit()
base, prompts, run = sys.argv[1:4]
tr = Trainer(resolve(overrides=dict(base=base, prompts=prompts, batch=1, batch_per_device=1, run_dir=run)))
tr.step()  # warm: the allocator's first-iteration growth is in neither measured phase
plain = tr.phase_fake

def heavier():
    block = torch.ones(64 * 2 ** 20)  # 256 MiB, every page touched
    del block
    return plain()

tr.phase_fake = heavier
out = tr.step()
print(json.dumps({**out, "run_max": _memory("cpu", tr.rss_peak_mb)["rss_max_mb"]}))
"""


def test_each_phase_logs_its_own_memory_peak_on_the_cpu(tiny_sd, tmp_path):
    """Known case: phase A touches 256 MiB more and frees it; its own peak shows them, phase B's (reset between
    the phases) does not, and the run's peak keeps them across the resets. In a fresh process: in a long test
    session the allocator can hand out already-resident memory (both phases then read the same resident set)."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "p.txt").write_text("a cat\n")
    proc = subprocess.run([sys.executable, "-c", PHASE_PEAKS, str(tiny_sd), str(tmp_path / "p.txt"),
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out is None:
        pytest.skip("this kernel does not let a process reset its resident-set peak")
    assert out["rss_peak_mb_fake"] - out["rss_peak_mb_gen"] > 200, out
    assert out["run_max"] >= out["rss_peak_mb_fake"]


def test_a_peak_reset_that_did_not_take_is_reported_as_failed_and_logs_no_phase_peak(tiny_sd, tmp_path, monkeypatch):
    """Known case: some sandboxes accept the clear_refs write and keep the old peak (CI did: both phases read the
    lifetime peak). The reset must read that back as failed, and the trainer then logs no per-phase peak rather
    than the lifetime one under a phase's name."""
    import distill.loop
    from distill.config import resolve
    from distill.loop import Trainer
    from sidbench.core import device

    try:
        open("/proc/self/clear_refs", "w").close()
        writable = True
    except OSError:
        writable = False  # the read-back half needs the write to succeed; the trainer half runs anyway
    if writable:
        monkeypatch.setattr(device, "_status_mb", lambda *k: {"VmHWM": 3000.0, "VmRSS": 1000.0})  # the peak stayed
        assert device.reset_peak_rss() is False
        monkeypatch.setattr(device, "_status_mb", lambda *k: {"VmHWM": 1001.0, "VmRSS": 1000.0})  # it took
        assert device.reset_peak_rss() is True
        monkeypatch.undo()

    monkeypatch.setattr(distill.loop, "reset_peak_rss", lambda: False)
    (tmp_path / "p.txt").write_text("a cat\n")
    tr = Trainer(resolve(overrides=dict(base=str(tiny_sd), prompts=str(tmp_path / "p.txt"), batch=1,
                                        batch_per_device=1, run_dir=str(tmp_path / "r"))))
    out = tr.step()
    assert not any(k.startswith("rss_peak_mb_") for k in out), out
    assert tr.rss_peak_mb > 0  # the lifetime peak is still kept for the run's memory column


def test_the_conditioning_cache_lives_in_host_memory_within_its_byte_bound(tiny_sd):
    """A DiT's conditioning is MiBs a prompt, so the cache is held off the device and bounded in bytes: lookups
    give the encoder's own bits on the model's device, the oldest entries go first, and one evicted and encoded
    again is the same."""
    from distill.loop import EmbeddingCache
    from sidbench.gen.models import load_base

    base = load_base(tiny_sd)
    one = EmbeddingCache.nbytes(base.encode(["a"]))
    cache = EmbeddingCache(base, max_bytes=int(2.5 * one))
    first = cache(["a cat", "a dog"])
    assert torch.equal(first.tensors["encoder_hidden_states"],
                       torch.cat([base.encode([p]).tensors["encoder_hidden_states"] for p in ("a cat", "a dog")]))
    assert all(v.device.type == "cpu" for c in cache.cache.values() for v in c.tensors.values())
    cache(["a bird"])
    assert list(cache.cache) == ["a dog", "a bird"] and cache.bytes == 2 * one <= cache.max_bytes
    again = cache(["a cat", ""])
    assert torch.equal(again[0].tensors["encoder_hidden_states"], first[0].tensors["encoder_hidden_states"])
    assert torch.equal(again[1].tensors["encoder_hidden_states"], cache.empty.tensors["encoder_hidden_states"])
    base.device = torch.device("meta")  # a model on another device: the batch goes there, the cache stays
    moved = cache(["a cat"])
    assert moved.tensors["encoder_hidden_states"].device.type == "meta"
    assert cache.cache["a cat"].tensors["encoder_hidden_states"].device.type == "cpu"


def test_fp16_pure_activations_are_measured_in_fp16(tiny_sd):
    """The reference's fp16 mode holds the network and its inputs in fp16 with no autocast: the plan measures it
    so (fake equal to real, as above), at about half the fp32 bytes (the odd fp32 temporaries aside)."""
    from diffusers import UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    from distill.plan import measure_activations

    config = dict(UNet2DConditionModel.load_config(str(tiny_sd / "unet")))
    full = measure_activations(*_tiny_unet_and_inputs(config), frozen=True)
    half = measure_activations(*_tiny_unet_and_inputs(config), precision="fp16-pure", frozen=True)
    with FakeTensorMode():
        fake = measure_activations(*_tiny_unet_and_inputs(config), precision="fp16-pure", frozen=True)
    assert fake == half and 0.4 < half / full < 0.6, (half, full)


def test_only_one_trained_network_holds_gradients_at_a_time(tiny_sd, tmp_path):
    """What the plan's static part counts: phase A's fake-score gradients are gone before phase B starts, and
    phase B's generator gradients before the next phase A (the reference keeps both until its next zero_grad)."""
    from distill.config import resolve
    from distill.loop import Trainer

    (tmp_path / "p.txt").write_text("a cat\n")
    tr = Trainer(resolve(overrides=dict(base=str(tiny_sd), prompts=str(tmp_path / "p.txt"), batch=1,
                                        batch_per_device=1, run_dir=str(tmp_path / "r"))))
    seen = []

    def held():
        return tuple(any(p.grad is not None for p in net.parameters()) for net in (tr.generator, tr.fake))

    for name in ("phase_fake", "phase_gen"):
        plain = getattr(tr, name)
        setattr(tr, name, lambda plain=plain: (seen.append(held()), plain())[1])
    for _ in range(2):
        tr.step()
    assert seen == [(False, False)] * 4 and held() == (False, False)
    n = sum(p.numel() * p.element_size() for p in tr.generator.parameters())
    assert tr.static_bytes() == 3 * n + n + 2 * 2 * n  # G, fake, EMA weights; one net's gradients; Adam, both
