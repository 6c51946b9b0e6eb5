"""Precision / recall / density / coverage (sidbench.eval.metrics.prdc) and the VGG16 fc2 extractor."""
import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import sidbench  # noqa: F401  (torchvision guard before torch_fidelity imports torchvision)
from sidbench.core.errors import SidbenchError
from sidbench.eval.extractors import vgg, weights
from sidbench.eval.extractors.registry import build_extractor
from sidbench.eval.metrics.prdc import precision_recall

KEYS = ("precision", "recall", "density", "coverage")


def brute_force(real, gen, k=3):
    """The definitions written out on full float64 distance matrices (small N only)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    d_rr = cdist(real, real)
    np.fill_diagonal(d_rr, np.inf)                      # self excluded
    r_real = np.sort(d_rr, axis=1)[:, k - 1]
    d_gg = cdist(gen, gen)
    np.fill_diagonal(d_gg, np.inf)
    r_gen = np.sort(d_gg, axis=1)[:, k - 1]
    d_rg = cdist(real, gen)                             # [N real, M gen]
    inside_real = d_rg <= r_real[:, None]               # gen j within real i's radius
    inside_gen = d_rg <= r_gen[None, :]                 # real i within gen j's radius
    return {"precision": inside_real.any(0).mean(), "recall": inside_gen.any(1).mean(),
            "density": inside_real.sum() / (k * gen.shape[0]), "coverage": inside_real.any(1).mean()}


def cloud_and_cluster(seed=0, n=500, d=32):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d)).astype(np.float32)            # wide real cloud
    gen = (rng.normal(size=(n, d)) * 0.05).astype(np.float32)    # tight generated cluster, same centre
    return real, gen


def test_tight_generated_cluster_inside_wide_real_cloud():
    real, gen = cloud_and_cluster()
    r = precision_recall(real, gen, density_coverage=True)
    assert r["precision"] > 0.8 and r["recall"] < 0.3
    assert (r["k"], r["n_real"], r["n_gen"]) == (3, 500, 500) and "k-th nearest" in r["definition"]
    swapped = precision_recall(gen, real)
    # The definitions are symmetric: swapping the inputs swaps the answers exactly.
    assert swapped["precision"] == r["recall"] and swapped["recall"] == r["precision"]


def test_identical_sets_are_fully_inside_each_other():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32) + 50   # an offset, to stress the float32 tiles
    r = precision_recall(x, x.copy(), density_coverage=True)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_size_does_not_change_the_answer(dtype):
    rng = np.random.default_rng(2)
    real = rng.normal(size=(230, 24))
    gen = rng.normal(size=(170, 24)) * 0.8 + 0.2
    gen[:10] = real[:10]                                # shared rows: distance exactly 0 across the sets
    big = precision_recall(real, gen, density_coverage=True, dtype=dtype, row_block=4096, col_block=4096)
    small = precision_recall(real, gen, density_coverage=True, dtype=dtype, row_block=7)
    tiny = precision_recall(real, gen, density_coverage=True, dtype=dtype, row_block=7, col_block=5)
    for key in KEYS:
        assert small[key] == big[key] == tiny[key], key


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_brute_force_on_generic_data(k, dtype):
    rng = np.random.default_rng(10 + k)
    real = rng.normal(size=(200, 20)).astype(np.float32)
    gen = (rng.normal(size=(150, 20)) * 0.7 + 0.3).astype(np.float32)
    gen[:5] = real[:5]
    ours = precision_recall(real, gen, k=k, density_coverage=True, dtype=dtype, row_block=64, col_block=96)
    ref = brute_force(real, gen, k)
    for key in KEYS:
        assert ours[key] == ref[key], key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_brute_force_with_exact_ties_and_duplicates(dtype):
    # Integer lattice points: many distances tie exactly with a radius, many points are duplicates (radius
    # 0). Every such decision must go the exact (<=) way, whatever float32 round-off does in the tiles.
    rng = np.random.default_rng(3)
    real = rng.integers(0, 4, size=(260, 5)).astype(np.float32)
    gen = rng.integers(0, 4, size=(190, 5)).astype(np.float32)
    gen[:40] = 2
    ours = precision_recall(real, gen, density_coverage=True, dtype=dtype, row_block=33, col_block=50)
    ref = brute_force(real, gen)
    for key in KEYS:
        assert ours[key] == ref[key], key
    assert ours["exact_rechecks"] > 0 and ours["radius_fallback_rows"] > 0   # both recheck paths ran


def test_collapsed_generator_equals_brute_force():
    # Mode collapse: 120 bit-identical generated samples (radius exactly 0) plus 60 near-copies, far from
    # the real cloud's centre; the radii of the tight set are computed on that set's own centre.
    rng = np.random.default_rng(7)
    real = rng.normal(size=(220, 48)).astype(np.float32)
    centre = rng.normal(size=48) * 0.5 + 2.0
    gen = np.repeat(centre[None], 180, 0)
    gen[120:] += rng.normal(size=(60, 48)) * 1e-3
    gen = gen.astype(np.float32)
    gen[-1] = real[0]
    ours = precision_recall(real, gen, density_coverage=True, row_block=50, col_block=64)
    ref = brute_force(real, gen)
    for key in KEYS:
        assert ours[key] == ref[key], key


def test_float32_tiles_survive_a_large_common_offset():
    # |a|^2 + |b|^2 - 2ab on raw float32 features 3e4 from the origin would be round-off noise; the
    # tiles are centred and every undecidable pair is rechecked, so the answer is the float64 one.
    rng = np.random.default_rng(4)
    real = (rng.normal(size=(250, 64)) + 3e4).astype(np.float32)
    gen = (rng.normal(size=(200, 64)) * 0.9 + 3e4 + 0.1).astype(np.float32)
    ours = precision_recall(real, gen, density_coverage=True)
    ref = brute_force(real, gen)
    for key in KEYS:
        assert ours[key] == ref[key], key


def test_agrees_with_torch_fidelity_and_its_orientation():
    from torch_fidelity.metric_prc import prc_features_to_metric

    rng = np.random.default_rng(5)
    real = torch.from_numpy(rng.normal(size=(400, 64)).astype(np.float32))
    gen = torch.from_numpy((rng.normal(size=(300, 64)) * 0.9 + 0.1).astype(np.float32))
    kw = dict(prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    # Finding (torch-fidelity 0.4.0, torch_fidelity/metric_prc.py): prc_features_to_metric(features_1,
    # features_2) takes features_1 = GENERATED (input1) and features_2 = REAL (input2), and reports
    # precision = share of features_1 inside the features_2 manifold, i.e. the correct orientation (the
    # 2022-05 .. v0.3.0 releases had the two swapped; 0.4.0 fixed it). Called with (real, gen) it swaps.
    tf = prc_features_to_metric(gen, real, **kw)
    tf_swapped = prc_features_to_metric(real, gen, **kw)
    ours = precision_recall(real, gen)
    # torch-fidelity returns float32 means (e.g. 0.9333333373); compare the underlying counts exactly.
    assert round(tf["precision"] * 300) == round(ours["precision"] * 300)
    assert round(tf["recall"] * 400) == round(ours["recall"] * 400)
    assert round(tf_swapped["recall"] * 300) == round(ours["precision"] * 300)
    assert 0.05 < ours["recall"] < 0.95 and ours["precision"] != ours["recall"]   # a case where order matters
    # The known-answer case as well: torch-fidelity 0.4.0 gives precision ~1, recall ~0 for a tight
    # generated cluster inside a wide real cloud, as we do.
    real_c, gen_c = cloud_and_cluster(6, n=300)
    tf_c = prc_features_to_metric(torch.from_numpy(gen_c), torch.from_numpy(real_c), **kw)
    ours_c = precision_recall(real_c, gen_c)
    assert tf_c["precision"] > 0.8 and tf_c["recall"] < 0.3
    assert round(tf_c["precision"] * 300) == round(ours_c["precision"] * 300)
    assert round(tf_c["recall"] * 300) == round(ours_c["recall"] * 300)


@pytest.mark.parametrize("real, gen, match", [
    (np.zeros(10), np.zeros((10, 3)), "2-d"),
    (np.zeros((10, 3)), np.zeros((10, 4)), "differ in width"),
    (np.zeros((3, 3)), np.zeros((10, 3)), "at least 4 samples"),
    (np.zeros((10, 3)), np.full((10, 3), np.nan), "NaN or infinite"),
    (np.zeros((10, 0)), np.zeros((10, 0)), "zero width"),
])
def test_bad_inputs_are_refused_clearly(real, gen, match):
    with pytest.raises(SidbenchError, match=match):
        precision_recall(real, gen)


def test_bad_parameters_are_refused():
    x = np.zeros((10, 3))
    with pytest.raises(SidbenchError, match="k must be"):
        precision_recall(x, x, k=0)
    with pytest.raises(SidbenchError, match="row_block"):
        precision_recall(x, x, row_block=0)
    with pytest.raises(SidbenchError, match="dtype"):
        precision_recall(x, x, dtype=torch.float16)


# ---- the VGG16 fc2 extractor ---------------------------------------------------------------------
SEED = 3


@pytest.fixture(scope="module")
def vgg_random():
    return build_extractor("vgg16-fc2", random_weights=True, seed=SEED)


@pytest.fixture(scope="module")
def vgg_state_dict(tmp_path_factory):
    """A torchvision-vgg16 state dict with the stand-in's seeded weights (~530 MB; deleted afterwards)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(vgg.randomize_(vgg.vgg16_net(), SEED).state_dict(), path)
    yield path
    path.unlink()


def test_vgg_random_weights_give_finite_4096d_features_at_any_size(vgg_random):
    assert vgg_random.is_random and vgg_random.dim == 4096
    for size in ((224, 224), (57, 83)):
        f = vgg_random(torch.rand(2, 3, *size) * 255)
        assert f.shape == (2, 4096) and torch.isfinite(f).all() and (f >= 0).all() and (f > 0).any()


def test_vgg_state_dict_loads_through_the_registry(vgg_state_dict, vgg_random, monkeypatch):
    # Our test file is not the published one, so lift the sha256-prefix check for this test only.
    spec = weights.WEIGHTS["vgg16-torchvision"]
    monkeypatch.setitem(weights.WEIGHTS, "vgg16-torchvision", dataclasses.replace(spec, sha256_prefix=None))
    loaded = build_extractor("vgg16-fc2", weights=str(vgg_state_dict))
    assert not loaded.is_random and loaded.weights["file"] == str(vgg_state_dict)
    x = torch.rand(2, 3, 64, 96) * 255
    torch.testing.assert_close(loaded(x), vgg_random(x))
    assert loaded.module.describe()["layer"] == "fc2_relu"


def test_vgg_matches_torch_fidelity_fc2_relu_at_224(vgg_state_dict, vgg_random):
    # Same weights through torch-fidelity's VGG16 extractor: at 224x224 (no resize on either side) the
    # features agree; at other sizes they differ by design (torch bilinear vs TF1-style bilinear).
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    tf = FeatureExtractorVGG16("vgg16-test", ["fc2_relu"], feature_extractor_weights_path=str(vgg_state_dict))
    x = (torch.rand(2, 3, 224, 224) * 255).to(torch.uint8)
    with torch.no_grad():
        theirs = tf(x)[0]
    torch.testing.assert_close(vgg_random(x.float()), theirs, rtol=1e-5, atol=1e-5)


def test_vgg_weights_file_prefix_is_checked(tmp_path):
    p = tmp_path / "vgg16-397923af.pth"
    p.write_bytes(b"not vgg")
    with pytest.raises(SidbenchError, match="397923af"):
        build_extractor("vgg16-fc2", weights=str(p))


def test_eval_pr_from_folders_and_in_memory_path_agree_with_the_metric(tmp_path):
    """`sidbench eval --pr` end to end (random-weight VGG16): equals precision_recall on the same features."""
    import numpy as np

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.extractors.registry import build_extractor
    from sidbench.eval.metrics.prdc import precision_recall

    gen, ref = random_images(8, 1, sizes=((40, 40),)), random_images(9, 2, sizes=((40, 40),))
    write_images(tmp_path / "gen", gen)
    write_images(tmp_path / "ref", ref)
    cfg = EvalConfig(fid=False, pr=True, density_coverage=True, random_weights=True, cache_dir=str(tmp_path / "c"),
                     progress=False)
    res = evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), cfg)
    vgg = build_extractor("vgg16-fc2", random_weights=True)
    f = lambda ims: vgg(torch.from_numpy(np.stack(ims).transpose(0, 3, 1, 2).astype(np.float32)))
    direct = precision_recall(f(ref), f(gen), k=3, density_coverage=True)
    for key in ("precision", "recall", "density", "coverage"):
        assert res["metrics"]["pr"][key] == pytest.approx(direct[key], abs=1e-9), key
    assert "fid" not in res["metrics"] and res["extractors"]["pr"]["name"] == "vgg16-fc2"
    again = evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), cfg)
    assert again["inputs"]["reference_pr"]["cache_hit"] is True
    assert again["metrics"]["pr"]["precision"] == res["metrics"]["pr"]["precision"]
