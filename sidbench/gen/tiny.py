"""Tiny random Stable-Diffusion-shaped models, saved in diffusers layout, for tests and CPU benchmarks.

Same classes and code paths as the real thing (UNet2DConditionModel, AutoencoderKL, CLIPTextModel with
the real CLIP BPE tokenizer, the SD DDPM schedule), a few hundred thousand parameters. ``build_tiny_sdxl``,
``build_tiny_sd3``, ``build_tiny_flux`` and ``build_tiny_sana`` do the same for the newer families; their T5 and
Gemma tokenizers are built offline over a small vocabulary, since no SentencePiece model is available (this
uses the ``vocab=`` constructors of transformers 5; transformers 4.x cannot build them this way).
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
    _quiet_saves()
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


# --- the newer families: SDXL, SD3, FLUX, SANA ------------------------------------------------------------------

SDXL_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      prediction_type="epsilon", steps_offset=1, timestep_spacing="leading")
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                      base_image_seq_len=256, max_image_seq_len=4096)
# What diffusers' convert_sana_to_diffusers.py writes for the flow-DPM-solver SANA checkpoints.
SANA_SCHEDULER = dict(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)


def _quiet_saves() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per tiny file


def _write_index(folder: Path, class_name: str, **components) -> None:
    import diffusers

    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__, **components}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _clip_text(folder: Path, seed: int, hidden: int, projection: int | None = None, **cfg) -> None:
    """A 2-layer CLIP text tower over the real 49408-token CLIP BPE (``projection`` adds the pooled projection)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = dict(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
               num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
               pad_token_id=49407, projection_dim=projection or hidden) | cfg
    config = CLIPTextConfig(**cfg)
    torch.manual_seed(seed)
    (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).save_pretrained(folder)


def _clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """The real CLIP BPE; the OpenCLIP-bigG towers of SDXL/SD3 ship it with ``pad_token="!"``."""
    from transformers import CLIPTokenizer

    from sidbench.data.tokenizer import write_clip_tokenizer_files

    write_clip_tokenizer_files(folder)
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad_token,
                  model_max_length=77).save_pretrained(folder)


def _vae_kl(folder: Path, seed: int, latent_channels: int, **cfg) -> None:
    """build_tiny_sd's 2-block AutoencoderKL (factor 2) with the family's latent width and scale/shift."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                  latent_channels=latent_channels, layers_per_block=1, norm_num_groups=4, sample_size=16,
                  **cfg).save_pretrained(folder)


def _clip_words(n: int) -> list[str]:
    """The ``n`` most frequent whole-word CLIP BPE tokens: a stand-in word list for the SentencePiece vocabularies."""
    import open_clip

    words = [k[:-4] for k in open_clip.get_tokenizer("ViT-L-14").encoder if k.endswith("</w>")]
    return [w for w in words if len(w) > 1 and w.isascii() and w.isalpha()][:n]


def _t5_tokenizer(folder: Path, n_words: int = 1000) -> int:
    """A T5-shaped Unigram tokenizer built offline (no sentencepiece model exists here); returns its vocab size.

    Same ids and specials as T5 (``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``</s>`` appended, 100 ``<extra_id_*>``),
    ``▁``-prefixed word pieces from the CLIP word list, suffix pieces, and every printable ASCII character, so
    ordinary prompts never hit ``<unk>``.
    """
    import string

    from transformers import T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    pieces = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "▁": -9.0}
    for i, w in enumerate(_clip_words(n_words)):
        pieces.setdefault("▁" + w, -3.0 - 5.0 * i / n_words)  # frequent words win the Viterbi segmentation
        pieces.setdefault(w, -4.0 - 5.0 * i / n_words)
    for c in chars:
        pieces.setdefault("▁" + c, -10.0)
        pieces.setdefault(c, -11.0)
    tok = T5TokenizerFast(vocab=list(pieces.items()), model_max_length=512)
    tok.save_pretrained(folder)
    return len(tok)


def _gemma_tokenizer(folder: Path, n_words: int = 1000) -> int:
    """A Gemma-shaped byte-fallback BPE built offline (no sentencepiece model exists here); returns its vocab size.

    Gemma's specials and ids (``<pad>``=0, ``<eos>``=1, ``<bos>``=2 prepended, ``<unk>``=3, ``<mask>``=4), the 256
    ``<0xNN>`` byte tokens, printable ASCII, and ``▁``-prefixed CLIP words as left-to-right merge chains.
    """
    import string

    from transformers import GemmaTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in ["▁"] + [c for c in string.printable if not c.isspace()]:
        vocab.setdefault(c, len(vocab))
    merges = []
    for w in _clip_words(n_words):
        piece = "▁"
        for c in w:  # each prefix is a vocab entry, so "▁cat" is reached by ▁+c, ▁c+a, ▁ca+t
            if piece + c not in vocab:
                merges.append((piece, c))
                vocab[piece + c] = len(vocab)
            piece += c
    tok = GemmaTokenizerFast(vocab=vocab, merges=merges, add_bos_token=True, model_max_length=8192)
    tok.save_pretrained(folder)
    return len(tok)


def _t5_encoder(folder: Path, seed: int, vocab_size: int, d_model: int = 64) -> None:
    """A 2-layer T5 v1.1 encoder (gated-GELU, relative positions: no length limit of its own)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=16, d_ff=2 * d_model, num_layers=2,
                            num_heads=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).save_pretrained(folder)


def build_tiny_sdxl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SDXL base in diffusers layout, for 16x16 images (latents 4x8x8).

    SDXL's code paths: two CLIP towers (hidden 32 + 16, penultimate states concatenated -> cross-attention 48),
    the pooled projection (16) of the second plus 6 micro-conditioning ids (Fourier dim 8) as ``text_time``
    added embedding, the SDXL VAE scale 0.13025 and Euler "leading" schedule.
    """
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _quiet_saves()
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32 + 16, attention_head_dim=8, norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 16).save_pretrained(folder / "unet")
    _vae_kl(folder / "vae", seed + 1, 4, scaling_factor=0.13025, force_upcast=True)
    _clip_text(folder / "text_encoder", seed + 2, 32)
    _clip_text(folder / "text_encoder_2", seed + 3, 16, projection=16, hidden_act="gelu", pad_token_id=0)
    _clip_tokenizer(folder / "tokenizer")
    _clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    EulerDiscreteScheduler(**SDXL_SCHEDULER).save_pretrained(folder / "scheduler")
    _write_index(folder, "StableDiffusionXLPipeline", force_zeros_for_empty_prompt=True,
                 unet=["diffusers", "UNet2DConditionModel"], vae=["diffusers", "AutoencoderKL"],
                 text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"],
                 text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                 tokenizer_2=["transformers", "CLIPTokenizer"], scheduler=["diffusers", "EulerDiscreteScheduler"],
                 image_encoder=[None, None], feature_extractor=[None, None])
    return folder


def build_tiny_sd3(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SD3 (MMDiT) in diffusers layout, for 16x16 images (latents 16x8x8, 2x2 patches -> 16 tokens).

    Two projected CLIP towers (32 + 16: penultimate states concatenated and zero-padded to the T5 width 64,
    pooled 32 + 16 = 48) and a T5 encoder (d_model 64) with its own offline vocabulary; the VAE carries SD3's
    scale 1.5305 and shift 0.0609, the schedule is flow matching with shift 3.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _quiet_saves()
    torch.manual_seed(seed)
    # Two layers: the last MMDiT block is context_pre_only, so both block kinds run.
    SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                          num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16,
                          pooled_projection_dim=32 + 16, out_channels=16,
                          pos_embed_max_size=32).save_pretrained(folder / "transformer")
    _vae_kl(folder / "vae", seed + 1, 16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
            use_post_quant_conv=False)
    _clip_text(folder / "text_encoder", seed + 2, 32, projection=32)
    _clip_text(folder / "text_encoder_2", seed + 3, 16, projection=16, hidden_act="gelu", pad_token_id=0)
    _clip_tokenizer(folder / "tokenizer")
    _clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    _t5_encoder(folder / "text_encoder_3", seed + 4, _t5_tokenizer(folder / "tokenizer_3"))
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(folder / "scheduler")
    _write_index(folder, "StableDiffusion3Pipeline",
                 transformer=["diffusers", "SD3Transformer2DModel"], vae=["diffusers", "AutoencoderKL"],
                 text_encoder=["transformers", "CLIPTextModelWithProjection"],
                 tokenizer=["transformers", "CLIPTokenizer"],
                 text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                 tokenizer_2=["transformers", "CLIPTokenizer"], text_encoder_3=["transformers", "T5EncoderModel"],
                 tokenizer_3=["transformers", "T5TokenizerFast"],
                 scheduler=["diffusers", "FlowMatchEulerDiscreteScheduler"],
                 image_encoder=[None, None], feature_extractor=[None, None])
    return folder


def build_tiny_flux(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny FLUX.1-dev in diffusers layout, for 16x16 images (latents 16x8x8, packed 2x2 -> 16 tokens of 64).

    One double- and one single-stream block (2 heads of 16, RoPE axes 4+6+6), guidance embedding, the CLIP
    pooled output (hidden 32) and a T5 encoder (d_model 64, offline vocabulary); the VAE carries FLUX's scale
    0.3611 and shift 0.1159, the schedule is flow matching with resolution-dependent (dynamic) shift.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _quiet_saves()
    torch.manual_seed(seed)
    FluxTransformer2DModel(patch_size=1, in_channels=4 * 16, num_layers=1, num_single_layers=1,
                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64,
                           pooled_projection_dim=32, guidance_embeds=True,
                           axes_dims_rope=(4, 6, 6)).save_pretrained(folder / "transformer")
    _vae_kl(folder / "vae", seed + 1, 16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
            use_post_quant_conv=False)
    _clip_text(folder / "text_encoder", seed + 2, 32)
    _clip_tokenizer(folder / "tokenizer")
    _t5_encoder(folder / "text_encoder_2", seed + 3, _t5_tokenizer(folder / "tokenizer_2"))
    FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER).save_pretrained(folder / "scheduler")
    _write_index(folder, "FluxPipeline",
                 transformer=["diffusers", "FluxTransformer2DModel"], vae=["diffusers", "AutoencoderKL"],
                 text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"],
                 text_encoder_2=["transformers", "T5EncoderModel"], tokenizer_2=["transformers", "T5TokenizerFast"],
                 scheduler=["diffusers", "FlowMatchEulerDiscreteScheduler"],
                 image_encoder=[None, None], feature_extractor=[None, None])
    return folder


def build_tiny_sana(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SANA in diffusers layout, for 32x32 images (latents 32x8x8; SANA wants sides divisible by 32).

    A 3-stage DC-AE (factor 4, 32 latent channels, linear-attention last stage, SANA's scale 0.41407), a
    2-layer linear-attention DiT with cross-attention, a 2-layer Gemma-2 (hidden 16) with an offline byte-fallback
    BPE, and the flow DPM-Solver++ schedule. ``sample_size`` is 8, which SANA's resolution binning does not
    know: call the pipeline with ``use_resolution_binning=False``.
    """
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _quiet_saves()
    vocab_size = _gemma_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    SanaTransformer2DModel(in_channels=32, out_channels=32, num_attention_heads=2, attention_head_dim=8,
                           num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
                           cross_attention_dim=16, caption_channels=16, sample_size=8,
                           patch_size=1).save_pretrained(folder / "transformer")
    torch.manual_seed(seed + 1)
    AutoencoderDC(in_channels=3, latent_channels=32, attention_head_dim=8,
                  encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
                  decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
                  encoder_block_out_channels=(8, 16, 32), decoder_block_out_channels=(8, 16, 32),
                  encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
                  encoder_qkv_multiscales=((), (), (5,)), decoder_qkv_multiscales=((), (), (5,)),
                  decoder_norm_types=("batch_norm", "batch_norm", "rms_norm"),
                  decoder_act_fns=("relu", "relu", "silu"), downsample_block_type="Conv",
                  upsample_block_type="interpolate", scaling_factor=0.41407).save_pretrained(folder / "vae")
    torch.manual_seed(seed + 2)
    Gemma2Model(Gemma2Config(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=8192,
                             pad_token_id=0, eos_token_id=1, bos_token_id=2)).save_pretrained(folder / "text_encoder")
    DPMSolverMultistepScheduler(**SANA_SCHEDULER).save_pretrained(folder / "scheduler")
    _write_index(folder, "SanaPipeline",
                 transformer=["diffusers", "SanaTransformer2DModel"], vae=["diffusers", "AutoencoderDC"],
                 text_encoder=["transformers", "Gemma2Model"], tokenizer=["transformers", "GemmaTokenizerFast"],
                 scheduler=["diffusers", "DPMSolverMultistepScheduler"])
    return folder
