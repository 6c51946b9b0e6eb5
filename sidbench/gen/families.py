"""The model families sidbench distils: how each encodes text, calls its network and sizes its latents.

One ``Family`` per diffusers pipeline class, recognised from ``model_index.json``'s ``_class_name``. A family's
``encode`` returns a ``Conditioning``: the network's text inputs as a dict of tensors batched on dim 0, which
knows how to call its network (``cond.call(net, x, t)``). Losses, samplers and the trainer pass Conditionings
around and never branch on the family; the noising rule and the time grid are ``sidbench.gen.diffusion``'s.

Latents are NCHW for every family; FLUX's 2x2 packing into tokens happens inside its call and is undone on the
way out, so the maths (``x_t = a x0 + s eps``, x0 estimates) sees the same tensors for all.

What each family feeds its network follows the diffusers pipeline of that class (0.42):
- SD1.5/2.1 (``StableDiffusionPipeline``): the CLIP text encoder's last hidden state, 77 tokens.
- SDXL (``StableDiffusionXLPipeline``): both CLIP encoders' penultimate hidden states side by side, the pooled
  (projected) output of the second, and ``add_time_ids`` = (original size, crop top-left, target size); with
  ``force_zeros_for_empty_prompt`` (model_index.json) the empty prompt is all zeros.
- SD3/SD3.5 (``StableDiffusion3Pipeline``): CLIP-L and CLIP-G penultimate states, zero-padded to T5's width and
  followed by T5's tokens (256); pooled = both CLIP projections; T5 absent -> zeros, as the pipeline does.
- FLUX.1 (``FluxPipeline``): CLIP-L's pooled output, T5's tokens (512), the embedded guidance scale (a network
  input, not CFG) when the transformer has a guidance embedding; time passed as sigma.
- SANA (``SanaPipeline``): Gemma's last hidden state and attention mask (300 tokens), real prompts after the
  pipeline's own "complex human instruction", the empty prompt without it; time scaled by ``timestep_scale``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from sidbench.core.errors import SidbenchError


@dataclass(frozen=True)
class Conditioning:
    """A batch of one family's text conditioning: named tensors sharing dim 0."""

    family: "Family"
    tensors: dict

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def __getitem__(self, idx) -> "Conditioning":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)  # a row stays a batch of one
        return Conditioning(self.family, {k: v[idx] for k, v in self.tensors.items()})

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @staticmethod
    def cat(items) -> "Conditioning":
        items = list(items)
        keys = items[0].tensors.keys()
        return Conditioning(items[0].family, {k: torch.cat([c.tensors[k] for c in items]) for k in keys})

    def expand(self, batch: int) -> "Conditioning":
        """A batch of one repeated ``batch`` times (a view); a batch of that size as it is."""
        if len(self) == batch:
            return self
        if len(self) != 1:
            raise SidbenchError(f"cannot expand a conditioning of {len(self)} rows to {batch}")
        return Conditioning(self.family, {k: v.expand(batch, *v.shape[1:]) for k, v in self.tensors.items()})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Conditioning":
        """On ``device``; floating tensors in ``dtype`` (masks and ids keep theirs)."""
        return Conditioning(self.family, {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None)
                                          for k, v in self.tensors.items()})

    def with_embedded_guidance(self, scale: float | None) -> "Conditioning":
        """The same prompts with another embedded guidance input (FLUX.1-dev); unchanged for other families."""
        if scale is None or "guidance" not in self.tensors:
            return self
        g = self.tensors["guidance"]
        return Conditioning(self.family, {**self.tensors, "guidance": torch.full_like(g, float(scale))})

    def call(self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's native output at (x, t) under this conditioning, x's shape and dtype."""
        return self.family.call(net, x, t, self)


def as_conditioning(cond) -> Conditioning:
    """A Conditioning as it is; a bare tensor as SD's encoder hidden states (the toy worlds pass those)."""
    return cond if isinstance(cond, Conditioning) else Conditioning(SD, {"encoder_hidden_states": cond})


# --- text encoders, as the pipelines call them --------------------------------------------------------------

def _tokens(tokenizer, prompts, max_length: int, device, mask: bool = False):
    tok = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    ids = tok.input_ids.to(device)
    return (ids, tok.attention_mask.to(device)) if mask else ids


def _clip_limit(tokenizer, encoder) -> int:
    return min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))


def _clip_limits(base, *suffixes: str) -> list[tuple[str, object, int]]:
    """(encoder name, tokenizer, limit) of the CLIP text encoders ``text_encoder{suffix}``."""
    out = []
    for s in suffixes:
        enc = base.text_encoder if s == "" else base.components[f"text_encoder{s}"]
        tok = base.tokenizer if s == "" else base.components[f"tokenizer{s}"]
        out.append((f"text_encoder{s} ({type(enc).__name__})", tok, _clip_limit(tok, enc)))
    return out


def _token_counts(tokenizer, prompts: list[str]) -> list[int]:
    """How many tokens each prompt has before any cut."""
    return list(map(len, tokenizer(prompts, truncation=False, verbose=False).input_ids)) if prompts else []


def truncated_prompts(base, prompts) -> list[dict]:
    """How many of ``prompts`` each text encoder of the base cuts at its token limit (the pipelines warn; so do we):
    one ``{"encoder", "limit", "prompts", "of"}`` per encoder that cuts any."""
    prompts = list(prompts)
    out = []
    for name, tok, limit in base.family.token_limits(base):
        distinct = [p for p in dict.fromkeys(prompts) if p]
        lengths = dict(zip(distinct, _token_counts(tok, distinct)))
        cut = sum(1 for p in prompts if lengths.get(p, 0) > limit)
        if cut:
            out.append({"encoder": name, "limit": limit, "prompts": cut, "of": len(prompts)})
    return out


class TruncationCount:
    """The cuts of ``truncated_prompts``, counted prompt by prompt as they are encoded: a trainer drawing from
    millions of prompts pays one tokenisation per encoding instead of tokenising its whole list at start."""

    def __init__(self, base):
        self.limits = base.family.token_limits(base)  # (encoder name, tokenizer, limit) each
        self.encoded = 0
        self.cut = [0] * len(self.limits)

    def add(self, prompt: str) -> None:
        self.encoded += 1
        for k, (_, tok, limit) in enumerate(self.limits):
            self.cut[k] += _token_counts(tok, [prompt])[0] > limit

    def counts(self) -> list[int]:
        """[prompts encoded, then the prompts each encoder cut]: what processes sum."""
        return [self.encoded, *self.cut]

    def report(self, counts: list[float] | None = None) -> list[dict]:
        """``truncated_prompts``'s answer for ``counts`` (default: this process's): one dict per encoder that cut."""
        encoded, *cut = counts if counts is not None else self.counts()
        return [{"encoder": name, "limit": limit, "prompts": int(n), "of": int(encoded)}
                for (name, _, limit), n in zip(self.limits, cut) if n]


def truncation_warning(cuts: list[dict], of_what: str = "") -> str:
    """``of_what``: what the counts are "of" (e.g. " prompts encoded so far"); the prompt list's by default."""
    return "prompts longer than a text encoder's token limit are cut (it sees only their first tokens): " + "; ".join(
        f"{c['prompts']} of {c['of']}{of_what} by {c['encoder']} at {c['limit']} tokens" for c in cuts)


def _clip_penultimate(encoder, tokenizer, prompts, device):
    """(penultimate hidden state, the output's first field: pooled projection for *WithProjection models)."""
    out = encoder(_tokens(tokenizer, prompts, _clip_limit(tokenizer, encoder), device), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


class Family:
    """The rules of one model family. Subclasses set the class attributes and override what differs."""

    name = ""
    pipelines: tuple[str, ...] = ()
    net_name = "unet"                                     # the denoiser's subfolder
    text_components: tuple[str, ...] = ("text_encoder", "tokenizer")
    optional_components: tuple[str, ...] = ()             # may be [null, null] in model_index.json
    ddpm = True                                           # DDPM time (trained on DDPMScheduler's grid) or flow
    parametrisation = ""
    guidance = "CFG k on the network output; uncond = the empty prompt"
    default_t_init = 625

    def encode(self, base, prompts: list[str], height: int | None = None) -> Conditioning:
        raise NotImplementedError

    def token_limits(self, base) -> list[tuple[str, object, int]]:
        """(encoder name, tokenizer, the token count its prompts are cut to) for each text encoder ``encode`` uses."""
        return _clip_limits(base, "")

    def unconditional(self, base, height: int | None = None) -> Conditioning:
        """The conditioning CFG's unconditional branch and dropped prompts get."""
        return self.encode(base, [""], height)

    def call(self, net, x, t, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    # Latent geometry ---------------------------------------------------------------------------------------
    def vae_factor(self, base) -> int:
        if base.vae is None:
            return 1
        cfg = base.vae.config
        blocks = getattr(cfg, "block_out_channels", None) or getattr(cfg, "encoder_block_out_channels")
        return 2 ** (len(blocks) - 1)

    def latent_channels(self, base) -> int:
        return int(base.net.config.in_channels)

    def default_height(self, base) -> int:
        """The image size the model was trained at: the denoiser's sample size, or the VAE's."""
        size = getattr(base.net.config, "sample_size", None)
        if size is not None:
            return int(size) * self.vae_factor(base)
        if base.vae is not None and getattr(base.vae.config, "sample_size", None):
            return int(base.vae.config.sample_size)
        raise SidbenchError(f"{base.source}: no sample size in the denoiser's or the VAE's config; give --height")

    def latent_shape(self, base, height: int | None = None) -> tuple[int, int, int]:
        h = int(height or self.default_height(base))
        f = self.vae_factor(base)
        if h % f:
            raise SidbenchError(f"height {h} is not a multiple of the VAE's factor {f}")
        return (self.latent_channels(base), h // f, h // f)

    def image_seq_len(self, shape) -> int | None:
        """The image token count a dynamically shifted time grid depends on (FLUX); None otherwise."""
        return None

    def inference_sigmas(self, steps: int):
        """The sigmas the family's pipeline hands its Euler sampler (None: the scheduler's own spacing)."""
        return None


class StableDiffusion(Family):
    name = "sd"
    pipelines = ("StableDiffusionPipeline",)
    parametrisation = "DDPM, eps or v (scheduler config)"

    def encode(self, base, prompts, height=None):
        enc, tok = base.text_encoder, base.tokenizer
        with torch.no_grad():
            h = enc(_tokens(tok, prompts, _clip_limit(tok, enc), base.device))[0]
        return Conditioning(self, {"encoder_hidden_states": h})

    def call(self, net, x, t, cond):
        return net(x, t, encoder_hidden_states=cond.tensors["encoder_hidden_states"]).sample


class StableDiffusionXL(Family):
    name = "sdxl"
    pipelines = ("StableDiffusionXLPipeline",)
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    parametrisation = "DDPM, eps or v (scheduler config)"
    guidance = "CFG k; uncond = zeros (force_zeros_for_empty_prompt) or the empty prompt; add_time_ids"

    def token_limits(self, base):
        return _clip_limits(base, "", "_2")

    def time_ids(self, base, batch: int, height: int | None) -> torch.Tensor:
        h = int(height or self.default_height(base))
        ids = torch.tensor([[h, h, 0, 0, h, h]], dtype=torch.float32, device=base.device)  # original, crop, target
        return ids.expand(batch, 6)

    def encode(self, base, prompts, height=None):
        with torch.no_grad():
            h1, _ = _clip_penultimate(base.text_encoder, base.tokenizer, prompts, base.device)
            h2, pooled = _clip_penultimate(base.components["text_encoder_2"], base.components["tokenizer_2"],
                                           prompts, base.device)
        return Conditioning(self, {"encoder_hidden_states": torch.cat([h1, h2], dim=-1), "text_embeds": pooled,
                                   "time_ids": self.time_ids(base, len(prompts), height)})

    def unconditional(self, base, height=None):
        cond = self.encode(base, [""], height)
        if base.index.get("force_zeros_for_empty_prompt", True):  # the pipeline's default, as SDXL base sets it
            t = cond.tensors
            return Conditioning(self, {"encoder_hidden_states": torch.zeros_like(t["encoder_hidden_states"]),
                                       "text_embeds": torch.zeros_like(t["text_embeds"]), "time_ids": t["time_ids"]})
        return cond

    def call(self, net, x, t, cond):
        c = cond.tensors
        return net(x, t, encoder_hidden_states=c["encoder_hidden_states"],
                   added_cond_kwargs={"text_embeds": c["text_embeds"], "time_ids": c["time_ids"]}).sample


class StableDiffusion3(Family):
    name = "sd3"
    pipelines = ("StableDiffusion3Pipeline",)
    net_name = "transformer"
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")
    optional_components = ("text_encoder_3", "tokenizer_3")
    ddpm = False
    parametrisation = "rectified flow, velocity; time 1000 sigma; static shift"
    default_t_init = 999
    t5_tokens = 256  # the pipeline's max_sequence_length default

    def token_limits(self, base):
        t5 = base.components.get("text_encoder_3")
        return _clip_limits(base, "", "_2") + ([(f"text_encoder_3 ({type(t5).__name__})", base.components["tokenizer_3"],
                                                 self.t5_tokens)] if t5 is not None else [])

    def encode(self, base, prompts, height=None):
        c = base.components
        with torch.no_grad():
            h1, p1 = _clip_penultimate(base.text_encoder, base.tokenizer, prompts, base.device)
            h2, p2 = _clip_penultimate(c["text_encoder_2"], c["tokenizer_2"], prompts, base.device)
            width = int(base.net.config.joint_attention_dim)
            if c.get("text_encoder_3") is not None:
                t5 = c["text_encoder_3"](_tokens(c["tokenizer_3"], prompts, self.t5_tokens, base.device))[0]
            else:
                t5 = torch.zeros(len(prompts), self.t5_tokens, width, device=base.device, dtype=h1.dtype)
            clip = torch.cat([h1, h2], dim=-1)
            clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return Conditioning(self, {"encoder_hidden_states": torch.cat([clip, t5], dim=-2),
                                   "pooled_projections": torch.cat([p1, p2], dim=-1)})

    def call(self, net, x, t, cond):
        c = cond.tensors
        return net(hidden_states=x, timestep=t, encoder_hidden_states=c["encoder_hidden_states"],
                   pooled_projections=c["pooled_projections"]).sample


def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C]: FLUX's 2x2 patches as tokens, row-major."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    b = tokens.shape[0]
    return tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """[(H/2)(W/2), 3] position ids of the packed tokens: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class Flux(Family):
    name = "flux"
    pipelines = ("FluxPipeline",)
    net_name = "transformer"
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    ddpm = False
    parametrisation = "rectified flow, velocity; time sigma; dynamic shift by image size"
    guidance = "embedded guidance (a network input; default 3.5) and optional true CFG k"
    default_t_init = 999
    t5_tokens = 512

    def token_limits(self, base):
        t5 = base.components["text_encoder_2"]
        return _clip_limits(base, "") + [(f"text_encoder_2 ({type(t5).__name__})", base.components["tokenizer_2"],
                                          self.t5_tokens)]
    default_embedded_guidance = 3.5  # FluxPipeline's guidance_scale default

    def latent_channels(self, base):
        return int(base.vae.config.latent_channels) if base.vae is not None else int(base.net.config.in_channels) // 4

    def latent_shape(self, base, height=None):
        shape = super().latent_shape(base, height)
        if shape[1] % 2:
            raise SidbenchError(f"FLUX packs 2x2 latent patches: height {height} gives an odd latent side {shape[1]}")
        return shape

    def image_seq_len(self, shape):
        return (shape[-2] // 2) * (shape[-1] // 2)

    def inference_sigmas(self, steps):
        import numpy as np

        return np.linspace(1.0, 1 / steps, steps)  # FluxPipeline's default

    def encode(self, base, prompts, height=None, embedded_guidance: float | None = None):
        c = base.components
        with torch.no_grad():
            enc, tok = base.text_encoder, base.tokenizer
            pooled = enc(_tokens(tok, prompts, _clip_limit(tok, enc), base.device), output_hidden_states=False).pooler_output
            t5 = c["text_encoder_2"](_tokens(c["tokenizer_2"], prompts, self.t5_tokens, base.device))[0]
        tensors = {"encoder_hidden_states": t5, "pooled_projections": pooled}
        if getattr(base.net.config, "guidance_embeds", False):  # FLUX.1-dev; schnell has none
            g = self.default_embedded_guidance if embedded_guidance is None else float(embedded_guidance)
            tensors["guidance"] = torch.full((len(prompts),), g, device=base.device, dtype=torch.float32)
        return Conditioning(self, tensors)

    def call(self, net, x, t, cond):
        c = cond.tensors
        b, ch, h, w = x.shape
        h_txt = c["encoder_hidden_states"]
        out = net(hidden_states=pack_latents(x), timestep=t.to(x.dtype) / 1000, guidance=c.get("guidance"),
                  pooled_projections=c["pooled_projections"], encoder_hidden_states=h_txt,
                  txt_ids=torch.zeros(h_txt.shape[1], 3, device=x.device, dtype=x.dtype),
                  img_ids=image_ids(h, w, x.device, x.dtype)).sample
        return unpack_latents(out, ch, h, w)


def _sana_instruction() -> list[str] | None:
    """SanaPipeline's default "complex human instruction" (read from diffusers, not copied)."""
    from diffusers import SanaPipeline

    default = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    return list(default) if default else None


class Sana(Family):
    name = "sana"
    pipelines = ("SanaPipeline",)
    net_name = "transformer"
    ddpm = False
    parametrisation = "rectified flow, velocity; time 1000 sigma x timestep_scale; flow_shift"
    default_t_init = 999
    max_tokens = 300  # the pipeline's max_sequence_length default

    def token_limits(self, base):
        return [(f"text_encoder ({type(base.text_encoder).__name__})", base.tokenizer, self.max_tokens)]

    def _gemma(self, base, prompts, instruction: list[str] | None):
        tok = base.tokenizer
        tok.padding_side = "right"  # as the pipeline sets it
        prompts, length = list(prompts), self.max_tokens
        if instruction:
            chi = "\n".join(instruction)
            prompts = [chi + p for p in prompts]
            length = len(tok.encode(chi)) + self.max_tokens - 2
        ids, mask = _tokens(tok, prompts, length, base.device, mask=True)
        with torch.no_grad():
            h = base.text_encoder(ids, attention_mask=mask)[0]
        keep = [0, *range(-self.max_tokens + 1, 0)]  # BOS and the caption's tokens, without the instruction
        return Conditioning(self, {"encoder_hidden_states": h[:, keep], "encoder_attention_mask": mask[:, keep]})

    def encode(self, base, prompts, height=None):
        prompts = list(prompts)
        real = [i for i, p in enumerate(prompts) if p]
        empty = [i for i, p in enumerate(prompts) if not p]
        parts = {}  # real prompts after the instruction, "" without it (as the pipeline encodes negatives)
        if real:
            parts.update(zip(real, self._gemma(base, [prompts[i] for i in real], _sana_instruction())))
        if empty:
            parts.update(zip(empty, self._gemma(base, [""] * len(empty), None)))
        return Conditioning.cat(parts[i] for i in range(len(prompts)))

    def call(self, net, x, t, cond):
        c = cond.tensors
        scale = float(getattr(net.config, "timestep_scale", 1.0) or 1.0)
        out = net(hidden_states=x, encoder_hidden_states=c["encoder_hidden_states"],
                  encoder_attention_mask=c["encoder_attention_mask"], timestep=t * scale).sample
        if out.shape[1] == 2 * x.shape[1]:  # a learned-variance head: the pipeline keeps the first half
            out = out[:, : x.shape[1]]
        return out


SD, SDXL, SD3, FLUX, SANA = StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux(), Sana()
FAMILIES = (SD, SDXL, SD3, FLUX, SANA)
BY_PIPELINE = {p: f for f in FAMILIES for p in f.pipelines}


def family_of_index(index: dict, where: str) -> Family:
    """The family of a model_index.json, or an error naming the supported pipeline classes."""
    cls = index.get("_class_name")
    if cls not in BY_PIPELINE:
        raise SidbenchError(f"{where}: pipeline class {cls!r} is not supported; sidbench distils "
                            + ", ".join(f"{p} ({f.name})" for f in FAMILIES for p in f.pipelines))
    return BY_PIPELINE[cls]
