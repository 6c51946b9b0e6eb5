import numpy as np
import pytest
import torchvision.transforms.functional as TF
from cleanfid.resize import build_resizer
from PIL import Image

from sidbench.data.images import pre_resize
from sidbench.data.preprocess import Preprocess

from conftest import random_images


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_resize_equals_clean_fid(mode):
    ref = build_resizer(mode)
    for im in random_images(6, 0, sizes=((256, 256), (512, 384), (37, 91))):
        ours = Preprocess(mode)(im)                       # CHW float32
        theirs = np.asarray(ref(im), np.float32).transpose(2, 0, 1)
        assert ours.shape == theirs.shape == (3, 299, 299)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_legacy_tensorflow_passes_pixels_through():
    im = random_images(1, 3)[0]
    out = Preprocess("legacy_tensorflow")(im)
    np.testing.assert_array_equal(out, im.transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize("size", [(512, 512), (480, 640), (641, 427), (301, 300)])
def test_pre_resize_is_torchvision_center_crop_then_lanczos(size):
    h, w = size
    im = random_images(1, 4, sizes=((h, w),))[0]
    pil = TF.center_crop(Image.fromarray(im), [min(h, w)])
    expected = np.asarray(pil.resize((256, 256), Image.LANCZOS))
    np.testing.assert_array_equal(pre_resize(im, 256), expected)


def test_unknown_mode_is_refused():
    with pytest.raises(Exception, match="unknown FID mode"):
        Preprocess("bilinear-ish")
