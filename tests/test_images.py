import glob
import os

import numpy as np
import pytest

from sidbench.core.errors import BadImageError, SidbenchError
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.data.images import list_image_files, open_source, to_uint8

from conftest import random_images, write_images


def test_listing_matches_clean_fid(tmp_path):
    from cleanfid.utils import EXTENSIONS

    write_images(tmp_path / "a", random_images(3, 0))
    write_images(tmp_path / "a" / "sub", random_images(2, 1), ext="jpg")
    write_images(tmp_path / "b", random_images(2, 2), ext="webp")
    (tmp_path / "notes.txt").write_text("not an image")
    theirs = sorted(f for ext in EXTENSIONS for f in glob.glob(os.path.join(str(tmp_path), f"**/*.{ext}"), recursive=True))
    assert list_image_files(tmp_path) == theirs and len(theirs) == 7


def test_modes_are_converted_to_rgb(tmp_path):
    from PIL import Image

    Image.new("L", (10, 12), 77).save(tmp_path / "grey.png")
    Image.new("RGBA", (10, 12), (1, 2, 3, 0)).save(tmp_path / "rgba.png")
    Image.new("P", (10, 12)).save(tmp_path / "pal.png")
    src = open_source(tmp_path)
    for i in range(len(src)):
        im = src.load(i)
        assert im.dtype == np.uint8 and im.shape == (12, 10, 3)


def test_input_contract_is_explicit():
    x = np.random.default_rng(0).uniform(-1, 1, size=(4, 8, 8, 3)).astype(np.float32)
    with pytest.raises(SidbenchError, match="explicit value range"):
        to_uint8(x)
    np.testing.assert_array_equal(to_uint8(x, "-1,1"), np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8))
    with pytest.raises(SidbenchError, match="outside the stated range"):
        to_uint8(x * 3, "-1,1")
    with pytest.raises(SidbenchError, match="NCHW"):
        to_uint8(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(SidbenchError, match="dtype"):
        to_uint8(np.zeros((2, 8, 8, 3), np.int32))
    assert to_uint8(np.zeros((8, 8, 3), np.uint8)).shape == (1, 8, 8, 3)


def test_array_files(tmp_path):
    arr = np.stack(random_images(5, 0, sizes=((16, 16),)))
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "b.npz", images=arr, labels=np.arange(5))
    for name in ("a.npy", "b.npz"):
        src = open_source(tmp_path / name)
        assert len(src) == 5
        np.testing.assert_array_equal(src.load(3), arr[3])
    np.save(tmp_path / "bad.npy", np.zeros((5, 16, 16), np.uint8))
    with pytest.raises(SidbenchError, match=r"\(N, H, W, 3\)"):
        open_source(tmp_path / "bad.npy")
    np.save(tmp_path / "f.npy", arr.astype(np.float32))
    with pytest.raises(SidbenchError, match="value range"):
        open_source(tmp_path / "f.npy")


def test_bad_inputs_fail_clearly(tmp_path, tiny):
    good = tmp_path / "good"
    write_images(good, random_images(6, 0))
    (tmp_path / "empty").mkdir()
    cfg = EvalConfig(use_cache=False, progress=False)
    with pytest.raises(SidbenchError, match="no images found"):
        evaluate(str(tmp_path / "empty"), str(good), cfg, extractor=tiny)
    with pytest.raises(SidbenchError, match="not found"):
        evaluate(str(tmp_path / "missing"), str(good), cfg, extractor=tiny)
    with pytest.raises(SidbenchError, match="asked for 10 images but the input holds only 6"):
        evaluate(str(good), str(good), EvalConfig(n=10, use_cache=False, progress=False), extractor=tiny)


def test_unreadable_image_names_the_file_or_is_skipped_and_counted(tmp_path, tiny):
    gen = tmp_path / "gen"
    write_images(gen, random_images(8, 0))
    broken = gen / "000003.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ref = tmp_path / "ref"
    write_images(ref, random_images(8, 1))
    with pytest.raises(BadImageError, match="000003.png"):
        evaluate(str(gen), str(ref), EvalConfig(use_cache=False, progress=False), extractor=tiny)
    res = evaluate(str(gen), str(ref), EvalConfig(use_cache=False, progress=False, skip_bad=True), extractor=tiny)
    assert res["inputs"]["generated"]["skipped"] == 1 and res["metrics"]["fid"]["n_gen"] == 7
    assert res["inputs"]["generated"]["skipped_files"][0]["file"].endswith("000003.png")
    assert any("skipped 1" in w for w in res["warnings"])
