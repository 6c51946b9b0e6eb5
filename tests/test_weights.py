import hashlib

import pytest
import torch

from sidbench.core.errors import MissingWeightsError, SidbenchError
from sidbench.eval.extractors import inception, weights
from sidbench.eval.extractors.registry import build_extractor


@pytest.fixture
def fake_entry(monkeypatch):
    payload = b"not really an inception network " * 5000
    spec = weights.WeightsSpec("test-net", "test-net.bin", "http://unused.invalid/test-net.bin", "tests",
                               sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(weights.WEIGHTS, "test-net", spec)
    return spec, payload


def test_fetch_downloads_and_verifies(server, fake_entry, tmp_path):
    www, base = server
    spec, payload = fake_entry
    (www / "test-net.bin").write_bytes(payload)
    path, sha = weights.fetch("test-net", tmp_path / "w", url=f"{base}/test-net.bin", progress=False)
    assert path.read_bytes() == payload and sha == spec.sha256
    assert weights.find_weights("test-net", tmp_path / "w") == (path, sha)


def test_fetch_refuses_a_wrong_file_and_leaves_nothing(server, fake_entry, tmp_path):
    www, base = server
    (www / "test-net.bin").write_bytes(b"tampered")
    with pytest.raises(SidbenchError, match="does not match the known hash"):
        weights.fetch("test-net", tmp_path / "w", url=f"{base}/test-net.bin", progress=False)
    assert not any((tmp_path / "w").iterdir())


def test_fetch_reports_unreachable_url(server, fake_entry, tmp_path):
    _, base = server
    with pytest.raises(SidbenchError, match="could not download"):
        weights.fetch("test-net", tmp_path / "w", url=f"{base}/missing.bin", progress=False)


def test_missing_weights_error_names_file_url_and_place(monkeypatch, tmp_path):
    monkeypatch.setenv("SIDBENCH_WEIGHTS", str(tmp_path / "nowhere"))
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


def test_torchscript_file_loads_through_the_real_path(tmp_path, inception_random):
    # A TorchScript file with the NVlabs interface (here: random weights) goes through torch.jit.load.
    p = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(inception.TFInceptionStandIn(seed=0)).save(str(p))
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
