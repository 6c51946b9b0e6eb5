"""CLIP score (GigaGAN / SiD-LSG definition): token handling with known answers, and the whole path
against an independent computation on a tiny random open_clip model."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sidbench.eval.metrics import clip_score as cs

from conftest import random_images

TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def row(*ids):
    t = torch.zeros(1, 77, dtype=torch.long)
    t[0, :len(ids)] = torch.tensor(ids)
    return t


def test_prefix_goes_right_after_the_start_token():
    out = cs.insert_photo_depicts(row(cs.SOT, 5, 6, cs.EOT))
    assert out[0, :8].tolist() == [cs.SOT, 320, 1125, 29340, 5, 6, cs.EOT, 0]
    assert out.shape == (1, 77)


def test_full_sequence_is_cut_to_77_and_the_end_token_repaired():
    caption = list(range(1000, 1075))                     # 75 caption tokens: SOT + 75 + EOT = 77
    out = cs.insert_photo_depicts(row(cs.SOT, *caption, cs.EOT))
    assert out.shape == (1, 77)
    assert out[0, 4:76].tolist() == caption[:72]          # 3 caption tokens and the old EOT fall off
    assert out[0, 76].item() == cs.EOT                     # position 76 was non-zero: repaired


def test_end_token_repair_only_when_the_last_slot_is_non_zero():
    short = list(range(1000, 1072))                       # SOT + 72 + EOT = 74 -> 77 after insertion: fits
    out = cs.insert_photo_depicts(row(cs.SOT, *short, cs.EOT))
    assert out[0, 75].item() == short[-1] and out[0, 76].item() == cs.EOT
    just_over = list(range(1000, 1073))                   # SOT + 73 + EOT = 75 -> EOT would land at 78
    out = cs.insert_photo_depicts(row(cs.SOT, *just_over, cs.EOT))
    assert out[0, 76].item() == cs.EOT and out[0, 75].item() == just_over[-2]
    tiny = cs.insert_photo_depicts(row(cs.SOT, 7, cs.EOT))
    assert tiny[0, 76].item() == 0                         # nothing to repair


def test_real_tokenizer_gives_the_published_prefix_ids_and_counts_truncation():
    import open_clip

    tok = open_clip.get_tokenizer("ViT-g-14")
    ids, cut = cs.tokenize(["a cat", " ".join(["word"] * 80)], tok)
    assert ids[0, :7].tolist() == [cs.SOT, 320, 1125, 29340, 320, 2368, cs.EOT]
    assert cut == 1 and ids[1, 76].item() == cs.EOT


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("cfg")
    (d / "sidbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(d))
    return cs.load_open_clip("sidbench-tiny-clip", random_weights=True, seed=0)


def test_clip_score_equals_an_independent_computation(tiny_clip):
    images = random_images(5, 0, sizes=((300, 400), (256, 256), (512, 300)))
    prompts = ["a red circle", "two dogs on a beach at sunset", "x", "A photo of a kitchen", "a " * 90]
    scorer = cs.load_open_clip("sidbench-tiny-clip", random_weights=True, seed=0)
    for k in range(0, 5, 2):
        scorer.update(_batch(images[k:k + 2]), prompts[k:k + 2])
    got = scorer.result()

    # Independent: numpy crop with round(), PIL Lanczos, float32 round trip, manual token surgery.
    model, pre, tok = tiny_clip.model, tiny_clip.preprocess, tiny_clip.tokenizer
    sims = []
    with torch.no_grad():
        for im, p in zip(images, prompts):
            h, w = im.shape[:2]
            s = min(h, w)
            top, left = int(round((h - s) / 2)), int(round((w - s) / 2))
            sq = Image.fromarray(im[top:top + s, left:left + s]).resize((256, 256), Image.LANCZOS)
            x = np.asarray(sq).astype(np.float32) / np.float32(127.5) - np.float32(1)
            back = np.clip((x + np.float32(1)) * np.float32(127.5), 0, 255).astype(np.uint8)
            ids = [cs.SOT] + tok.encode(p) + [cs.EOT]
            ids = ids[:77]
            ids[-1] = cs.EOT if len(ids) == 77 else ids[-1]
            ids = ids[:1] + [320, 1125, 29340] + ids[1:]
            ids = (ids + [0] * 77)[:77]
            if ids[76] != 0:
                ids[76] = cs.EOT
            f_img = model.encode_image(pre(Image.fromarray(back))[None]).float()
            f_txt = model.encode_text(torch.tensor([ids])).float()
            f_img, f_txt = f_img / f_img.norm(), f_txt / f_txt.norm()
            sims.append(float((f_img * f_txt).sum()))
    assert got["value"] == pytest.approx(np.mean(sims), abs=1e-6)
    assert got["n"] == 5 and got["prompts_truncated"] == 1 and got["variant"] == "gigagan"
    assert got["model"]["random"] is True


def _batch(ims):
    # Images of different sizes go through the scorer as a list-like batch.
    out = np.empty(len(ims), dtype=object)
    out[:] = ims
    return out


def test_round_trip_can_lose_one_level():
    im = np.full((8, 8, 3), 3, np.uint8)
    back = np.asarray(cs.image_round_trip(im, size=8))
    assert (back == 2).all()  # 3 / 127.5 - 1, then (x + 1) * 127.5 = 2.9999998 in float32, truncated


# --- torchmetrics variant -------------------------------------------------------------------------------
TINY_HF = dict(text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
               vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=32), projection_dim=16)


class _TensorFeatures(torch.nn.Module):
    """torchmetrics 1.9.0 expects tensors from get_*_features; transformers 5 returns model outputs."""

    def __init__(self, clip):
        super().__init__()
        self.clip, self.config = clip, clip.config

    def get_image_features(self, *a, **k):
        return cs._as_tensor(self.clip.get_image_features(*a, **k))

    def get_text_features(self, *a, **k):
        return cs._as_tensor(self.clip.get_text_features(*a, **k))


def test_torchmetrics_variant_equals_torchmetrics_per_sample_and_clamps_the_mean():
    tm = pytest.importorskip("torchmetrics.functional.multimodal.clip_score")
    scorer = cs.load_hf_clip("tiny-vit", random_weights=True, seed=1, config=cs.vit_l14_config(**TINY_HF))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 130, 3), dtype=np.uint8) for _ in range(4)]
    prompts = ["a cat", "a dog on a mat " * 20, "x", "a kitchen with a red kettle"]
    ours = scorer.update(images, prompts)
    chw = torch.stack([torch.from_numpy(im.transpose(2, 0, 1).copy()) for im in images])
    with pytest.warns(UserWarning, match="longer than"):
        theirs, n = tm._clip_score_update(chw, prompts, _TensorFeatures(scorer.model), scorer.processor)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    res = scorer.result()
    assert res["prompts_truncated"] == 1 and n == 4
    assert res["mean_before_clamp"] == pytest.approx(float(theirs.double().mean()), abs=1e-4)
    assert res["value"] == max(res["mean_before_clamp"], 0.0)  # torchmetrics clamps the mean, not each sample


def test_hf_tokenizer_built_from_open_clip_bpe_matches_open_clip():
    import open_clip

    scorer = cs.load_hf_clip("tiny-vit", random_weights=True, config=cs.vit_l14_config(**TINY_HF))
    text = "Two dogs, playing; on the beach at sunset!"
    hf_ids = scorer.processor(text=[text], return_tensors="pt")["input_ids"][0].tolist()
    oc_ids = open_clip.get_tokenizer("ViT-L-14")([text])[0]
    assert hf_ids == oc_ids[: len(hf_ids)].tolist() and hf_ids[-1] == cs.EOT
