"""The real architectures built on the meta device have the published sizes (a config typo cannot pass): the
exact published count where there is one, else the model card's rounded figure plus what the installed packages
know of the released checkpoints; the text encoders equal the release's own code (open_clip) or the closed form
of their published hyperparameters; and the memory table is the closed form it claims."""
import pytest

from sidbench.gen.architectures import (ARCHITECTURES, TEXT_ENCODERS, build, count_buffers, count_params,
                                        forward_flops, rounds_to, sid_memory_gib)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_meta_architecture_has_the_published_parameter_count(name):
    a, net = ARCHITECTURES[name], build(name)
    assert all(p.is_meta for p in net.parameters())  # nothing allocated
    assert a.published_params is not None or a.published_rounded is not None
    n = count_params(net)
    if a.published_params is not None:
        assert n == a.published_params
    if a.published_rounded is not None:  # a rounded figure counts the checkpoint's tensors
        assert rounds_to(n + count_buffers(net), a.published_rounded), (n, count_buffers(net))
    assert set(a.text_encoders) <= set(TEXT_ENCODERS)


def test_rounding_rule():
    assert rounds_to(2_469_663_936, "2.5B") and not rounds_to(2_243_171_520, "2.5B")
    assert rounds_to(2_449_999_999, "2.4B") and rounds_to(2_450_000_000, "2.5B")
    assert rounds_to(123_060_480, "123M") and rounds_to(2_085_000_000, "2B") and not rounds_to(2_500_000_000, "2B")


def test_sd35_configs_match_what_diffusers_knows_of_the_checkpoints():
    # diffusers' single-file loader (loaders/single_file_utils.py) tells SD3.5-Medium from SD3 by a 9216-wide
    # adaLN (6 x 1536) and a pos_embed of 147456 = 384^2 rows (SD3: 36864 = 192^2), and SD3.5-Large by
    # joint_blocks.37 existing; SD3.5 has RMS qk-norm, and SD3.5-Medium (MMDiT-X) dual attention in blocks 0-12
    medium, large, sd3 = build("SD3.5-Medium MMDiT-X"), build("SD3.5-Large MMDiT"), build("SD3-Medium MMDiT")
    for net, rows in ((medium, 147456), (sd3, 36864)):
        assert net.transformer_blocks[0].norm1_context.linear.out_features == 9216
        assert net.pos_embed.pos_embed.shape[1] == rows
    assert len(large.transformer_blocks) == 38 and len(medium.transformer_blocks) == 24
    assert [i for i, b in enumerate(medium.transformer_blocks) if b.attn2 is not None] == list(range(13))
    assert all(b.attn2 is None for b in large.transformer_blocks)
    for net in (medium, large):
        assert all(type(b.attn.norm_q).__name__ == "RMSNorm" for b in net.transformer_blocks)


def test_sana_1600m_is_diffusers_default_sana():
    import inspect

    from diffusers import SanaTransformer2DModel

    defaults = {k: p.default for k, p in inspect.signature(SanaTransformer2DModel.__init__).parameters.items()
                if k != "self"}
    ours = {k: v for k, v in build("SANA 1600M").config.items() if not k.startswith("_")}
    assert ours == defaults


@pytest.mark.parametrize("name", list(TEXT_ENCODERS))
def test_text_encoder_has_the_published_size(name):
    e, net = TEXT_ENCODERS[name], build(name)
    assert all(p.is_meta for p in net.parameters())
    n = count_params(net)
    if e.published_params is not None:
        assert n == e.published_params
    if e.published_rounded is not None:
        assert rounds_to(n + count_buffers(net), e.published_rounded)
    if e.published_non_embedding is not None:
        assert n - net.get_input_embeddings().weight.numel() == e.published_non_embedding
    checked = (e.published_params, e.published_non_embedding, name in OPEN_CLIP_TOWERS, name == "T5-XXL encoder")
    assert any(c not in (None, False) for c in checked), "an encoder with no check"


# encoder -> (open_clip config, drop its last block, drop its text projection): CLIPTextModel has no projection;
# SD2 uses 23 of OpenCLIP-H's 24 text blocks
OPEN_CLIP_TOWERS = {"CLIP-L": ("ViT-L-14", False, True), "CLIP-L (proj)": ("ViT-L-14", False, False),
                    "OpenCLIP-H (23 layers)": ("ViT-H-14", True, True),
                    "OpenCLIP-bigG (proj)": ("ViT-bigG-14", False, False)}


@pytest.mark.parametrize("name", list(OPEN_CLIP_TOWERS))
def test_clip_text_encoders_equal_open_clip_text_towers(name):
    import open_clip
    import torch
    from open_clip.model import _build_text_tower

    model, drop_block, drop_projection = OPEN_CLIP_TOWERS[name]
    cfg = open_clip.get_model_config(model)
    with torch.device("meta"):
        tower = _build_text_tower(cfg["embed_dim"], cfg["text_cfg"])
    n = count_params(tower)
    n -= count_params(tower.transformer.resblocks[-1]) if drop_block else 0
    n -= tower.text_projection.numel() if drop_projection else 0
    assert count_params(build(name)) == n


def test_t5_xxl_encoder_is_the_closed_form_of_its_hyperparameters():
    # T5 v1.1 XXL: d_model 4096, d_ff 10240, 64 heads of 64, 24 layers, vocab 32128, 32 relative-position buckets
    d, d_ff, heads, d_kv, layers, vocab, buckets = 4096, 10240, 64, 64, 24, 32128, 32
    per_layer = 4 * d * heads * d_kv + 3 * d * d_ff + 2 * d   # q k v o; gated wi_0 wi_1 wo; two RMS norms
    assert count_params(build("T5-XXL encoder")) == vocab * d + layers * per_layer + buckets * heads + d


def test_memory_is_weights_plus_two_trained_nets_plus_ema_plus_encoders():
    m = sid_memory_gib(2 ** 30)  # a billion-ish parameters: GiB = bytes per parameter
    assert (m["teacher"], m["fake + generator (w, grad, Adam)"], m["EMA"], m["total"]) == (4, 32, 4, 40)
    assert sid_memory_gib(2 ** 30, weights_bytes=2, ema=False)["total"] == 34
    assert sid_memory_gib(2 ** 30, weights_bytes=2, train_bytes=2, ema=False)["total"] == 18  # fp16 Adam moments too
    m = sid_memory_gib(2 ** 30, buffers=2 ** 30, encoder_params=2 ** 30, weights_bytes=2)
    # buffers: weights in all four copies, no grads or Adam; encoders frozen at the weights' precision
    assert (m["teacher"], m["fake + generator (w, grad, Adam)"], m["EMA"], m["text encoders (frozen)"]) == (4, 40, 8, 2)
    assert m["total"] == 54
    assert sid_memory_gib(0, encoder_params=2 ** 30, encoder_bytes=4)["total"] == 4


def test_forward_flops_scale_with_the_batch():
    one, two = forward_flops("SD1.5 UNet", 1), forward_flops("SD1.5 UNet", 2)
    assert one > 5e11 and two == 2 * one  # ~0.8 TFLOP for a 512 px SD1.5 UNet forward


def test_the_readme_table_is_what_the_script_prints(capsys):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("arch_table", root / "bench" / "arch_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    out = capsys.readouterr().out.splitlines()
    rows = [ln for ln in out if ln.startswith("| ")]
    assert len(rows) == len(ARCHITECTURES) + 1 + len(TEXT_ENCODERS) + 1
    for row in rows + [ln for ln in out if ln and not ln.startswith("|")]:
        assert row in text, f"README's architecture table is stale; rerun python bench/arch_table.py:\n{row}"
