"""Agreement with clean-fid on the same images and the same (random-weight FID Inception) extractor."""
import numpy as np
import pytest
import torch
from cleanfid import fid as cfid

from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.extractors.registry import build_extractor
from sidbench.data.images import pre_resize

from conftest import random_images, write_images


def clean_fid(a, b, mode, extractor, **kw):
    return cfid.compute_fid(str(a), str(b), mode=mode, custom_feat_extractor=extractor, num_workers=0,
                            batch_size=16, device=torch.device("cpu"), verbose=False, **kw)


def assert_same_fid(ours, theirs):
    # The acceptance bound (1e-3 absolute) and, since random-weight FIDs are small, a relative one.
    assert abs(ours - theirs) <= 1e-3 and abs(ours - theirs) <= 1e-5 * abs(theirs), (ours, theirs)


@pytest.fixture
def small_folders(tmp_path):
    """Few images (each goes through a 299 px Inception twice: ours and clean-fid's), of mixed sizes."""
    write_images(tmp_path / "gen", random_images(10, 1))
    write_images(tmp_path / "ref", random_images(12, 2))
    return tmp_path / "gen", tmp_path / "ref"


def test_clean_mode_fid_equals_clean_fid(small_folders, inception_random):
    a, b = small_folders
    ours = evaluate(str(a), str(b), EvalConfig(random_weights=True, use_cache=False, progress=False),
                    extractor=inception_random)
    theirs = clean_fid(a, b, "clean", inception_random)  # the same network: what differs is the pipeline around it
    assert_same_fid(ours["metrics"]["fid"]["value"], theirs)
    assert ours["metrics"]["fid"]["singular_covariance"] is True
    assert not ours["protocol"]["comparable"]


def same_statistics_as_clean_fid(ours_npz, folder, extractor, mode, **kw):
    """Our saved statistics of ``folder`` = the mean and covariance of clean-fid's features of it. With the
    Fréchet formula checked against scipy's sqrtm (test_frechet) this is FID agreement, without paying
    clean-fid's 2048 x 2048 sqrtm (~15 s here) once per mode."""
    from sidbench.eval.stats import FeatureStats

    feats = cfid.get_folder_features(str(folder), extractor, num_workers=0, batch_size=16, device=torch.device("cpu"),
                                     mode=mode, verbose=False, **kw).astype(np.float64)
    st = FeatureStats.load(ours_npz)
    assert st.n == len(feats)
    assert np.allclose(st.mean, feats.mean(0), atol=1e-6, rtol=1e-5)
    assert np.allclose(st.cov, np.cov(feats, rowvar=False), atol=1e-6, rtol=1e-5)


def test_pre_resize_statistics_equal_clean_fids_with_the_protocol_transform(small_folders, inception_random, tmp_path):
    a, b = small_folders
    ours = evaluate(str(a), str(b), EvalConfig(pre_resize=32, use_cache=False, progress=False), extractor=inception_random,
                    save_stats=str(tmp_path / "a.npz"))
    same_statistics_as_clean_fid(tmp_path / "a.npz", a, inception_random, "clean",
                                 custom_image_tranform=lambda im: pre_resize(im, 32))
    assert ours["preprocessing"]["pre_resize"] == 32


def test_legacy_tensorflow_statistics_equal_clean_fids(tmp_path):
    # clean-fid batches raw images in this mode, so each folder holds one size.
    a, b = tmp_path / "a", tmp_path / "b"
    write_images(a, random_images(8, 5, sizes=((64, 64),)))
    write_images(b, random_images(9, 6, sizes=((64, 64),)))
    ext = build_extractor("inception-v3-tf", mode="legacy_tensorflow", random_weights=True)
    evaluate(str(a), str(b), EvalConfig(mode="legacy_tensorflow", use_cache=False, progress=False), extractor=ext,
             save_stats=str(tmp_path / "a.npz"))
    same_statistics_as_clean_fid(tmp_path / "a.npz", a, ext, "legacy_tensorflow")


def test_kid_equals_clean_fid_kernel_distance_on_the_same_features(small_folders, inception_random, tmp_path):
    a, b = small_folders
    cfg = EvalConfig(kid=True, kid_subsets=10, kid_subset_size=8, kid_seed=7, use_cache=False, progress=False)
    ours = evaluate(str(a), str(b), cfg, extractor=inception_random, save_stats=str(tmp_path / "gen.npz"))
    ext = inception_random
    fa = cfid.get_folder_features(str(a), ext, num_workers=0, batch_size=16, device=torch.device("cpu"), verbose=False)
    fb = cfid.get_folder_features(str(b), ext, num_workers=0, batch_size=16, device=torch.device("cpu"), verbose=False)
    np.random.seed(7)
    theirs = cfid.kernel_distance(fa.astype(np.float64), fb.astype(np.float64), num_subsets=10, max_subset_size=8)
    assert ours["metrics"]["kid"]["mean"] == pytest.approx(theirs, rel=1e-4, abs=1e-7)


def test_results_file_records_how_it_was_made(two_folders, tiny, tmp_path):
    a, b = two_folders
    out = tmp_path / "r.json"
    evaluate(str(a), str(b), EvalConfig(use_cache=False, progress=False, pre_resize=32), extractor=tiny, out=str(out))
    import json

    r = json.loads(out.read_text())
    assert r["schema"] == "sidbench.results/1"
    assert r["inputs"]["generated"]["count"] == 20 and r["inputs"]["reference"]["count"] == 24
    assert r["preprocessing"]["fid_mode"] == "clean" and r["preprocessing"]["pre_resize"] == 32
    assert r["extractors"]["fid"]["name"] == "tiny-test"
    assert r["provenance"]["packages"]["torch"] and r["provenance"]["command"]
    assert "created" in r and r["metrics"]["fid"]["n_gen"] == 20
