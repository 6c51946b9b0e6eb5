"""The demo's small text-to-image world: its text stack, its teacher, and its metric network.

Everything is built by code here and saved in the forms the real pipeline loads: a pixel-space Stable
Diffusion folder (diffusers ``UNet2DConditionModel``, a frozen random ``CLIPTextModel`` with a
character-level CLIP tokenizer, the SD DDPM schedule; ``"vae": [null, null]``), and a small CNN trained
on the world whose 128-d features give the Fréchet distance and whose attribute heads give the
prompt-adherence score that plays CLIP's role.
"""
from __future__ import annotations

import copy
import json
import string
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sidbench.gen.tiny import SD_SCHEDULER
from sidbench.demo.world import COLOURS, POSITIONS, SHAPES, SIZES, all_captions, sample_world

RES = 16
TEXT_LEN = 48
ATTRIBUTES = {"shape": list(SHAPES), "colour": list(COLOURS), "size": list(SIZES), "position": list(POSITIONS)}


def caption_attributes(caption: str) -> dict[str, int]:
    """'a small red circle at the top left' -> attribute indices (the world's captions only)."""
    words = caption.split()
    size, colour, shape = words[1], words[2], words[3]
    position = " ".join(words[6:8])
    return {"shape": SHAPES.index(shape), "colour": list(COLOURS).index(colour), "size": list(SIZES).index(size),
            "position": list(POSITIONS).index(position)}


# --- text stack -------------------------------------------------------------------------------------------

def write_char_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer over single characters (no merges): 'red' -> r, e, d</w>."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>",
                  model_max_length=TEXT_LEN).save_pretrained(folder)


def text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(vocab_size=54, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=TEXT_LEN, bos_token_id=52,
                                        eos_token_id=53, pad_token_id=53))


def teacher_unet(seed: int = 0):
    """Channels (16, 32, 64), cross-attention at 8x8 and 4x4 (needed to learn position), 2 heads."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=RES, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=2, norm_num_groups=8)


def write_base(folder: Path, unet, encoder, prediction_type: str = "epsilon") -> Path:
    from diffusers import DDPMScheduler

    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    encoder.save_pretrained(folder / "text_encoder")
    write_char_tokenizer(folder / "tokenizer")
    DDPMScheduler(**{**SD_SCHEDULER, "prediction_type": prediction_type}).save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": [None, None],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDPMScheduler"], "sidbench_world": f"{RES}px shapes, pixel space"}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def train_teacher(folder: Path, *, steps: int = 2000, batch: int = 64, lr: float = 1.5e-3, seed: int = 0,
                  prediction_type: str = "v_prediction", log=print) -> Path:
    """Train the world's teacher (10% caption dropout, EMA 0.995) and save the base folder.

    v-prediction, as SD2.1-768: the one-step generator's x0 = sqrt(abar) x_in - sqrt(1 - abar) v at t_init = 625
    amplifies an output error by sqrt(1 - abar) = 0.93, where eps-prediction's (x_in - sqrt(1 - abar) eps) / sqrt(abar)
    amplifies it by 2.5. With the earlier eps teacher every one-step sample carried ~11 grey levels of pixel noise,
    the teacher's own error at t_init, which distillation did not remove (see docs/demo).
    """
    from diffusers import DDPMScheduler

    from sidbench.gen.diffusion import add_noise, training_target
    from sidbench.gen.models import load_base

    torch.manual_seed(seed)
    unet, enc = teacher_unet(seed), text_encoder(seed + 1)
    write_base(folder, unet, enc, prediction_type)  # so the text stack loads through the real path
    base = load_base(folder, device="cpu")  # the training loop below runs on the CPU, as the shipped teacher was made
    captions = all_captions()
    table = base.encode(captions + [""]).tensors["encoder_hidden_states"]  # 97 embeddings, computed once
    index = {c: i for i, c in enumerate(captions)}
    abar = DDPMScheduler(**SD_SCHEDULER).alphas_cumprod.float()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for step in range(steps):
        imgs, caps = sample_world(batch, RES, seed=int(rng.integers(2**31)))
        x0 = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        ids = torch.tensor([index[c] if rng.random() >= 0.1 else len(captions) for c in caps])
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        pred = unet(add_noise(x0, eps, a), t, encoder_hidden_states=table[ids]).sample
        loss = F.mse_loss(pred, training_target(x0, eps, a, prediction_type))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - 0.995)
        if step % 200 == 0 or step == steps - 1:
            log(f"teacher step {step}/{steps}  loss {loss.item():.4f}  {time.time() - t0:.0f}s")
    ema.save_pretrained(folder / "unet")
    return folder


# --- metric network ---------------------------------------------------------------------------------------

class WorldCNN(nn.Module):
    """3 convs -> 128-d features (for the Fréchet distance) -> attribute heads (for adherence)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(64, 128, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(512, 128), nn.ReLU())
        self.heads = nn.ModuleDict({k: nn.Linear(128, len(v)) for k, v in ATTRIBUTES.items()})

    def features(self, x255: torch.Tensor) -> torch.Tensor:
        return self.body(x255 / 127.5 - 1)

    def forward(self, x255: torch.Tensor) -> torch.Tensor:  # the extractor interface: [0,255] NCHW -> [B,128]
        return self.features(x255)

    def predict(self, x255: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x255)
        return {k: h(f).argmax(1) for k, h in self.heads.items()}


def train_metric_net(path: Path, *, steps: int = 600, batch: int = 128, seed: int = 0, noise_max: float = 25.0,
                     log=print) -> WorldCNN:
    """Train the metric CNN on true images with additive Gaussian pixel noise of std ~ U(0, noise_max) levels.

    The noise makes its features describe content (shape, colour, size, position), not pixel noise: trained on
    clean images only (noise_max = 0), the Fréchet distance of true images plus noise of std 14 levels (5,223)
    came out above that of blurred one-step samples (4,780), so it measured noise and little else. Pixel noise
    is reported on its own instead (``background_noise``).
    """
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = WorldCNN()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed + 100)
    for step in range(steps):
        imgs, caps = sample_world(batch, RES, seed=int(rng.integers(2**31)))
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
        if noise_max > 0:
            x = (x + torch.randn_like(x) * torch.rand(batch, 1, 1, 1) * noise_max).clamp(0, 255)
        f = net.features(x)
        attrs = [caption_attributes(c) for c in caps]
        loss = sum(F.cross_entropy(h(f), torch.tensor([a[k] for a in attrs])) for k, h in net.heads.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    imgs, caps = sample_world(1000, RES, seed=seed + 999)
    acc = adherence(net, imgs, caps)
    log(f"metric network: attribute accuracy on fresh true images {acc:.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net.eval()


def load_metric_net(path: Path) -> WorldCNN:
    from safetensors.torch import load_file

    net = WorldCNN()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def background_noise(images_uint8: np.ndarray) -> float:
    """Mean |pixel - 128| over the one-pixel border, in grey levels: shapes seldom reach it, so it measures
    pixel noise (true images: ~1.8, where large jittered shapes touch the border)."""
    b = np.concatenate([images_uint8[:, 0], images_uint8[:, -1], images_uint8[:, :, 0], images_uint8[:, :, -1]], 1)
    return float(np.abs(b.astype(np.float64) - 128).mean())


@torch.no_grad()
def adherence(net: WorldCNN, images_uint8: np.ndarray, captions: list[str]) -> float:
    """Mean over images and the four attributes of 'the metric network reads what the caption says'."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float()
    pred = net.predict(x)
    attrs = [caption_attributes(c) for c in captions]
    hits = [(pred[k] == torch.tensor([a[k] for a in attrs])).float().mean() for k in ATTRIBUTES]
    return float(torch.stack(hits).mean())
