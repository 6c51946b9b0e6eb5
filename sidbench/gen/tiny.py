"""Tiny random Stable-Diffusion-shaped models, saved in diffusers layout, for tests and CPU benchmarks.

Same classes and code paths as the real thing (UNet2DConditionModel, AutoencoderKL, CLIPTextModel with
the real CLIP BPE tokenizer, the SD DDPM schedule), a few hundred thousand parameters.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    clip_sample=False, prediction_type="epsilon", steps_offset=1)


def tiny_unet(cross_dim: int = 32, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=8)


def build_tiny_sd(folder: str | Path, seed: int = 0, **scheduler) -> Path:
    """Write a tiny SD in diffusers layout (model_index.json + unet/vae/text_encoder/tokenizer/scheduler).

    ``scheduler`` overrides the DDPM config (``prediction_type="v_prediction"`` for an SD2.1-768-style base).
    """
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from sidbench.data.tokenizer import write_clip_tokenizer_files

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_unet(seed=seed).save_pretrained(folder / "unet")
    torch.manual_seed(seed + 1)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  layers_per_block=1, norm_num_groups=4, sample_size=16).save_pretrained(folder / "vae")
    torch.manual_seed(seed + 2)
    CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                                 eos_token_id=49407, pad_token_id=49407)).save_pretrained(folder / "text_encoder")
    write_clip_tokenizer_files(folder / "tokenizer")
    CLIPTokenizer(str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"),
                  pad_token="<|endoftext|>", model_max_length=77).save_pretrained(folder / "tokenizer")
    DDPMScheduler(**{**SD_SCHEDULER, **scheduler}).save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDPMScheduler"], "safety_checker": [None, None],
             "feature_extractor": [None, None]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder
