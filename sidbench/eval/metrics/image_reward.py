"""ImageReward v1.0 (Xu et al. 2023): a BLIP image-text reward model, per image and mean.

    reward(x, p) = (MLP(h_CLS) - 0.16717362830052426) / 1.0333394966054072,
    h = BERT(tokens(p), cross-attending ViT-L/16(x)),

as THUDM/ImageReward @ c1392c6 computes it (``ImageReward.score``; docs/spec/metrics-beyond-fid.md section 3.2):
the image through BLIP's ViT-L/16 at 224 (embed 1024, depth 24, all tokens after the final norm); the prompt through
the bert-base-uncased tokenizer with BLIP's two extra tokens ([DEC], [ENC]), padded and truncated to 35 tokens with
[CLS] first (the reference does not swap in [ENC]); BLIP's text encoder (med.py, here transformers' port of it,
BlipTextModel) run bidirectionally with cross-attention over every image token; the first token's output through
768 -> 1024 -> 128 -> 64 -> 16 -> 1 linear layers (the ReLUs commented out, so one affine map in eval mode); then
standardised so scores roughly follow N(0, 1) on the authors' data. Preprocessing is torchvision's on the PIL image:
bicubic resize of the shortest side to 224, centre crop 224, OpenAI mean/std. The state-dict keys are the
reference's (``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.layers.*``) so ``ImageReward.pt`` loads as
it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sidbench.core.device import AUTO, resolve_device
from sidbench.core.errors import SidbenchError
from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD
from sidbench.eval.metrics.aesthetic import AestheticHead as RewardHead  # the reference's MLP(768): the same stack
from sidbench.eval.metrics.preference import _MeanScorer

MEAN, STD = 0.16717362830052426, 1.0333394966054072  # ImageReward.py: the reward's standardisation
MAX_TOKENS = 35
DEFINITION = ("ImageReward v1.0: BLIP ViT-L/16 + cross-attending BERT over the prompt (35 tokens), first-token "
              "MLP, standardised (r - 0.16717) / 1.03334 (THUDM/ImageReward ImageReward.score)")


def text_config(**overrides):
    """med_config.json of THUDM/ImageReward as a BlipTextConfig: BERT-base with cross-attention over 1024-wide
    image tokens. ``is_decoder`` only makes transformers build the cross-attention layers; the forward runs
    bidirectionally, as BLIP's ``mode='multimodal'`` does."""
    from transformers import BlipTextConfig

    cfg = dict(vocab_size=30524, hidden_size=768, encoder_hidden_size=1024, intermediate_size=3072,
               num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512, hidden_act="gelu",
               layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
               is_decoder=True)
    cfg.update(overrides)
    return BlipTextConfig(**cfg)


def vision_config(**overrides) -> dict:
    """BLIP ``create_vit('large', 224)``: timm's ViT with qkv bias, LayerNorm eps 1e-6, exact GELU, class token."""
    cfg = dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0)
    cfg.update(overrides)
    return cfg


class _Blip(torch.nn.Module):
    def __init__(self, vision: dict, text):
        super().__init__()
        import timm.models.vision_transformer as tv
        from transformers import BlipTextModel

        self.visual_encoder = tv.VisionTransformer(**vision, qkv_bias=True, class_token=True, global_pool="",
                                                   num_classes=0, dynamic_img_size=False)
        self.text_encoder = BlipTextModel(text, add_pooling_layer=False)


class ImageRewardNet(torch.nn.Module):
    """BLIP encoders + reward head under the reference's attribute names (``blip``, ``mlp``)."""

    def __init__(self, vision: dict | None = None, text=None):
        super().__init__()
        text = text if text is not None else text_config()
        vision = vision or vision_config()
        if vision["embed_dim"] != text.encoder_hidden_size:
            raise SidbenchError(f"ImageReward: image tokens {vision['embed_dim']} wide, text encoder expects "
                                f"{text.encoder_hidden_size}")
        self.blip = _Blip(vision, text)
        self.mlp = RewardHead(text.hidden_size)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image = self.blip.visual_encoder.forward_features(pixels)
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        out = self.blip.text_encoder(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image,
                                     encoder_attention_mask=image_mask, is_decoder=False, return_dict=True)
        r = self.mlp(out.last_hidden_state[:, 0, :].float()).squeeze(-1)
        return (r - MEAN) / STD


def preprocess(img_uint8: np.ndarray, size: int = 224) -> torch.Tensor:
    """``ImageReward._transform``: torchvision's Resize(224, BICUBIC) and CenterCrop(224) on the PIL image."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    pil = Image.fromarray(np.asarray(img_uint8)).convert("RGB")
    pil = TF.center_crop(TF.resize(pil, size, interpolation=InterpolationMode.BICUBIC), size)
    return TF.normalize(TF.to_tensor(pil), OPENAI_MEAN, OPENAI_STD)


def blip_tokenizer(vocab_file: str):
    """BLIP's ``init_tokenizer``: bert-base-uncased (lower case) plus [DEC] as bos and [ENC] as an extra token."""
    import inspect

    from transformers import BertTokenizer

    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:  # transformers 5: a token -> id dict
        with open(vocab_file, encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    else:
        tok = BertTokenizer(vocab_file=vocab_file, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def tokenize(tokenizer, prompts: list[str]) -> dict:
    return tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_TOKENS,
                     return_tensors="pt")


def write_toy_vocab(path: str) -> str:
    """A small WordPiece vocabulary (BERT's specials, ASCII characters and their ## forms) so random-weight runs
    tokenise any prompt without the bert-base-uncased files."""
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars if c.isalnum())]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(w + "\n" for w in words))
    return path


@dataclass
class ImageRewardScorer(_MeanScorer):
    model: ImageRewardNet = None
    tokenizer: object = None

    @torch.no_grad()
    def update(self, images_uint8, prompts: list[str]) -> torch.Tensor:
        pix = torch.stack([preprocess(im) for im in images_uint8]).to(self.device)
        t = tokenize(self.tokenizer, prompts)
        return self._add(self.model(pix, t["input_ids"].to(self.device), t["attention_mask"].to(self.device)))

    def result(self) -> dict:
        if self.n == 0:
            raise SidbenchError("ImageReward over zero images")
        return {"value": self.total / self.n, "n": self.n, "definition": DEFINITION, "model": dict(self.info)}


def _vocab_path(tokenizer: str | None) -> str:
    from sidbench.eval.extractors.weights import find_weights

    if tokenizer is not None and os.path.isdir(tokenizer) and os.path.isfile(os.path.join(tokenizer, "vocab.txt")):
        return os.path.join(tokenizer, "vocab.txt")  # a saved bert-base-uncased folder
    return str(find_weights("bert-base-uncased-vocab", tokenizer)[0])


def load_image_reward_scorer(*, weights: str | None = None, tokenizer: str | None = None,
                             random_weights: bool = False, seed: int = 0, vision: dict | None = None,
                             text: dict | None = None, device: str | torch.device = AUTO) -> ImageRewardScorer:
    """ImageReward from its local checkpoint and the bert-base-uncased vocabulary (the weights table), or seeded
    random weights of the architecture (``vision`` / ``text``: overrides of the two configs, for small tests)."""
    device = resolve_device(device)  # before any loading
    import tempfile

    from sidbench.eval.extractors.weights import find_weights

    if random_weights:
        with tempfile.TemporaryDirectory() as tmp:
            tok = blip_tokenizer(write_toy_vocab(os.path.join(tmp, "vocab.txt")))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ImageRewardNet(vision_config(**(vision or {})), text_config(**{
                "vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "sep_token_id": tok.sep_token_id, **(text or {})}))
        info = {"name": "ImageReward-v1.0", "weights": None, "sha256": None, "random": True, "seed": seed}
    else:
        tok = blip_tokenizer(_vocab_path(tokenizer))
        path, sha = find_weights("imagereward-v1.0", weights)
        with torch.device("meta"):  # no random init of 450M parameters that the checkpoint replaces
            model = ImageRewardNet(vision_config(**(vision or {})), text_config(**{
                "bos_token_id": tok.bos_token_id, "sep_token_id": tok.sep_token_id, **(text or {})}))
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        missing = sorted(set(model.state_dict()) - set(state))
        if missing:
            raise SidbenchError(f"{path}: not an ImageReward v1.0 checkpoint (missing {missing[:3]})")
        model.load_state_dict({k: state[k] for k in model.state_dict()}, assign=True)
        model.blip.text_encoder.embeddings.position_ids = torch.arange(
            model.blip.text_encoder.config.max_position_embeddings).expand((1, -1))  # non-persistent: rebuilt
        left = [n for n, b in model.named_buffers() if b.is_meta]
        if left:
            raise SidbenchError(f"ImageReward: buffers {left[:3]} not in the checkpoint and not rebuilt")
        vocab = model.blip.text_encoder.embeddings.word_embeddings.num_embeddings
        if len(tok) != vocab:
            raise SidbenchError(f"ImageReward tokenizer has {len(tok)} tokens with [DEC] and [ENC], its checkpoint "
                                f"{vocab}: pass the bert-base-uncased vocab.txt (--imagereward-tokenizer)")
        info = {"name": "ImageReward-v1.0", "weights": str(path), "sha256": sha, "random": False, "seed": None}
    device = torch.device(device)
    return ImageRewardScorer(info, device, model=model.to(device).eval(), tokenizer=tok)
