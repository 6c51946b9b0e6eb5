import dataclasses
import hashlib

import pytest
import torch

from sidbench.core.errors import MissingWeightsError, SidbenchError
from sidbench.eval.extractors import inception, weights
from sidbench.eval.extractors.registry import build_extractor


def test_missing_weights_error_names_file_url_and_place(monkeypatch, tmp_path):
    # Offline (as CI runs); downloading on first use is tested against local hosts in test_weights_fetch.py.
    monkeypatch.setenv("SIDBENCH_WEIGHTS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as e:
        build_extractor("inception-v3-tf", mode="clean")
    msg = str(e.value)
    assert "inception-2015-12-05.pt" in msg and "nvlabs-fi-cdn.nvidia.com" in msg
    assert str(tmp_path / "nowhere") in msg and "sidbench weights fetch inception-2015-12-05" in msg


def test_sha256_prefix_of_pytorch_fid_file_is_checked(tmp_path):
    p = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    p.write_bytes(b"wrong")
    with pytest.raises(SidbenchError, match="6726825d"):
        weights.find_weights("pt_inception-2015-12-05", p)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(SidbenchError, match="inception-v3-tf"):
        build_extractor("inceptoin", mode="clean")
    with pytest.raises(SidbenchError, match="inception-2015-12-05"):
        weights.get_spec("nope")


def test_torchscript_file_loads_through_the_real_path(tmp_path, inception_random, monkeypatch):
    # A TorchScript file with the NVlabs interface (here: random weights) goes through torch.jit.load.
    p = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(inception.TFInceptionStandIn(seed=0)).save(str(p))
    with pytest.raises(SidbenchError, match="does not match the known hash f58cb9b6"):  # the published pin holds
        build_extractor("inception-v3-tf", mode="clean", weights=str(p))
    monkeypatch.setitem(weights.WEIGHTS, "inception-2015-12-05",
                        dataclasses.replace(weights.get_spec("inception-2015-12-05"), sha256=None))
    real_path = build_extractor("inception-v3-tf", mode="clean", weights=str(p))
    assert real_path.weights["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest() and not real_path.is_random
    x = torch.rand(2, 3, 299, 299) * 255
    torch.testing.assert_close(real_path(x), inception_random(x), rtol=1e-5, atol=1e-5)
    legacy = build_extractor("inception-v3-tf", mode="legacy_tensorflow", weights=str(p))
    assert legacy(torch.rand(2, 3, 64, 80) * 255).shape == (2, 2048)


def test_pytorch_fid_state_dict_loads(tmp_path):
    net = inception.randomize_(inception.fid_inception3(), seed=3)
    p = tmp_path / "pt.pth"
    torch.save(net.state_dict(), p)
    ext = build_extractor("inception-v3-pt", mode="legacy_pytorch", weights=None, random_weights=True, seed=3)
    loaded = inception.PytorchFidInceptionFeatures(inception.load_pytorch_fid_inception(str(p))).eval()
    x = torch.rand(1, 3, 299, 299) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ext(x))
