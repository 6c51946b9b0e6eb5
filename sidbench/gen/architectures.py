"""The real teachers' architectures at their real sizes, built on the meta device: no weights, no download.

Parameter counts, the static memory of SiD training (three networks: the frozen teacher, the trained fake score
and generator with gradients and Adam, the generator's EMA; plus the frozen text encoders) and forward FLOPs
(torch's FLOP counter on meta tensors) come from the same diffusers and transformers classes the trainer loads,
with each model's published config. A test checks every count against the figure published for the model: the
exact count where one is published, else the model card's rounded figure (`rounds_to`), so a config typo that
moves the size cannot pass; configs with no exact published count are also checked structurally against what
the installed packages know of the released checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

import torch


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str                      # DDPM UNet (eps / v) or rectified flow (velocity)
    build: Callable[[], torch.nn.Module]
    example_inputs: Callable[[int], tuple[tuple, dict]]   # batch -> (args, kwargs) for one forward at native size
    resolution: int                  # pixels of the native image size the inputs describe
    source: str                      # where the config and the published figure come from
    text_encoders: tuple[str, ...]   # keys of TEXT_ENCODERS, in the pipeline's order
    published_params: int | None = None   # exact count the release states (or its checkpoint holds); only if known
    published_rounded: str | None = None  # the model card's rounded figure ("2.5B"), checked with `rounds_to`
    #                                       on the checkpoint's tensors: parameters + persistent buffers


@dataclass(frozen=True)
class TextEncoder:
    name: str
    build: Callable[[], torch.nn.Module]
    source: str
    published_params: int | None = None
    published_rounded: str | None = None
    published_non_embedding: int | None = None   # parameters outside the input embedding table, where published


_UNITS = {"K": 10 ** 3, "M": 10 ** 6, "B": 10 ** 9}


def rounds_to(n: int, figure: str) -> bool:
    """Whether the count n is the rounded figure: n in the figure's unit (K, M, B), rounded half up to as many
    decimals as the figure shows, equals it ("2.5B" holds 2.45e9 <= n < 2.55e9; "123M" holds 122.5e6 <= n
    < 123.5e6)."""
    number, unit = Decimal(figure[:-1]), _UNITS[figure[-1]]
    return (Decimal(n) / unit).quantize(number, rounding=ROUND_HALF_UP) == number


def _meta(*shape):
    return torch.empty(*shape, device="meta")


# ---- teachers ------------------------------------------------------------------------------------------------

def _unet(**config):
    from diffusers import UNet2DConditionModel

    return lambda: UNet2DConditionModel(**config)


def _unet_inputs(latent: int, channels: int, tokens: int, dim: int, sdxl: bool = False):
    def make(b: int):
        kw = {"encoder_hidden_states": _meta(b, tokens, dim)}
        if sdxl:
            kw["added_cond_kwargs"] = {"text_embeds": _meta(b, 1280), "time_ids": _meta(b, 6)}
        return (_meta(b, channels, latent, latent), torch.full((b,), 500, device="meta")), kw
    return make


def _sd3(**config):
    """SD3Transformer2DModel at 1024 px with 16 latent channels, patch 2, joint (T5) dim 4096, pooled (CLIP-L +
    CLIP-G) dim 2048, head dim 64; the rest per model."""
    from diffusers import SD3Transformer2DModel

    base = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
                joint_attention_dim=4096, pooled_projection_dim=2048)
    return lambda: SD3Transformer2DModel(**base, **config)


def _sd3_inputs(b: int):
    # 1024 px: 128x128 latent of 16 channels; 77 CLIP tokens + 256 T5 tokens = 333 of 4096 (CLIP padded)
    return (), {"hidden_states": _meta(b, 16, 128, 128), "encoder_hidden_states": _meta(b, 333, 4096),
                "pooled_projections": _meta(b, 2048), "timestep": torch.full((b,), 500.0, device="meta")}


def _flux():
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                  attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                                  pooled_projection_dim=768, guidance_embeds=True)


def _flux_inputs(b: int):
    seq = 64 * 64  # 1024 px: 128x128 latent, 2x2 patches packed into 64 channels
    return (), {"hidden_states": _meta(b, seq, 64), "encoder_hidden_states": _meta(b, 512, 4096),
                "pooled_projections": _meta(b, 768), "timestep": torch.full((b,), 0.5, device="meta"),
                "img_ids": _meta(seq, 3), "txt_ids": _meta(512, 3), "guidance": torch.full((b,), 3.5, device="meta")}


def _sana(**config):
    """SanaTransformer2DModel: DC-AE f32c32 latents (32 channels, patch 1), Gemma-2 captions (2304), linear
    self-attention with 32-dim heads, GLUMBConv MLP ratio 2.5, no attention bias, no affine norms."""
    from diffusers import SanaTransformer2DModel

    base = dict(in_channels=32, out_channels=32, attention_head_dim=32, caption_channels=2304, mlp_ratio=2.5,
                attention_bias=False, patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6)
    return lambda: SanaTransformer2DModel(**base, **config)


def _sana_inputs(latent: int, tokens: int = 300):
    def make(b: int):   # the pipeline's 300 Gemma tokens (max_sequence_length) with their attention mask
        return (), {"hidden_states": _meta(b, 32, latent, latent), "encoder_hidden_states": _meta(b, tokens, 2304),
                    "encoder_attention_mask": torch.ones(b, tokens, dtype=torch.int64, device="meta"),
                    "timestep": torch.full((b,), 500.0, device="meta")}
    return make


_SD3_ENCODERS = ("CLIP-L (proj)", "OpenCLIP-bigG (proj)", "T5-XXL encoder")

ARCHITECTURES = {a.name: a for a in (
    Architecture("SD1.5 UNet", "DDPM, eps", _unet(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
                 _unet_inputs(64, 4, 77, 768), 512, "runwayml/stable-diffusion-v1-5 unet (859.5M)", ("CLIP-L",),
                 published_params=859_520_964),
    Architecture("SD2.1 UNet", "DDPM, v (768) / eps (base)",
                 _unet(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                       use_linear_projection=True), _unet_inputs(96, 4, 77, 1024), 768,
                 "stabilityai/stable-diffusion-2-1 unet (865.9M)", ("OpenCLIP-H (23 layers)",),
                 published_params=865_910_724),
    Architecture("SDXL UNet", "DDPM, eps",
                 _unet(sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                       transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                       cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                       addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
                 _unet_inputs(128, 4, 77, 2048, sdxl=True), 1024,
                 "stabilityai/stable-diffusion-xl-base-1.0 unet (2.6B)", ("CLIP-L", "OpenCLIP-bigG (proj)"),
                 published_params=2_567_463_684),
    Architecture("SD3-Medium MMDiT", "rectified flow",
                 _sd3(num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=192),
                 _sd3_inputs, 1024, "stabilityai/stable-diffusion-3-medium transformer (2B)", _SD3_ENCODERS,
                 published_params=2_028_328_000),
    Architecture("SD3.5-Medium MMDiT-X", "rectified flow",
                 _sd3(num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=384,
                      dual_attention_layers=tuple(range(13)), qk_norm="rms_norm"),
                 _sd3_inputs, 1024,
                 "stabilityai/stable-diffusion-3.5-medium transformer config (transcribed; no hub here): "
                 "24 layers x 24 heads x 64, dual attention in blocks 0-12, RMS qk-norm, pos_embed_max_size 384; "
                 "model card and release: 2.5 billion parameters, which counts the checkpoint's tensors: "
                 "2.243B parameters + the fixed 384^2 x 1536 sin-cos pos_embed (0.226B)",
                 _SD3_ENCODERS, published_rounded="2.5B"),
    Architecture("SD3.5-Large MMDiT", "rectified flow",
                 _sd3(num_layers=38, num_attention_heads=38, caption_projection_dim=2432, pos_embed_max_size=192,
                      qk_norm="rms_norm"),
                 _sd3_inputs, 1024,
                 "stabilityai/stable-diffusion-3.5-large transformer config (transcribed; no hub here): "
                 "38 layers x 38 heads x 64, RMS qk-norm, no dual attention, pos_embed_max_size 192; "
                 "model card and release: 8.1 billion parameters",
                 _SD3_ENCODERS, published_rounded="8.1B"),
    Architecture("FLUX.1-dev", "rectified flow (guidance-distilled)", _flux, _flux_inputs, 1024,
                 "black-forest-labs/FLUX.1-dev transformer (12B)", ("CLIP-L", "T5-XXL encoder"),
                 published_params=11_901_408_320),
    Architecture("SANA 600M", "rectified flow",
                 _sana(num_layers=28, num_attention_heads=36, num_cross_attention_heads=16,
                       cross_attention_head_dim=72, cross_attention_dim=1152, sample_size=16),
                 _sana_inputs(16), 512,
                 "Efficient-Large-Model/Sana_600M_512px_diffusers transformer config (transcribed; no hub here): "
                 "width 1152 (36 linear-attention heads x 32; cross-attention 16 x 72), 28 layers, latent 16; "
                 "SANA paper (arXiv 2410.10629) and model name: 0.6B",
                 ("Gemma-2-2B",), published_rounded="0.6B"),
    Architecture("SANA 1600M", "rectified flow",
                 _sana(num_layers=20, num_attention_heads=70, num_cross_attention_heads=20,
                       cross_attention_head_dim=112, cross_attention_dim=2240, sample_size=32),
                 _sana_inputs(32), 1024,
                 "Efficient-Large-Model/Sana_1600M_1024px_diffusers transformer config (transcribed; also "
                 "diffusers' SanaTransformer2DModel defaults): width 2240 (70 linear-attention heads x 32; "
                 "cross-attention 20 x 112), 20 layers, latent 32; SANA paper and model name: 1.6B",
                 ("Gemma-2-2B",), published_rounded="1.6B"),
)}


# ---- text encoders -------------------------------------------------------------------------------------------

def _clip_text(hidden: int, layers: int, heads: int, act: str, projection: int | None):
    """transformers' CLIP text tower: vocab 49408, 77 positions, MLP 4x; with a bias-free projection when
    `projection` is given (CLIPTextModelWithProjection)."""
    def make():
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                                num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                                hidden_act=act, projection_dim=projection or 768)
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return make


def _t5_xxl_encoder():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                   feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                                   relative_attention_max_distance=128, tie_word_embeddings=False))


def _gemma2_2b():
    from transformers import Gemma2Config, Gemma2Model

    return Gemma2Model(Gemma2Config(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                    num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                                    max_position_embeddings=8192, sliding_window=4096, query_pre_attn_scalar=256,
                                    hidden_activation="gelu_pytorch_tanh", attn_logit_softcapping=50.0,
                                    final_logit_softcapping=30.0))


TEXT_ENCODERS = {e.name: e for e in (
    TextEncoder("CLIP-L", _clip_text(768, 12, 12, "quick_gelu", None),
                "openai/clip-vit-large-patch14 text model (CLIPTextModel; SD1.5, SDXL's first, FLUX's CLIP); "
                "CompVis stable-diffusion README: '860M UNet and 123M text encoder'; equals open_clip's own "
                "ViT-L-14 text tower less its projection (test)", published_rounded="123M"),
    TextEncoder("CLIP-L (proj)", _clip_text(768, 12, 12, "quick_gelu", 768),
                "SD3's text_encoder: CLIPTextModelWithProjection, projection 768; equals open_clip's ViT-L-14 "
                "text tower (test)"),
    TextEncoder("OpenCLIP-H (23 layers)", _clip_text(1024, 23, 16, "gelu", None),
                "stabilityai/stable-diffusion-2-1 text_encoder: CLIPTextModel, 23 of OpenCLIP ViT-H/14's 24 "
                "text layers (SD2 uses the penultimate layer); equals open_clip's ViT-H-14 text tower less "
                "its last block and projection (test)"),
    TextEncoder("OpenCLIP-bigG (proj)", _clip_text(1280, 32, 20, "gelu", 1280),
                "SDXL's text_encoder_2 and SD3's text_encoder_2: CLIPTextModelWithProjection, projection 1280; "
                "equals open_clip's ViT-bigG-14 text tower (test)"),
    TextEncoder("T5-XXL encoder", _t5_xxl_encoder,
                "google/t5-v1_1-xxl encoder (T5EncoderModel; SD3's text_encoder_3, FLUX's text_encoder_2): "
                "d_model 4096, d_ff 10240, 64 heads x 64, 24 layers, vocab 32128, gated-GELU; no encoder-only "
                "figure found offline: checked against the closed form of those hyperparameters (test)"),
    TextEncoder("Gemma-2-2B", _gemma2_2b,
                "google/gemma-2-2b-it as SANA's text_encoder (Gemma2Model, no LM head); Gemma 2 report, "
                "Table 2: 2,024,517,888 non-embedding parameters (its 590,118,912 embedding parameters count "
                "a 256,128-row table; the checkpoint's has 256,000 rows); the report's size: 2.6B",
                published_rounded="2.6B", published_non_embedding=2_024_517_888),
)}


# ---- counting ------------------------------------------------------------------------------------------------

def build(name: str) -> torch.nn.Module:
    """The teacher or text encoder `name` on the meta device (shapes only)."""
    spec = ARCHITECTURES[name] if name in ARCHITECTURES else TEXT_ENCODERS[name]
    with torch.device("meta"):
        return spec.build()


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_buffers(module: torch.nn.Module) -> int:
    """Persistent buffers: in the checkpoint and in memory, never trained (SD3's fixed sin-cos position table)."""
    return sum(b.numel() for m in module.modules() for k, b in m._buffers.items()
               if b is not None and k not in m._non_persistent_buffers_set)


def forward_flops(name: str, batch: int = 1) -> int:
    """FLOPs of one forward pass at the native resolution (torch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build(name)
    args, kwargs = ARCHITECTURES[name].example_inputs(batch)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(*args, **kwargs)
    return int(counter.get_total_flops())


def sid_static_bytes(params: int, *, buffers: int = 0, encoder_params: int = 0, weights_bytes: int = 4,
                     train_bytes: int = 4, encoder_bytes: int | None = None, ema: bool = True, processes: int = 1,
                     sharding: str = "none", teacher_sharded: bool = False, grads_held: int = 2) -> dict:
    """Static bytes per device of SiD training (no activations): the teacher's weights; the fake score and the
    generator each with weights, gradients and Adam's two moments (``train_bytes`` each: fp32 master weights, or
    fp16 throughout in the reference's pure-fp16 mode, where torch's Adam keeps its moments in the weights' dtype);
    the generator's fp32 EMA; the frozen text encoders (`encoder_bytes` per parameter, by default `weights_bytes`). Persistent buffers
    are held by every copy. ``grads_held``: the trained networks whose gradients live at once (2 in the reference,
    which zeroes them at the start of each phase; 1 in sidbench's trainer, which frees them after each step).
    Over ``processes``: zero1 divides Adam; fsdp divides the trained networks, Adam and the EMA, and the teacher
    too when ``teacher_sharded``."""
    fsdp, n = sharding == "fsdp", processes
    return {"teacher": (params + buffers) * weights_bytes / (n if fsdp and teacher_sharded else 1),
            "weights and gradients": ((2 + grads_held) * params + 2 * buffers) * train_bytes / (n if fsdp else 1),
            "Adam": 2 * params * 2 * train_bytes / (n if sharding in ("zero1", "fsdp") else 1),
            "EMA": (params + buffers) * 4 / (n if fsdp else 1) if ema else 0,
            "text encoders": encoder_params * (weights_bytes if encoder_bytes is None else encoder_bytes)}


def sid_memory_gib(params: int, *, buffers: int = 0, encoder_params: int = 0, weights_bytes: int = 4,
                   train_bytes: int = 4, encoder_bytes: int | None = None, ema: bool = True,
                   grads_held: int = 2) -> dict:
    """Static memory of SiD training in GiB on one device, unsharded (``sid_static_bytes``; by default as the
    reference holds it, both networks' gradients at once)."""
    gib = 2 ** 30
    b = sid_static_bytes(params, buffers=buffers, encoder_params=encoder_params, weights_bytes=weights_bytes,
                         train_bytes=train_bytes, encoder_bytes=encoder_bytes, ema=ema, grads_held=grads_held)
    out = {"teacher": b["teacher"] / gib, "fake + generator (w, grad, Adam)": (b["weights and gradients"] + b["Adam"]) / gib,
           "EMA": b["EMA"] / gib, "text encoders (frozen)": b["text encoders"] / gib}
    out["total"] = sum(out.values())
    return out


def sid_iteration_forward_equivalents(cfg_in_phase_a: bool = True, cfg_in_phase_b: bool = True) -> float:
    """Network forward-pass equivalents per sample of one SiD iteration (backward counted as 2 forwards, an
    input-only backward through a frozen or non-updated net as 1):
    phase A: G forward (1) + fake guided forward (2 with CFG) + its backward (2 per forward);
    phase B: G forward + backward (3) + fake and teacher guided forwards (2 each with CFG) + the backward
    through both to x_t (1 per forward)."""
    a_fake = 2 if cfg_in_phase_a else 1
    b_each = 2 if cfg_in_phase_b else 1
    return 1 + a_fake * 3 + 3 + 2 * b_each * 2
