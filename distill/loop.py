"""The SiD-LSG training loop: one iteration = a fake-score step (phase A) then a generator step (phase B).

Read top to bottom: setup (networks, optimisers, prompt embeddings), the two phases, the iteration
(EMA, counters), then the run (resume, logging, checkpoints, snapshots, proxy metrics).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import resource
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.distributed as dist

from distill import checkpoint
from distill.config import DistillConfig, trajectory_keys
from distill.ema import ema_beta, ema_update
from distill.stopping import StopRequested, StopWatch, clear_marker, parse_max_time, write_marker
from distill.loss import T_BANDS, SiDLoss
from distill.tracking import open_trackers
from distill.randomness import PHASE_FAKE, PHASE_GEN, draws, prompt_indices, step_noises, steps_this_iteration
from sidbench.core import distributed, logkeys
from sidbench.core.device import AUTO, describe_device, peak_rss_mb, reset_peak_rss, resolve_device
from sidbench.core.atomic import leftovers_note, remove_leftovers, write_json, write_text
from sidbench.core.outputs import WriteError, check_output, os_error_in, write_error
from sidbench.core.errors import SidbenchError
from sidbench.gen.models import BaseModel, export_generator, load_base
from sidbench.gen.diffusion import FlowMatching, parse_interval, schedule_of
from sidbench.gen.families import Conditioning, TruncationCount, truncation_warning

# Settings that define the training trajectory: a resume must not change them.


def _grads(params):
    """The gradients this process holds: whole tensors, or its shards under FSDP."""
    from distill.fsdp import local

    return [local(p.grad) for p in params if p.grad is not None]


def sanitize_grads(params) -> int:
    """Replace non-finite gradient values like the reference (NaN->0, +-inf->+-1e5); return how many there were
    (of this process's shards, under FSDP)."""
    count = 0
    for g in _grads(params):
        bad = ~torch.isfinite(g)
        if bad.any():
            count += int(bad.sum())
            torch.nan_to_num_(g, nan=0.0, posinf=1e5, neginf=-1e5)
    return count


def grad_sq(params) -> float:
    return sum(float(g.detach().double().pow(2).sum()) for g in _grads(params))


def grad_norm(params) -> float:
    return math.sqrt(grad_sq(params))


class EmbeddingCache:
    """Text conditionings of prompts seen (LRU, bounded by count and bytes, held in host memory), and the
    unconditional one ("" or the family's zeros) once, on the device.

    Each prompt is encoded on its own (one encoder call per new prompt), so its conditioning does not depend on
    which prompts happened to be new at the same time. Host memory, because a DiT's conditioning is large
    (FLUX.1: 512 x 4096 T5 tokens, 8 MiB in fp32): 4096 of them on the GPU would take 32 GiB. ``truncation``
    counts the encoded prompts each text encoder cut at its token limit."""

    def __init__(self, base: BaseModel, capacity: int = 4096, max_bytes: int = 2 * 2**30,
                 embedded_guidance: float | None = None):
        self.base, self.capacity, self.max_bytes, self.embedded_guidance = base, capacity, max_bytes, embedded_guidance
        self.cache: OrderedDict[str, Conditioning] = OrderedDict()
        self.bytes = 0
        self.truncation = TruncationCount(base)
        self.empty = base.unconditional().with_embedded_guidance(embedded_guidance)
        self._empty_host = self.empty.to("cpu")  # so a batch is put together on the host and moved once

    @staticmethod
    def nbytes(cond: Conditioning) -> int:
        return sum(v.numel() * v.element_size() for v in cond.tensors.values())

    def __call__(self, prompts: list[str]) -> Conditioning:
        for p in dict.fromkeys(p for p in prompts if p not in self.cache and p != ""):
            # Alone, not batched with whatever else is new: a projection's bits depend on the batch, and a resumed
            # run (cold cache) or another process count must see the same conditioning.
            self.cache[p] = self.base.encode([p]).with_embedded_guidance(self.embedded_guidance).to("cpu")
            self.truncation.add(p)
            self.bytes += self.nbytes(self.cache[p])
        out = []
        for p in prompts:
            if p == "":
                out.append(self._empty_host)
            else:
                self.cache.move_to_end(p)
                out.append(self.cache[p])
        while self.cache and (len(self.cache) > self.capacity or self.bytes > self.max_bytes):
            self.bytes -= self.nbytes(self.cache.popitem(last=False)[1])
        return Conditioning.cat(out).to(self.base.device)  # one transfer a batch, not one a prompt


class Trainer:
    """Holds the three networks, both optimisers and the counters; ``step()`` is one SiD-LSG iteration.

    ``generator`` and ``fake`` default to copies of the teacher (the method's initialisation); other networks
    with the UNet call signature can be given (the analytic known-answer tests do).
    """

    def __init__(self, cfg: DistillConfig, *, base: BaseModel | None = None, generator: torch.nn.Module | None = None,
                 fake: torch.nn.Module | None = None):
        from sidbench.data.prompts import read_prompts

        self.cfg = cfg
        if cfg.recompute_teacher:  # before minutes of loading, not after
            _require_eval_checkpointing()
        self.device = run_device(cfg.device, base)  # config.json keeps what was asked ("auto"): a resume re-resolves
        distributed.init_if_launched(device=self.device)
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rounds = cfg.rounds(self.world)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        self.base = base or load_base(cfg.base, device=self.device)
        self.pure_fp16 = cfg.precision == "fp16-pure"
        if cfg.text_encoder_dtype == "bf16":
            self.base.cast_text_encoders(torch.bfloat16)
        self.teacher = self.base.net.requires_grad_(False).eval()
        if self.pure_fp16:  # the reference's fp16 mode: every network in fp16, no autocast, no loss scaling
            self.teacher = copy.deepcopy(self.teacher).half()
        self.generator = copy.deepcopy(generator if generator is not None else self.teacher).requires_grad_(True).train()
        self.fake = copy.deepcopy(fake if fake is not None else self.teacher).requires_grad_(True).train()
        self.ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        if cfg.grad_checkpointing:
            self.generator.enable_gradient_checkpointing()
            self.fake.enable_gradient_checkpointing()
        if cfg.recompute_teacher:  # same numbers, recomputed: phase B's graph runs through the teacher
            self.teacher.enable_gradient_checkpointing()
        self.fsdp = cfg.sharding == "fsdp" and self.world > 1
        if self.fsdp:
            from distill import fsdp

            self._skeleton = copy.deepcopy(self.generator).to("meta")  # the architecture, for full copies
            mesh = fsdp.device_mesh(self.device)
            for net in (self.generator, self.fake, self.ema) + ((self.teacher,) if cfg.teacher_sharding == "shard" else ()):
                fsdp.shard(net, mesh)
        self.opt_gen = self._adam(self.generator, cfg.lr_gen)
        self.opt_fake = self._adam(self.fake, cfg.lr_fake)
        self.prompts = read_prompts(cfg.prompts)
        if cfg.embedded_guidance is not None and "guidance" not in self.base.unconditional().tensors:
            raise SidbenchError(f"embedded_guidance {cfg.embedded_guidance}: {self.base.source} "
                                f"({type(self.base.net).__name__}) has no guidance input; use the CFG scales")
        self.embed = EmbeddingCache(self.base, embedded_guidance=cfg.embedded_guidance)
        self.diffusion = schedule_of(self.base)  # the family's maths: DDPM or rectified flow
        self.loss = SiDLoss(self.diffusion, k1=cfg.cfg_train_fake, k2=cfg.cfg_eval_fake, k4=cfg.cfg_eval_real,
                            alpha=cfg.alpha, w_min=cfg.w_min, interval1=parse_interval(cfg.cfg_train_fake_interval),
                            interval2=parse_interval(cfg.cfg_eval_fake_interval),
                            interval4=parse_interval(cfg.cfg_eval_real_interval), weighting=cfg.gen_weighting,
                            fake_text=cfg.fake_conditioning == "text")
        flow_only = [f"{k} {getattr(cfg, k)}" for k, plain in (("t_sampling", "uniform"), ("gen_weighting", "sid"))
                     if getattr(cfg, k) != plain]
        if flow_only and not isinstance(self.diffusion, FlowMatching):
            raise SidbenchError(f"{', '.join(flow_only)}: defined for flow-matching teachers (sigma); "
                                f"{self.base.source} is a DDPM model (prediction {self.base.prediction_type})")
        self._t_of_normal = None
        if cfg.t_sampling == "logit-normal":
            m, sd, fm = cfg.t_logit_mean, cfg.t_logit_std, self.diffusion
            self._t_of_normal = lambda n: fm.index_of(1 / (1 + math.exp(-(m + sd * n))))
        self.latent_shape = self.base.latent_shape()
        self.iteration, self.cur_nimg, self.nonfinite_streak = 0, 0, 0
        self.steps_now = 1  # K' of the current iteration (few-step generators)
        self.cuda_peak_mb = 0.0
        self.rss_peak_mb = 0.0  # the resident-set peak across the per-phase resets (they lower the kernel's own)
        self.proxy_tools: dict = {}  # proxy FID extractor and CLIP scorer, loaded at the first proxy
        dev_type = self.device.type
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)  # fp16-pure: no autocast
        self.autocast = lambda: torch.autocast(dev_type, dtype=amp_dtype, enabled=amp_dtype is not None)
        self.scaler = torch.amp.GradScaler(dev_type, enabled=cfg.precision == "fp16")

    @property
    def sharded(self) -> bool:
        return self.cfg.sharding == "zero1" and self.world > 1

    def _adam(self, net: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        """Adam; under ``sharding = zero1`` each process keeps only its share of the moments (ZeRO stage 1).

        Gradients are still summed over all processes first, so every update equals the unsharded one.
        """
        kw = dict(lr=lr, betas=(self.cfg.adam_beta1, self.cfg.adam_beta2), eps=self.cfg.adam_eps)
        if self.sharded:
            from torch.distributed.optim import ZeroRedundancyOptimizer

            return ZeroRedundancyOptimizer(net.parameters(), optimizer_class=torch.optim.Adam, **kw)
        return torch.optim.Adam(net.parameters(), **kw)

    # -- one phase ------------------------------------------------------------------------------------
    def _chunks(self):
        """Global sample indices of this process, one chunk per accumulation round."""
        per_round = self.cfg.batch_per_device * self.world
        for r in range(self.rounds):
            start = r * per_round + self.rank * self.cfg.batch_per_device
            yield list(range(start, start + self.cfg.batch_per_device))

    def _batch(self, phase: int, idx: list[int], dropout: float):
        c = self.cfg
        z, eps, t, drop = draws(c.seed, self.iteration, phase, idx, self.latent_shape, c.t_min, c.t_max, dropout,
                                t_of_normal=self._t_of_normal)
        texts = [self.prompts[j] for j in prompt_indices(c.seed, self.iteration, phase, c.batch, idx, len(self.prompts))]
        texts = ["" if d else p for p, d in zip(texts, drop)]
        dev = self.base.device
        self._noises = [n.to(dev) for n in step_noises(c.seed, self.iteration, phase, idx, self.latent_shape,
                                                        self.steps_now)]
        return z.to(dev), eps.to(dev), t.to(dev), self.embed(texts), torch.tensor(drop, dtype=torch.bool)

    def generate(self, z: torch.Tensor, cond) -> torch.Tensor:
        """The generator's output for this iteration's K' steps (one step: SiD-LSG's x_g)."""
        c = self.cfg
        return self.diffusion.few_step(self.generator, z, cond, c.t_init, self.steps_now, c.gen_steps, self._noises)

    def _sync(self, params, *scalars: float) -> list[float]:
        """Sum gradients (and scalars) over processes: every loss is already divided by the global batch.
        Under FSDP the backward has reduce-scattered the gradients already: only the scalars are summed."""
        if self.world == 1:
            return list(scalars)
        if not self.fsdp:
            for p in params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
        t = torch.tensor(scalars, dtype=torch.float64, device=distributed.collective_device())  # NCCL: on the GPU
        dist.all_reduce(t)
        return t.tolist()

    def _clean_grads(self, params) -> tuple[int, float]:
        """Replace non-finite gradient values, then (count, norm) over the whole network: under FSDP each process
        holds a shard, so the shards' counts and squared norms are summed."""
        count, sq = sanitize_grads(params), grad_sq(params)
        if self.fsdp:
            t = torch.tensor([float(count), sq], dtype=torch.float64, device=distributed.collective_device())
            dist.all_reduce(t)
            count, sq = int(t[0]), float(t[1])
        return count, math.sqrt(sq)

    def prompt_cuts(self) -> tuple[int, list[dict]]:
        """(prompt encodings, the cuts of each text encoder that cut any) of every process since this run started
        (collective). A prompt counts again when re-encoded (by another process, or after leaving the cache)."""
        counts = self._sync((), *map(float, self.embed.truncation.counts()))
        return int(counts[0]), self.embed.truncation.report(counts)

    def static_bytes(self) -> int:
        """This process's share of the trained state at its most: both trained networks' weights and Adam moments,
        one network's gradients (each phase frees its own after its step) and the EMA (what FSDP divides by the
        process count and DDP does not)."""
        from distill.fsdp import local_bytes, optimizer_tensors

        nets = (self.generator, self.fake, self.ema)
        weights = sum(local_bytes(n.parameters()) for n in nets)
        grads = max(local_bytes(n.parameters()) for n in nets[:2])  # a phase's gradients: its net's weights' shapes
        return weights + grads + sum(local_bytes(optimizer_tensors(o)) for o in (self.opt_gen, self.opt_fake))

    def plain_ema(self, everywhere: bool = True) -> torch.nn.Module | None:
        """The EMA generator as one plain network (collective under FSDP: every process must call it); under FSDP
        a fresh copy, on every process or (``everywhere`` False) on the main one only (None elsewhere)."""
        if not self.fsdp:
            return self.ema
        from distill.fsdp import full_copy

        plain = full_copy(self.ema, self._skeleton, everywhere=everywhere, device=self.base.device)
        return None if plain is None else plain.eval()

    def phase_fake(self) -> dict:
        c = self.cfg
        dropout = c.prompt_dropout if (c.cfg_train_fake != 1 or c.cfg_eval_fake != 1) else 0.0
        total, nan_samples, err_uncond, err_cond = 0.0, 0, [], []
        for idx in self._chunks():
            z, eps, t, cond, dropped = self._batch(PHASE_FAKE, idx, dropout)
            with torch.no_grad(), self.autocast():
                x_g = self.generate(z, cond)
            with self.autocast():
                loss, bad, per_sample = self.loss.fake_score_loss(self.fake, x_g, t, eps, cond, self.embed.empty,
                                                                  c.batch)
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
            nan_samples += int(bad.sum())
            # A dropped prompt's guided output is the unconditional branch alone, on G(z, ""): its error is the
            # fake score's unconditional error, the half of guidance that only dropped prompts train.
            per_elem = per_sample / z[0].numel()
            err_uncond += per_elem[dropped & ~bad].tolist()
            err_cond += per_elem[~dropped & ~bad].tolist()
        params = list(self.fake.parameters())
        sums = self._sync(params, total, float(nan_samples), sum(err_uncond), float(len(err_uncond)),
                          sum(err_cond), float(len(err_cond)))
        total, nan_samples = sums[0], sums[1]
        self.scaler.unscale_(self.opt_fake)  # after the sum: every process sees the same inf/NaN and skips alike
        nonfinite, norm = self._clean_grads(params)
        self.scaler.step(self.opt_fake)
        self.scaler.update()
        self.opt_fake.zero_grad(set_to_none=True)
        out = {"loss_fake": total, "nan_samples": int(nan_samples), "nonfinite_fake": nonfinite, "grad_norm_fake": norm,
               "fake_err_cond": sums[4] / sums[5] if sums[5] else None}
        out["fake_err_uncond"] = sums[2] / sums[3] if sums[3] else None
        return out

    def phase_gen(self) -> dict:
        c = self.cfg
        self.fake.requires_grad_(False)  # its weights are not updated here; gradients still flow through its input
        total, ws, gaps, ts, dropped = 0.0, [], [], [], 0
        try:
            for idx in self._chunks():
                z, eps, t, cond, _ = self._batch(PHASE_GEN, idx, 0.0)
                with self.autocast():
                    x_g = self.generate(z, cond)
                    loss, diag = self.loss.generator_loss(self.fake, self.teacher, x_g, t, eps, cond, self.embed.empty,
                                                          c.batch)
                self.scaler.scale(loss).backward()  # also when every sample was dropped: zero gradients, same on all ranks
                total += float(loss.detach())
                ws.append(diag["w"])
                gaps.append(diag["gap"])
                ts.append(diag["t"])
                dropped += int(diag["dropped"].sum())
        finally:
            self.fake.requires_grad_(True)
        params = list(self.generator.parameters())
        w, gap, t = torch.cat(ws), torch.cat(gaps), torch.cat(ts)
        bands = []
        for _, lo, hi in T_BANDS:
            m = (t >= lo) & (t <= hi)
            bands += [float(gap[m].sum()), float(m.sum())]
        sums = self._sync(params, total, float(dropped), float(gap.sum()), float(gap.numel()), *bands)
        total, dropped = sums[0], int(sums[1])
        self.scaler.unscale_(self.opt_gen)  # after the sum, as in phase A
        if self.pure_fp16:
            nonfinite = sanitize_grads(params)
            if sums[3] > 0:  # the reference clips generator gradients by value in fp16
                torch.nn.utils.clip_grad_value_(params, 1.0)
            norm = grad_norm(params)
        else:
            nonfinite, norm = self._clean_grads(params)
        self.scaler.step(self.opt_gen)
        self.scaler.update()
        self.opt_gen.zero_grad(set_to_none=True)
        out = {"loss_gen": total, "w_mean": float(w.mean()) if w.numel() else None,
               "w_min": float(w.min()) if w.numel() else None, "w_max": float(w.max()) if w.numel() else None,
               "fake_teacher_gap": sums[2] / sums[3] if sums[3] else None, "nan_dropped_gen": dropped,
               "nonfinite_gen": nonfinite, "grad_norm_gen": norm}
        for k, (name, _, _) in enumerate(T_BANDS):
            n = sums[5 + 2 * k]
            out[f"gap_{name}_t"] = sums[4 + 2 * k] / n if n else None
        return out

    # -- one iteration ----------------------------------------------------------------------------------
    def step(self) -> dict:
        self.steps_now = steps_this_iteration(self.cfg.seed, self.iteration, self.cfg.gen_steps)
        cuda = self.device.type == "cuda"
        peaks = {}
        for name, phase in (("fake", self.phase_fake), ("gen", self.phase_gen)):
            # Each phase's own peak: the CUDA allocator's, or on the CPU the resident set's (Linux), reset first.
            if cuda:
                self.cuda_peak_mb = max(self.cuda_peak_mb, torch.cuda.max_memory_allocated(self.device) / 2**20)
                torch.cuda.reset_peak_memory_stats(self.device)
            else:
                self.rss_peak_mb = max(self.rss_peak_mb, peak_rss_mb() or 0.0)
                rss_phase = reset_peak_rss()
            out = phase()
            stats = out if name == "fake" else {**stats, **out}
            if cuda:
                peaks[f"cuda_peak_mb_{name}"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            elif rss_phase and (rss := peak_rss_mb()) is not None:
                peaks[f"rss_peak_mb_{name}"] = rss
        stats.update(peaks)
        if cuda:
            self.cuda_peak_mb = max([self.cuda_peak_mb, *peaks.values()])  # the run's peak, across the resets
        else:
            self.rss_peak_mb = max([self.rss_peak_mb, *peaks.values()])
        if self.cfg.gen_steps > 1:
            stats["gen_steps_drawn"] = self.steps_now
        # The reference's ramp reads the image count before this iteration's increment (the first update copies G);
        # its fp16 mode trains without EMA (the EMA is the generator).
        beta = 0.0 if self.pure_fp16 else ema_beta(self.cfg.batch, self.cur_nimg, self.cfg.ema_mimg, self.cfg.ema_rampup)
        ema_update(self.ema, self.generator, beta)
        self.cur_nimg += self.cfg.batch
        self.iteration += 1
        if stats["nonfinite_fake"] or stats["nonfinite_gen"] or stats["nan_samples"] or stats["nan_dropped_gen"]:
            self.nonfinite_streak += 1
        else:
            self.nonfinite_streak = 0
        if self.nonfinite_streak >= self.cfg.max_nonfinite_steps:
            raise SidbenchError(f"{self.nonfinite_streak} consecutive iterations with non-finite gradients or outputs "
                                f"(last: {stats}); lower the learning rates or use fp32")
        return stats

    # -- state --------------------------------------------------------------------------------------------
    def meta(self) -> dict:
        return {"config": self.cfg.to_dict(), "iteration": self.iteration, "cur_nimg": self.cur_nimg,
                "nonfinite_streak": self.nonfinite_streak}

    def state(self) -> dict | None:
        """Everything a resume needs. Under ZeRO this is collective (every process calls it); rank 0 gets the dict."""
        if self.sharded:
            for opt in (self.opt_gen, self.opt_fake):
                opt.consolidate_state_dict(to=0)
            if self.rank != 0:
                return None
        return {"config": self.cfg.to_dict(), "iteration": self.iteration, "cur_nimg": self.cur_nimg,
                "nonfinite_streak": self.nonfinite_streak, "generator": self.generator.state_dict(),
                "ema": self.ema.state_dict(), "fake": self.fake.state_dict(), "opt_gen": self.opt_gen.state_dict(),
                "opt_fake": self.opt_fake.state_dict(), "scaler": self.scaler.state_dict()}

    def _check_trajectory(self, config: dict) -> None:
        # A key an older checkpoint lacks had its default then (e.g. no guidance interval).
        saved = {**DistillConfig().to_dict(), **config}
        changed = [k for k in trajectory_keys() if saved.get(k) != getattr(self.cfg, k)]
        if changed:
            raise SidbenchError("the checkpoint was made with other settings for " + ", ".join(
                f"{k} ({saved.get(k)!r} -> {getattr(self.cfg, k)!r})" for k in changed)
                + "; resume with the same settings or start a new run folder")

    def load_checkpoint(self, path: Path) -> None:
        """Continue from a checkpoint: a file (``ckpt-*.pt``) or, under sharding fsdp, a DCP folder written by
        any number of processes (``ckpt-*.dcp``)."""
        if Path(path).is_dir():
            from distill import fsdp

            if self.cfg.sharding != "fsdp":
                raise SidbenchError(f"{path} is a distributed (FSDP) checkpoint: resume it with --sharding fsdp")
            try:
                meta = fsdp.load(self, Path(path))  # checks the trajectory before it reads any weight
            except SidbenchError:
                raise
            except Exception as e:  # a folder cut short or damaged
                raise checkpoint.unreadable(path, e) from None
            self.iteration, self.cur_nimg = int(meta["iteration"]), int(meta["cur_nimg"])
            self.nonfinite_streak = int(meta["nonfinite_streak"])
            return
        if self.fsdp:
            raise SidbenchError(f"{path} was written without fsdp: resume it on 1 process (it then continues in the "
                                f"distributed format) or with the sharding it was written with")
        self.load_state(checkpoint.load(path))

    def load_state(self, state: dict) -> None:
        self._check_trajectory(state["config"])
        self.generator.load_state_dict(state["generator"])
        self.ema.load_state_dict(state["ema"])
        self.fake.load_state_dict(state["fake"])
        self.opt_gen.load_state_dict(state["opt_gen"])
        self.opt_fake.load_state_dict(state["opt_fake"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.cur_nimg = int(state["iteration"]), int(state["cur_nimg"])
        self.nonfinite_streak = int(state["nonfinite_streak"])


def _require_eval_checkpointing() -> None:
    """diffusers before 0.32 checkpoints a block only in training mode (``if self.training and ...``), so the
    frozen teacher, in eval mode, would silently keep its activations; refuse rather than not do what was asked."""
    from importlib.metadata import version

    from packaging.version import Version

    found = version("diffusers")
    if Version(found).release[:2] < (0, 32):  # a 0.32 dev build from before the change cannot be told apart
        raise SidbenchError(f"--recompute-teacher needs diffusers >= 0.32 (found {found}): older releases checkpoint "
                            "only networks in training mode, and the teacher is frozen in eval mode; upgrade diffusers "
                            "or drop the option")


def run_device(requested: str, base: BaseModel | None = None) -> torch.device:
    """The device a run trains on: ``requested`` resolved, or with ``auto`` the device of a base model given in
    memory (it is not moved); an explicit device that differs from such a base's is an error."""
    if base is None:
        return resolve_device(requested)
    have = torch.device(base.device)
    if requested != AUTO and resolve_device(requested) != have:
        raise SidbenchError(f"device {requested}: the base model given is on {have}; load it there "
                            f"(load_base(..., device={requested!r})) or leave device at auto")
    return have


def _memory(device: str = "cpu", rss_floor_mb: float = 0.0) -> dict:
    """Peak memory so far, in MiB: the process's resident set (CPU; at least ``rss_floor_mb``, the peak the
    per-phase resets have seen) and, training on CUDA, the allocator's peaks."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024
    out = {"rss_max_mb": max(rss_mb, rss_floor_mb, peak_rss_mb() or 0.0)}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["cuda_max_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["cuda_reserved_max_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return out


def format_duration(seconds: float) -> str:
    """12s, 3m 05s, 2h 03m 05s, 1d 02h 03m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {s // 3600 % 24:02d}h {s // 60 % 60:02d}m"


def tick_line(rec: dict, *, total_iters: int, elapsed: float, sec_per_tick: float) -> str:
    """One line per logged iteration (a "tick"), the reference's console line with this trainer's numbers:
    progress, speed, both losses, the fake-teacher gap, peak memory (GB) and any proxy metric, as "name value"
    pairs in fixed-width columns, so the lines of one run line up."""
    def num(v, spec):
        return "n/a" if v is None else format(v, spec)

    gb = lambda mb: f"{mb / 1024:.2f}GB"
    width = len(str(total_iters))
    fields = [("iter", f"{rec[logkeys.ITERATION]}/{total_iters}", 2 * width + 1),
              ("kimg", f"{rec[logkeys.KIMG]:.3f}", 9), ("time", format_duration(elapsed), 9),
              ("sec/tick", f"{sec_per_tick:.2f}", 6), ("sec/kimg", num(rec.get("sec_per_kimg"), ".2f"), 7),
              ("loss_fake", num(rec.get("loss_fake"), ".4g"), 10), ("loss_gen", num(rec.get("loss_gen"), ".4g"), 10),
              ("gap", num(rec.get("fake_teacher_gap"), ".4g"), 10), ("cpumem", gb(rec["rss_max_mb"]), 7)]
    if "cuda_max_mb" in rec:
        fields += [("gpumem", gb(rec["cuda_max_mb"]), 7), ("reserved", gb(rec["cuda_reserved_max_mb"]), 7)]
    bad = sum(int(rec.get(k) or 0) for k in ("nonfinite_fake", "nonfinite_gen", "nan_samples", "nan_dropped_gen"))
    if bad:
        fields.append(("nonfinite", str(bad), 0))
    for k, v in rec.items():
        if k.startswith("proxy_") and k != logkeys.PROXY_N and isinstance(v, (int, float)) and not isinstance(v, bool):
            fields.append((k, f"{v:.4g}", 0))
    return " ".join(f"{name} {value:<{w}}" for name, value, w in fields).rstrip()


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def append_line(path: Path, text: str) -> None:
    """Append one line to a log (a full disk is a ``WriteError`` naming the log, not a traceback)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise write_error(path, e) from None


class RunLog:
    """The run's human-readable log: every line is appended to ``run_dir/log.txt`` (opened per line, so a killed
    run keeps what it wrote, and a resumed one continues the file) and, with ``echo``, printed to ``stream``
    (stderr); over a live tqdm bar through ``tqdm.write``, so a line never shares the bar's row. Not ``enabled``
    (processes other than the main one): nothing is written anywhere."""

    def __init__(self, path: Path, *, echo: bool = True, stream=None, enabled: bool = True):
        self.path, self.echo, self.enabled, self.bar = path, echo, enabled, None
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, text: str, *, echo: bool | None = None) -> None:
        if not self.enabled:
            return
        append_line(self.path, text)
        if self.echo if echo is None else echo:
            if self.bar is not None and not self.bar.disable:
                self.bar.write(text, file=self.stream)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


def train(cfg: DistillConfig, *, resume: str | None = "auto", progress: bool = True, verbose: bool = True,
          base: BaseModel | None = None, on_log=None, proxy_fn=None, max_time: str | None = None) -> Trainer:
    """Run (or continue) a distillation until ``duration_kimg``; everything lands in ``cfg.run_dir``.

    Every ``log_every`` iterations (a tick) the main process appends a JSON record to ``log.jsonl`` and a
    readable line to ``log.txt`` (with the session start, the resume point and skipped trackers); ``verbose``
    also prints those lines to stderr. ``progress``: a tqdm bar as well, only when stderr is a terminal (a batch
    scheduler's log gets plain lines, no carriage returns).
    ``proxy_fn(trainer) -> dict`` replaces the default proxy evaluation (every ``proxy_every`` iterations).
    SIGTERM, SIGINT or ``max_time`` (HH:MM, counted from this call) end the iteration in flight, write a
    checkpoint and ``stopped.json`` and raise ``StopRequested`` (see ``distill.stopping``) on every process once
    the checkpoint is written.
    Prompts a text encoder cuts are counted as they are encoded: a warning in ``log.txt`` when the first is seen,
    the counts in every ``log.jsonl`` record (``prompts_encoded``, ``prompts_cut`` per encoder).
    """
    from datetime import datetime

    from tqdm import tqdm

    t_start = time.time()
    watch = StopWatch(parse_max_time(max_time), t_start, max_time or "")  # a bad --max-time fails before loading
    run = Path(cfg.run_dir)
    check_output(run, "--run-dir", folder=True)  # before minutes of loading, not after
    trainer = Trainer(cfg, base=base)
    main = trainer.rank == 0
    # A refused resume raises here, before anything is written; an unreadable newest checkpoint falls back
    ck, fallback_notes = checkpoint.load_first_readable(checkpoint.find_resume(run, resume), trainer.load_checkpoint,
                                                        fallback=resume == "auto", main=main)
    if main:
        run.mkdir(parents=True, exist_ok=True)
        write_json(run / "config.json", cfg.to_dict())
        clear_marker(run)  # the stop of an earlier session is over
    leftovers = remove_leftovers(run, recursive=True) if main else 0  # e.g. a checkpoint whose write was killed
    total_iters = math.ceil(cfg.duration_kimg * 1000 / cfg.batch)
    stream = sys.stderr
    say = RunLog(run / "log.txt", echo=verbose, stream=stream, enabled=main)
    device = describe_device(trainer.device)
    say(f"start {datetime.now().astimezone().isoformat(timespec='seconds')}: {run} on {device['device']} "
        f"({device['device_name']}{', asked: ' + cfg.device if cfg.device != device['device'] else ''}), "
        f"iteration {trainer.iteration} of {total_iters} ({cfg.duration_kimg:g} kimg), "
        f"a line every {cfg.log_every} iteration(s){leftovers_note(leftovers)}")
    for note in fallback_notes:
        say(note)
    if ck is not None:
        say(f"resumed from {ck} (iteration {trainer.iteration}, {trainer.cur_nimg / 1000:g} kimg)")
    try:
        tracker = open_trackers(cfg, run) if main else None
        watch.__enter__()
        for note in tracker.notes() if tracker is not None else []:
            say(note)
        bar = tqdm(total=total_iters, initial=trainer.iteration, desc="distill", unit="it", file=stream,
                   disable=not (progress and main and _is_tty(stream)))
        say.bar = bar
        log_path = run / "log.jsonl"
        t_last, n_last = time.time(), trainer.cur_nimg
        warned_cuts = False  # prompts cut by a text encoder: warned about once, counted in every record
        while trainer.iteration < total_iters:
            t_iter = time.time()
            stats = trainer.step()
            bar.update(1)
            it = trainer.iteration
            now = time.time()
            proxy = {}
            if cfg.proxy_every and it % cfg.proxy_every == 0:
                proxy = (proxy_fn or proxy_metrics)(trainer)  # collective: every process generates its share
            tick = it % cfg.log_every == 0 or it == total_iters or bool(cfg.proxy_every and it % cfg.proxy_every == 0)
            if tick:
                encoded, cuts = trainer.prompt_cuts()  # collective: every process's encodings
            if main and tick:
                if cuts and not warned_cuts:
                    say("warning: " + truncation_warning(cuts, " prompts encoded so far"))
                    warned_cuts = True
                dt, dn = now - t_last, trainer.cur_nimg - n_last
                t_last, n_last = time.time(), trainer.cur_nimg  # after the proxy: images/s counts training only
                line = {logkeys.ITERATION: it, logkeys.KIMG: trainer.cur_nimg / 1000, **stats,
                        "images_per_s": dn / dt if dt > 0 else None, "sec_per_kimg": dt / (dn / 1000) if dn else None,
                        **_memory(str(trainer.device), trainer.rss_peak_mb), "static_mb": trainer.static_bytes() / 2**20,
                        "prompts_encoded": encoded, "prompts_cut": {c["encoder"]: c["prompts"] for c in cuts},
                        "time": now, **device, **proxy}
                if "cuda_max_mb" in line:  # the allocator's peak is reset per phase: the run's own maximum
                    line["cuda_max_mb"] = max(line["cuda_max_mb"], trainer.cuda_peak_mb)
                append_line(log_path, json.dumps(line))
                say(tick_line(line, total_iters=total_iters, elapsed=now - t_start, sec_per_tick=dt))
                if tracker is not None:
                    tracker.log(line, step=it)
                if on_log:
                    on_log(line)
                gap = stats["fake_teacher_gap"]
                bar.set_postfix(loss_fake=f"{stats['loss_fake']:.3g}", loss_gen=f"{stats['loss_gen']:.3g}",
                                gap="n/a" if gap is None else f"{gap:.3g}")
            if cfg.grid_every and it % cfg.grid_every == 0:
                ema = trainer.plain_ema(everywhere=False)  # collective under FSDP; the main process draws
                for n in range(1, cfg.gen_steps + 1) if main else ():  # a few-step generator: a grid per step count
                    name = f"grid-{it:08d}.png" if cfg.gen_steps == 1 else f"grid-{it:08d}-{n}step.png"
                    sample_grid(trainer, run / "grids" / name, steps=n, ema=ema)
                del ema  # under FSDP a full copy: not kept
            if cfg.snapshot_every and it % cfg.snapshot_every == 0:
                snapshot(trainer, run, main)
            saved = bool(cfg.checkpoint_every and it % cfg.checkpoint_every == 0)
            if saved:
                _save(trainer, run, main, watch)
            watch.timed_iteration(time.time() - t_iter)
            code = watch.decide(trainer.static_bytes) if it < total_iters else 0
            if code:
                bar.close()
                say.bar = None
                if not saved:
                    _save(trainer, run, main, watch)
                stop = watch.stop_error(code, it)
                if main:
                    write_marker(run, stop, checkpoint.list_checkpoints(run)[-1])
                    if tracker is not None:
                        tracker.finish()  # W&B and TensorBoard show the run as ended, not crashed
                say(str(stop))
                # No process exits before the checkpoint is written: a launcher would kill the others mid-write
                distributed.barrier()
                raise stop
        bar.close()
        say.bar = None
        _save(trainer, run, main)
        snap = snapshot(trainer, run, main)  # collective under FSDP
        if main:
            if tracker is not None:
                tracker.finish()
            say(f"finished: iteration {trainer.iteration}, {trainer.cur_nimg / 1000:g} kimg in "
                f"{format_duration(time.time() - t_start)}; EMA snapshot {snap}")
    except StopRequested:
        raise
    except BaseException as e:  # the reason lands in log.txt too (the caller prints it), if the disk takes it
        with contextlib.suppress(WriteError):
            say(f"stopped at iteration {trainer.iteration}: {type(e).__name__}" + (f": {e}" if str(e) else ""),
                echo=False)
        raise
    finally:
        watch.__exit__()
    return trainer


def _save(trainer: Trainer, run: Path, main: bool, watch: StopWatch | None = None) -> None:
    started = time.time()
    _write_checkpoint(trainer, run, main)
    if watch is not None:
        watch.timed_save(time.time() - started)


def _write_checkpoint(trainer: Trainer, run: Path, main: bool) -> None:
    if trainer.cfg.sharding == "fsdp":  # every process writes its shards (DCP), on any process count
        from distill import fsdp

        folder = checkpoint.checkpoint_dir(run) / f"ckpt-{trainer.iteration:08d}.dcp"
        if main:
            folder.parent.mkdir(parents=True, exist_ok=True)
        fsdp.save(trainer, folder, trainer.meta())
        if main:
            checkpoint.prune(run, trainer.cfg.keep_checkpoints)
        return
    state = trainer.state()  # collective under ZeRO: every process takes part
    if main:
        checkpoint.save(run, trainer.iteration, state, keep=trainer.cfg.keep_checkpoints)


def snapshot(trainer: Trainer, run: Path, main: bool = True) -> Path:
    """Export the EMA generator as a diffusers network folder that `sidbench generate` reads directly (collective
    under FSDP: every process calls it, the main one writes)."""
    out = run / "snapshots" / f"ema-{trainer.iteration:08d}"
    ema = trainer.plain_ema(everywhere=False)  # collective under FSDP
    if not main:
        return out
    try:
        if not out.exists():
            export_generator(ema, out, "diffusers", made_by={
                "what": "EMA generator of a sidbench distillation run", "run_dir": str(run.resolve()),
                "iteration": trainer.iteration, "kimg": trainer.cur_nimg / 1000, "config": trainer.cfg.to_dict()})
        write_text(run / "snapshots" / "LATEST", out.name + "\n")
    except Exception as e:  # save_pretrained wraps a full disk in its own errors
        if (cause := os_error_in(e)) is None:
            raise
        raise write_error(out, cause) from None
    return out


def ema_sampler(trainer: Trainer, steps: int | None = None, ema: torch.nn.Module | None = None):
    """A sampler of (a copy of) the EMA generator as ``generate`` would build it: ``steps`` of its K (default K).
    ``ema``: a plain EMA already gathered (else gathered here: collective under FSDP)."""
    from sidbench.gen.sampling import OneStepSampler

    c = trainer.cfg
    ema = ema if ema is not None else trainer.plain_ema()
    net = copy.deepcopy(ema) if ema is trainer.ema else ema  # the sampler freezes and moves it: never the live EMA
    return OneStepSampler(trainer.base, generator=net, t_init=c.t_init,
                          embedded_guidance=c.embedded_guidance, steps=steps or c.gen_steps, grid=c.gen_steps)


def sample_grid(trainer: Trainer, path: Path, n: int = 16, steps: int | None = None,
                ema: torch.nn.Module | None = None) -> None:
    import numpy as np
    from PIL import Image

    from sidbench.core.atomic import atomic_path

    sampler = ema_sampler(trainer, steps, ema)
    prompts = [trainer.prompts[i % len(trainer.prompts)] for i in range(n)]
    images = sampler.sample(prompts, list(range(n)))
    side = int(math.ceil(math.sqrt(n)))
    h, w = images.shape[1:3]
    grid = np.zeros((side * h, side * w, 3), np.uint8)
    for k, im in enumerate(images):
        grid[(k // side) * h:(k // side + 1) * h, (k % side) * w:(k % side + 1) * w] = im
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def proxy_metrics(trainer: Trainer) -> dict:
    """FID (and CLIP score with ``proxy_clip``) of the EMA generator on a small fixed prompt subset, through the
    in-memory path: a training proxy, never a protocol number. The networks are loaded once per run."""
    from sidbench.eval.api import EvalConfig, evaluate, make_extractor
    from sidbench.gen.generate import GeneratedImages
    from sidbench.eval.metrics.clip_score import load_clip_scorer

    c = trainer.cfg
    if not c.proxy_ref:
        raise SidbenchError("proxy_every needs proxy_ref (reference images or statistics for the proxy FID)")
    ecfg = EvalConfig(clip=c.proxy_clip, clip_model=c.proxy_clip_model or None, clip_weights=c.proxy_clip_weights or None,
                      random_weights=c.proxy_random_weights, progress=False, device=str(trainer.device))
    tools = trainer.proxy_tools
    if "extractor" not in tools:
        tools["extractor"] = make_extractor(ecfg)
    if c.proxy_clip and "clip" not in tools:
        tools["clip"] = load_clip_scorer(ecfg.clip_variant, ecfg.clip_model, weights=ecfg.clip_weights,
                                         random_weights=ecfg.random_weights, seed=ecfg.weights_seed, device=ecfg.device)
    prompts = trainer.prompts[:c.proxy_prompts]
    out = {logkeys.PROXY_N: len(prompts)}
    ema = trainer.plain_ema()  # collective under FSDP, once for every step count
    for n in range(c.gen_steps, 0, -1):  # K steps under the plain keys (what generate makes); fewer beside them
        res = evaluate(GeneratedImages(ema_sampler(trainer, n, ema), prompts, batch_size=max(1, c.batch_per_device)),
                       c.proxy_ref, ecfg, extractor=tools["extractor"], clip_scorer=tools.get("clip"))
        tag = "" if n == c.gen_steps else f"_{n}step"
        out[logkeys.PROXY_FID + tag] = res["metrics"]["fid"]["value"]
        if c.proxy_clip:
            out[logkeys.PROXY_CLIP + tag] = res["metrics"]["clip"]["value"]
    return out
