"""Run THUDM's image-reward 1.5 package (its own ImageReward class, BLIP ViT and med.py BERT) on given images and
prompts, in a process whose path holds the package and the transformers 4.x it needs (tools/install-reference.sh).

Only what cannot run offline is replaced: the bert-base-uncased download (a local vocab.txt, given the same two
special tokens as the package's init_tokenizer) and, optionally, the ViT size (create_vit builds the package's own
VisionTransformer with the asked width and depth). Writes the state dict, the scores (ImageReward.score, one image at
a time) and the reference architectures' parameter shapes (built on the meta device) as JSON.

    python image_reward_package.py LIB VOCAB MED_CONFIG FULL_MED_CONFIG OUT_DIR IMAGES.npy PROMPTS.json VIT_JSON
"""
import json
import os
import sys
import types

lib, vocab, med, full_med, out, images_npy, prompts_json, vit_json = sys.argv[1:9]
sys.path.insert(0, lib)
for name in ("ImageReward", "ImageReward.models"):  # skip the package __init__s (they import openai clip, diffusers)
    mod = types.ModuleType(name)
    mod.__path__ = [os.path.join(lib, *name.split("."))]
    sys.modules[name] = mod

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sidbench.core._tvguard  # noqa: E402,F401  (only makes this machine's torchvision importable)
from PIL import Image  # noqa: E402

import ImageReward.models.BLIP.blip as blip  # noqa: E402
from transformers import BertTokenizer  # noqa: E402


def init_tokenizer():
    tok = BertTokenizer(vocab_file=vocab)  # the package: BertTokenizer.from_pretrained('bert-base-uncased')
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.additional_special_tokens_ids[0]
    return tok


vit = json.loads(vit_json)
real_create_vit = blip.create_vit


def create_vit(kind, image_size, *a, **kw):
    if not vit:
        return real_create_vit(kind, image_size, *a, **kw)
    from ImageReward.models.BLIP.vit import VisionTransformer

    return VisionTransformer(img_size=image_size, drop_path_rate=0.1, **vit), vit["embed_dim"]


import ImageReward.models.BLIP.blip_pretrain as bp  # noqa: E402

bp.init_tokenizer, bp.create_vit = init_tokenizer, create_vit
from ImageReward.ImageReward import ImageReward  # noqa: E402
from ImageReward.models.BLIP.med import BertConfig, BertModel  # noqa: E402

torch.manual_seed(0)
model = ImageReward(med_config=med).eval()
with torch.no_grad():  # the package's MLP init (std 1/769) makes every reward equal: spread it so images differ
    for p in model.mlp.parameters():
        p.normal_(0, 0.1)
images = np.load(images_npy)
prompts = json.load(open(prompts_json))
with torch.no_grad():
    scores = [model.score(p, Image.fromarray(im)) for im, p in zip(images, prompts)]
torch.save(model.state_dict(), os.path.join(out, "ImageReward.pt"))

real_linspace = torch.linspace  # vit.py reads its drop-path rates with .item(): keep that one tensor real
torch.linspace = lambda *a, **kw: real_linspace(*a, **{**kw, "device": "cpu"})
with torch.device("meta"):  # the full-size architectures, for a shape comparison without weights
    full_vit, width = real_create_vit("large", 224)
    cfg = BertConfig.from_json_file(full_med)
    cfg.encoder_width = width
    bert = BertModel(config=cfg, add_pooling_layer=False)
shapes = {**{f"blip.visual_encoder.{k}": list(v.shape) for k, v in full_vit.state_dict().items()},
          **{f"blip.text_encoder.{k}": list(v.shape) for k, v in bert.state_dict().items()}}
json.dump({"scores": scores, "full_shapes": shapes}, open(os.path.join(out, "reference.json"), "w"))
