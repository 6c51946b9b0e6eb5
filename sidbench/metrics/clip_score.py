"""CLIP score, in the GigaGAN / SiD-LSG definition (the ``coco2014-30k`` protocol's).

- Model: open_clip ``ViT-g-14`` with ``laion2b_s12b_b42k`` weights, fp32 (any open_clip model can be named).
- Image: centre crop to square, PIL Lanczos to 256, to [-1, 1] in float, back to uint8 with
  ``((x + 1) * 127.5).clamp(0, 255)`` and a truncating cast (which can lose one level), then the
  model's own preprocess.
- Text: the OpenAI CLIP tokenizer with truncation (open_clip's SimpleTokenizer is the same BPE and
  truncates the same way); the tokens of "A photo depicts " (320, 1125, 29340) go right after the start
  token; the sequence is cut back to 77; if position 76 is then non-zero it becomes the end token 49407.
- Score: the mean over samples of the cosine similarity (a fraction near 0.3, not x100).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from sidbench.errors import SidbenchError
from sidbench.images import pre_resize

CONTEXT_LENGTH = 77
SOT, EOT = 49406, 49407
PHOTO_DEPICTS = (320, 1125, 29340)  # "a photo depicts" in the CLIP BPE vocabulary
VARIANT = "gigagan"
VARIANT_DESCRIPTION = ("GigaGAN/SiD-LSG: crop + Lanczos 256 + [-1,1] uint8 round trip + model preprocess; "
                       "'A photo depicts' inserted after the start token, cut to 77, end token repaired; "
                       "mean cosine similarity")


def insert_photo_depicts(tokens: torch.Tensor) -> torch.Tensor:
    """[B, 77] token ids (start token first) -> the same with the prefix inserted, cut to 77, end repaired."""
    if tokens.ndim != 2 or tokens.shape[1] != CONTEXT_LENGTH:
        raise SidbenchError(f"expected token ids of shape [B, {CONTEXT_LENGTH}], got {tuple(tokens.shape)}")
    prefix = torch.tensor(PHOTO_DEPICTS, dtype=tokens.dtype).expand(tokens.shape[0], -1)
    out = torch.cat([tokens[:, :1], prefix, tokens[:, 1:]], dim=1)[:, :CONTEXT_LENGTH].clone()
    last = out[:, CONTEXT_LENGTH - 1]
    out[:, CONTEXT_LENGTH - 1] = torch.where(last != 0, torch.full_like(last, EOT), last)
    return out


def tokenize(prompts: list[str], tokenizer) -> tuple[torch.Tensor, int]:
    """Protocol token ids and how many prompts lost tokens (to the tokenizer's cut or the prefix)."""
    base = tokenizer(prompts)
    lengths = (base != 0).sum(1)  # start + caption + end, after the tokenizer's own cut
    raw_lengths = [len(tokenizer.encode(p)) + 2 for p in prompts] if hasattr(tokenizer, "encode") else lengths.tolist()
    truncated = sum(1 for n in raw_lengths if n + len(PHOTO_DEPICTS) > CONTEXT_LENGTH)
    return insert_photo_depicts(base), truncated


def image_round_trip(img: np.ndarray, size: int = 256) -> Image.Image:
    """uint8 HWC -> the PIL image the protocol feeds to the model's preprocess."""
    x = torch.tensor(pre_resize(img, size), dtype=torch.float32)
    x = x / 127.5 - 1.0                                   # the [-1, 1] tensor a generator would produce
    back = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)  # truncating cast: can lose one level
    return Image.fromarray(back.numpy())


@dataclass
class ClipScorer:
    """Streaming CLIP score: update with (uint8 images, prompts) batches, then ``result()``."""

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    info: dict                                   # model name, weights file/sha256 or random seed
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    total: float = 0.0
    n: int = 0
    truncated: int = 0

    @torch.no_grad()
    def update(self, images_uint8: np.ndarray, prompts: list[str]) -> torch.Tensor:
        if len(images_uint8) != len(prompts):
            raise SidbenchError(f"CLIP score: {len(images_uint8)} images but {len(prompts)} prompts in a batch")
        pix = torch.stack([self.preprocess(image_round_trip(im)) for im in images_uint8]).to(self.device)
        tokens, cut = tokenize(list(prompts), self.tokenizer)
        img = self.model.encode_image(pix).float()
        txt = self.model.encode_text(tokens.to(self.device)).float()
        cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        self.total += float(cos.double().sum())
        self.n += len(prompts)
        self.truncated += cut
        return cos

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("CLIP score over zero images")
        return {"value": self.total / self.n, "n": self.n, "variant": VARIANT, "definition": VARIANT_DESCRIPTION,
                "prompts_truncated": self.truncated, "model": dict(self.info)}


def load_open_clip(model_name: str = "ViT-g-14", *, weights: str | None = None, random_weights: bool = False,
                   seed: int = 0, device: str | torch.device = "cpu") -> ClipScorer:
    """An open_clip model from local weights (the weights table) or, for tests, seeded random weights."""
    import open_clip

    from sidbench.extractors.weights import find_weights

    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, precision="fp32")
        info = {"name": model_name, "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        if model_name != "ViT-g-14" and weights is None:
            raise SidbenchError(f"give the weights file for open_clip model {model_name} with --clip-weights")
        if weights is not None and model_name != "ViT-g-14":
            from sidbench.provenance import sha256_file
            path, sha = weights, sha256_file(weights)
        else:
            path, sha = find_weights("open_clip-ViT-g-14-laion2b_s12b_b42k", weights)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), precision="fp32")
        info = {"name": model_name, "weights": str(path), "sha256": sha, "random": False, "seed": None,
                "pretrained_tag": "laion2b_s12b_b42k" if model_name == "ViT-g-14" else None}
    device = torch.device(device)
    return ClipScorer(model.to(device).eval(), preprocess, open_clip.get_tokenizer(model_name), info, device)
