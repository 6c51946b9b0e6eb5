"""The real teachers' architectures at their real sizes, built on the meta device: no weights, no download.

Parameter counts, the static memory of SiD training (three networks: the frozen teacher, the trained fake score
and generator with gradients and Adam, the generator's EMA) and forward FLOPs (torch's FLOP counter on meta
tensors) come from the same diffusers classes the trainer loads, with each model's published config. A test
checks every count against the number published for the model, so a config typo cannot pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch



@dataclass(frozen=True)
class Architecture:
    name: str
    family: str                      # DDPM UNet (eps / v) or rectified flow (velocity)
    build: Callable[[], torch.nn.Module]
    example_inputs: Callable[[int], tuple[tuple, dict]]   # batch -> (args, kwargs) for one forward at native size
    resolution: int                  # pixels of the native image size the inputs describe
    published_params: int            # the count the model's own release states (or its checkpoint holds)
    source: str


def _unet(**config):
    from diffusers import UNet2DConditionModel

    return lambda: UNet2DConditionModel(**config)


def _meta(*shape):
    return torch.empty(*shape, device="meta")


def _unet_inputs(latent: int, channels: int, tokens: int, dim: int, sdxl: bool = False):
    def make(b: int):
        kw = {"encoder_hidden_states": _meta(b, tokens, dim)}
        if sdxl:
            kw["added_cond_kwargs"] = {"text_embeds": _meta(b, 1280), "time_ids": _meta(b, 6)}
        return (_meta(b, channels, latent, latent), torch.full((b,), 500, device="meta")), kw
    return make


def _sd3():
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                                 num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                                 pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)


def _sd3_inputs(b: int):
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


ARCHITECTURES = {a.name: a for a in (
    Architecture("SD1.5 UNet", "DDPM, eps", _unet(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
                 _unet_inputs(64, 4, 77, 768), 512, 859_520_964, "runwayml/stable-diffusion-v1-5 unet (859.5M)"),
    Architecture("SD2.1 UNet", "DDPM, v (768) / eps (base)",
                 _unet(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                       use_linear_projection=True), _unet_inputs(96, 4, 77, 1024), 768, 865_910_724,
                 "stabilityai/stable-diffusion-2-1 unet (865.9M)"),
    Architecture("SDXL UNet", "DDPM, eps",
                 _unet(sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                       transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                       cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                       addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
                 _unet_inputs(128, 4, 77, 2048, sdxl=True), 1024, 2_567_463_684,
                 "stabilityai/stable-diffusion-xl-base-1.0 unet (2.6B)"),
    Architecture("SD3-Medium MMDiT", "rectified flow", _sd3, _sd3_inputs, 1024, 2_028_328_000,
                 "stabilityai/stable-diffusion-3-medium transformer (2B)"),
    Architecture("FLUX.1-dev", "rectified flow (guidance-distilled)", _flux, _flux_inputs, 1024, 11_901_408_320,
                 "black-forest-labs/FLUX.1-dev transformer (12B)"),
)}


def build(name: str) -> torch.nn.Module:
    """The architecture on the meta device (shapes only)."""
    with torch.device("meta"):
        return ARCHITECTURES[name].build()


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(name: str, batch: int = 1) -> int:
    """FLOPs of one forward pass at the native resolution (torch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build(name)
    args, kwargs = ARCHITECTURES[name].example_inputs(batch)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(*args, **kwargs)
    return int(counter.get_total_flops())


def sid_memory_gib(params: int, *, weights_bytes: int = 4, train_bytes: int = 4, ema: bool = True) -> dict:
    """Static memory of SiD training in GiB (no activations): the teacher's weights; the fake score and the
    generator each with weights, gradients and Adam's two moments (fp32); the generator's EMA copy."""
    gib = 2 ** 30
    teacher = params * weights_bytes
    trained = 2 * params * (train_bytes + train_bytes + 8)   # weights + grads + Adam m, v (fp32)
    ema_b = params * 4 if ema else 0
    return {"teacher": teacher / gib, "fake + generator (w, grad, Adam)": trained / gib, "EMA": ema_b / gib,
            "total": (teacher + trained + ema_b) / gib}


def sid_iteration_forward_equivalents(cfg_in_phase_a: bool = True, cfg_in_phase_b: bool = True) -> float:
    """Network forward-pass equivalents per sample of one SiD iteration (backward counted as 2 forwards, an
    input-only backward through a frozen or non-updated net as 1):
    phase A: G forward (1) + fake guided forward (2 with CFG) + its backward (2 per forward);
    phase B: G forward + backward (3) + fake and teacher guided forwards (2 each with CFG) + the backward
    through both to x_t (1 per forward)."""
    a_fake = 2 if cfg_in_phase_a else 1
    b_each = 2 if cfg_in_phase_b else 1
    return 1 + a_fake * 3 + 3 + 2 * b_each * 2
