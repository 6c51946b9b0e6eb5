"""Human-preference scores of (image, prompt) pairs: HPSv2 / HPSv2.1 and PickScore v1, per image and mean.

HPSv2 (Wu et al. 2023; tgxs002/HPSv2 @ 866735e, ``img_score.score``): an OpenCLIP ViT-H-14 fine-tuned on HPD v2,
``HPS = cos(image embedding, text embedding)``. Its validation preprocessing is not open_clip's: ToTensor first,
then a *tensor* bicubic resize of the longest side to 224 and zero padding to 224x224, split evenly (no crop;
vendored ``ResizeMaxSize``), then OpenAI mean/std; text through open_clip's tokenizer (77 tokens, last forced to
end-of-text). The benchmark prints 100 x the mean; v2.0 and v2.1 scores are not comparable with each other.
The reference runs under CUDA fp16 autocast; we run in fp32.

PickScore v1 (Kirstain et al. 2023; yuvalkirstain/PickScore @ f79607f, README): transformers CLIP ViT-H/14 tuned
on Pick-a-Pic, ``score = exp(logit_scale) * cos``, with the CLIP processor of laion/CLIP-ViT-H-14 (PIL bicubic
shortest side 224, centre crop 224, OpenAI mean/std; the PIL backend, as the pinned transformers 4.27 had) and
text padded/truncated to 77 tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError
from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD
from sidbench.eval.metrics.clip_score import _as_tensor, random_hf_clip

HPS_DEFINITION = ("HPSv2: cosine of the image and prompt embeddings of the HPD-v2-tuned OpenCLIP ViT-H-14, "
                  "letterboxed 224 input (tgxs002/HPSv2 img_score.score); the HPS benchmark prints 100 x this")
PICK_DEFINITION = "PickScore v1: exp(logit_scale) x cosine of the Pick-a-Pic-tuned CLIP ViT-H/14 embeddings"
HPS_VERSIONS = ("v2.0", "v2.1")


def hps_letterbox(img_uint8: np.ndarray, size: int = 224) -> torch.Tensor:
    """HPS's validation transform: /255, tensor bicubic of the longest side to ``size``, zero pad, normalise."""
    x = torch.from_numpy(np.ascontiguousarray(img_uint8)).permute(2, 0, 1).float() / 255
    h, w = x.shape[1:]
    scale = size / float(max(h, w))
    if scale != 1.0:
        nh, nw = round(h * scale), round(w * scale)
        x = TF.resize(x, [nh, nw], interpolation=InterpolationMode.BICUBIC)
        ph, pw = size - nh, size - nw
        x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
    return TF.normalize(x, OPENAI_MEAN, OPENAI_STD)


@dataclass
class _MeanScorer:
    info: dict
    device: torch.device
    total: float = 0.0
    n: int = 0

    def reset(self) -> None:
        self.total, self.n = 0.0, 0

    def _add(self, scores: torch.Tensor) -> torch.Tensor:
        self.total += float(scores.double().sum())
        self.n += len(scores)
        return scores


@dataclass
class HpsScorer(_MeanScorer):
    model: torch.nn.Module = None
    tokenizer: object = None
    version: str = "v2.1"

    @torch.no_grad()
    def update(self, images_uint8, prompts: list[str]) -> torch.Tensor:
        pix = torch.stack([hps_letterbox(np.asarray(im)) for im in images_uint8]).to(self.device)
        img = F.normalize(self.model.encode_image(pix).float(), dim=-1)
        txt = F.normalize(self.model.encode_text(self.tokenizer(list(prompts)).to(self.device)).float(), dim=-1)
        return self._add((img * txt).sum(-1))

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("HPS over zero images")
        return {"value": self.total / self.n, "value_x100": 100 * self.total / self.n, "n": self.n,
                "version": self.version, "definition": HPS_DEFINITION, "model": dict(self.info)}


@dataclass
class PickScorer(_MeanScorer):
    model: torch.nn.Module = None
    image_processor: object = None
    tokenizer: object = None

    @torch.no_grad()
    def update(self, images_uint8, prompts: list[str]) -> torch.Tensor:
        pix = self.image_processor(images=[Image.fromarray(np.asarray(im)) for im in images_uint8],
                                   return_tensors="pt")["pixel_values"].to(self.device)
        txt = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        img = F.normalize(_as_tensor(self.model.get_image_features(pixel_values=pix)).float(), dim=-1)
        tex = F.normalize(_as_tensor(self.model.get_text_features(
            input_ids=txt["input_ids"].to(self.device), attention_mask=txt["attention_mask"].to(self.device))).float(),
            dim=-1)
        return self._add(self.model.logit_scale.exp().float() * (img * tex).sum(-1))

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("PickScore over zero images")
        return {"value": self.total / self.n, "n": self.n, "definition": PICK_DEFINITION, "model": dict(self.info)}


def load_hps_scorer(version: str = "v2.1", *, weights: str | None = None, random_weights: bool = False, seed: int = 0,
                    model_name: str = "ViT-H-14", device: str | torch.device = AUTO) -> HpsScorer:
    """HPSv2 from its local checkpoint (the weights table), or seeded random weights of the architecture
    (``model_name`` lets tests use a smaller open_clip model)."""
    device = resolve_device(device)  # before any loading
    import open_clip

    from sidbench.eval.extractors.weights import find_weights

    if version not in HPS_VERSIONS:
        raise SidbenchError(f"--hps-version {version!r}: expected one of {', '.join(HPS_VERSIONS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None, precision="fp32")
    if random_weights:
        info = {"name": model_name, "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        if model_name != "ViT-H-14":
            raise SidbenchError("HPSv2 checkpoints are OpenCLIP ViT-H-14 networks")
        path, sha = find_weights(f"hpsv2-{version}", weights)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(ckpt.get("state_dict", ckpt), strict=False)
        if missing or [k for k in unexpected if k != "logit_bias"]:
            raise SidbenchError(f"{path}: not an HPS {version} ViT-H-14 checkpoint (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
        info = {"name": model_name, "weights": str(path), "sha256": sha, "random": False, "seed": None}
    device = torch.device(device)
    return HpsScorer(info, device, model=model.to(device).eval(), tokenizer=open_clip.get_tokenizer(model_name),
                     version=version)


PICKSCORE_REPO = "yuvalkirstain/PickScore_v1"
PICKSCORE_REVISION = "dc2ed378e35ed7046987c680120123faa75b4559"  # the hub's commit adding model.safetensors


def pickscore_config(**overrides):
    """yuvalkirstain/PickScore_v1's architecture (laion CLIP-ViT-H-14), for random-weight runs."""
    from transformers import CLIPConfig

    text = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", bos_token_id=49406,
                eos_token_id=49407, pad_token_id=1)
    vision = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14, hidden_act="gelu")
    text.update(overrides.pop("text", {}))
    vision.update(overrides.pop("vision", {}))
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=overrides.pop("projection_dim", 1024))


def load_pickscore_scorer(*, weights: str | None = None, random_weights: bool = False, seed: int = 0, config=None,
                          device: str | torch.device = AUTO) -> PickScorer:
    """PickScore from a local transformers folder (model + CLIP tokenizer files; default: the hub's, fetched into
    the Hugging Face cache on first use), or random weights."""
    device = resolve_device(device)  # before any loading
    import os

    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    if random_weights:
        net, tok = random_hf_clip(config or pickscore_config(), seed, pad_token="!")
        info = {"name": "PickScore_v1", "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        if weights is None:  # the hub's model folder (it holds the CLIP tokenizer files too), cached on first use
            from sidbench.core.hub import TRANSFORMERS_FILES, hub_folder

            weights = str(hub_folder(PICKSCORE_REPO, revision=PICKSCORE_REVISION, allow=TRANSFORMERS_FILES,
                                     fetch_hint="Run it once online, or pass --pickscore-weights DIR (a local "
                                                f"transformers folder of {PICKSCORE_REPO})."))
        elif not os.path.isdir(weights):
            raise SidbenchError(f"--pickscore-weights {weights}: expected a local transformers folder of "
                                f"{PICKSCORE_REPO} with the CLIP tokenizer files (as save_pretrained writes them)")
        net = CLIPModel.from_pretrained(weights)
        tok = CLIPTokenizer.from_pretrained(weights)
        info = {"name": "PickScore_v1", "weights": os.path.abspath(weights), "sha256": None, "random": False,
                "seed": None}
    device = torch.device(device)
    return PickScorer(info, device, model=net.to(device).eval(), image_processor=CLIPImageProcessorPil(),
                      tokenizer=tok)
