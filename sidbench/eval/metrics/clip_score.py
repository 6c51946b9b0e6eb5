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

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError
from sidbench.data.images import pre_resize
from sidbench.data.tokenizer import write_clip_tokenizer_files

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


class _Sums:
    """The running sums both CLIP scorers keep (total, n, truncated), and their reset."""

    def reset(self) -> None:
        """Forget the sums so one loaded model can score several image sets (training proxies)."""
        self.total, self.n, self.truncated = 0.0, 0, 0


@dataclass
class ClipScorer(_Sums):
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

    from sidbench.eval.extractors.weights import find_weights

    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, precision="fp32")
        info = {"name": model_name, "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        if model_name != "ViT-g-14" and weights is None:
            raise SidbenchError(f"give the weights file for open_clip model {model_name} with --clip-weights")
        if weights is not None and model_name != "ViT-g-14":
            from sidbench.core.provenance import sha256_file
            path, sha = weights, sha256_file(weights)
        else:
            path, sha = find_weights("open_clip-ViT-g-14-laion2b_s12b_b42k", weights)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), precision="fp32")
        info = {"name": model_name, "weights": str(path), "sha256": sha, "random": False, "seed": None,
                "pretrained_tag": "laion2b_s12b_b42k" if model_name == "ViT-g-14" else None}
    device = torch.device(device)
    return ClipScorer(model.to(device).eval(), preprocess, open_clip.get_tokenizer(model_name), info, device)


# --- The torchmetrics ``CLIPScore`` variant --------------------------------------------------------------
# For reproducing papers that used torchmetrics: transformers' CLIP (default openai/clip-vit-large-patch14),
# its processor (resize shortest edge 224 bicubic, centre crop, ImageNet-CLIP normalisation), captions
# padded then sliced to 77 tokens with no end token put back, 100 x cosine, and max(mean, 0) at the end.
# NOT comparable to the GigaGAN/SiD-LSG number above.
TORCHMETRICS_VARIANT = "torchmetrics"
TORCHMETRICS_DESCRIPTION = ("torchmetrics CLIPScore: transformers CLIP + CLIPProcessor, captions sliced to 77 "
                            "without end-token repair, 100 x cosine, max(mean, 0)")



def random_hf_clip(config, seed: int, pad_token: str = "<|endoftext|>"):
    """(transformers CLIPModel with seeded random weights, the OpenAI CLIP tokenizer) without a model hub."""
    import tempfile

    from transformers import CLIPModel, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = CLIPModel(config)
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(tmp)
        tokenizer = CLIPTokenizer(f"{tmp}/vocab.json", f"{tmp}/merges.txt", pad_token=pad_token)
    return net, tokenizer


def vit_l14_config(**overrides):
    """openai/clip-vit-large-patch14's architecture, for random-weight runs (no hub offline)."""
    from transformers import CLIPConfig

    text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407, hidden_act="quick_gelu")
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, hidden_act="quick_gelu")
    text.update(overrides.pop("text", {}))
    vision.update(overrides.pop("vision", {}))
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=overrides.pop("projection_dim", 768))


def _as_tensor(out) -> torch.Tensor:
    # transformers 5 may return a model output where 4.x returned the projected features.
    if isinstance(out, torch.Tensor):
        return out
    for key in ("pooler_output", "image_embeds", "text_embeds"):
        if getattr(out, key, None) is not None:
            return getattr(out, key)
    raise TypeError(f"unexpected CLIP feature output {type(out).__name__}")


@dataclass
class TorchmetricsClipScorer(_Sums):
    model: torch.nn.Module
    processor: object
    info: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    total: float = 0.0
    n: int = 0
    truncated: int = 0

    @torch.no_grad()
    def update(self, images_uint8, prompts: list[str]) -> torch.Tensor:
        if len(images_uint8) != len(prompts):
            raise SidbenchError(f"CLIP score: {len(images_uint8)} images but {len(prompts)} prompts in a batch")
        chw = [torch.from_numpy(np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))) for im in images_uint8]
        pix = self.processor(images=chw, return_tensors="pt")["pixel_values"].to(self.device)
        txt = self.processor(text=list(prompts), return_tensors="pt", padding=True)
        limit = self.model.config.text_config.max_position_embeddings
        self.truncated += int((txt["attention_mask"].sum(1) > limit).sum())
        ids, mask = txt["input_ids"][:, :limit], txt["attention_mask"][:, :limit]
        f_img = _as_tensor(self.model.get_image_features(pixel_values=pix)).float()
        f_txt = _as_tensor(self.model.get_text_features(input_ids=ids.to(self.device),
                                                        attention_mask=mask.to(self.device))).float()
        f_img = f_img / f_img.norm(p=2, dim=-1, keepdim=True)
        f_txt = f_txt / f_txt.norm(p=2, dim=-1, keepdim=True)
        score = 100 * (f_img * f_txt).sum(-1)
        self.total += float(score.double().sum())
        self.n += len(prompts)
        return score

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("CLIP score over zero images")
        mean = self.total / self.n
        return {"value": max(mean, 0.0), "mean_before_clamp": mean, "n": self.n, "variant": TORCHMETRICS_VARIANT,
                "definition": TORCHMETRICS_DESCRIPTION, "prompts_truncated": self.truncated, "model": dict(self.info)}


def load_hf_clip(model: str = "openai/clip-vit-large-patch14", *, weights: str | None = None,
                 random_weights: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 config=None) -> TorchmetricsClipScorer:
    """transformers CLIP from a local folder (``save_pretrained`` layout; default: the hub's, fetched into the Hugging
    Face cache on first use) or random weights of ViT-L/14."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    if random_weights:
        net, tokenizer = random_hf_clip(config or vit_l14_config(), seed)
        processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
        info = {"name": model, "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        import os

        if weights is None:  # the hub's model folder, cached on first use
            from sidbench.core.hub import TRANSFORMERS_FILES, hub_folder

            weights = str(hub_folder(model, allow=TRANSFORMERS_FILES, fetch_hint="Run it once online, or pass "
                                     f"--clip-weights DIR (a local transformers folder of {model})."))
        elif not os.path.isdir(weights):
            raise SidbenchError(f"--clip-weights {weights}: expected a folder in transformers layout")
        net = CLIPModel.from_pretrained(weights)
        processor = CLIPProcessor.from_pretrained(weights)
        info = {"name": model, "weights": os.path.abspath(weights), "sha256": None, "random": False, "seed": None}
    device = torch.device(device)
    return TorchmetricsClipScorer(net.to(device).eval(), processor, info, device)


CLIP_VARIANTS = {
    VARIANT: ("ViT-g-14", VARIANT_DESCRIPTION),
    TORCHMETRICS_VARIANT: ("openai/clip-vit-large-patch14", TORCHMETRICS_DESCRIPTION),
}


def default_clip_model(variant: str) -> str:
    if variant not in CLIP_VARIANTS:
        raise SidbenchError(f"unknown CLIP variant {variant!r}; expected one of {', '.join(CLIP_VARIANTS)}")
    return CLIP_VARIANTS[variant][0]


def load_clip_scorer(variant: str = VARIANT, model: str | None = None, *, weights: str | None = None,
                     random_weights: bool = False, seed: int = 0, device: str | torch.device = AUTO):
    """The scorer of a named CLIP variant (both have ``update(images, prompts)`` and ``result()``), on ``device``
    (``auto``: the GPU where there is one)."""
    device = resolve_device(device)
    model = model or default_clip_model(variant)
    if variant == TORCHMETRICS_VARIANT:
        return load_hf_clip(model, weights=weights, random_weights=random_weights, seed=seed, device=device)
    return load_open_clip(model, weights=weights, random_weights=random_weights, seed=seed, device=device)
