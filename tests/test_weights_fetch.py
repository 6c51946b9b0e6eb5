"""Weights on first use, against hosts on 127.0.0.1: a missing known file is downloaded (by URL into the weights
folder, or through huggingface_hub into its cache when the hub hosts it), verified and only then used; the second
use sends nothing; a corrupt or short file is refused and not kept; a cut transfer resumes; offline refuses with
the fetch command; and a result computed from a download carries the served file's sha256."""
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import TinyFeatures
from http_server import FileHost
from hub_server import COMMIT, publish
from sidbench.cli.app import app
from sidbench.core import download as dl
from sidbench.core.errors import MissingWeightsError
from sidbench.eval.extractors import registry, weights

BODY = bytes(range(256)) * 2048  # 512 KiB
SHA = hashlib.sha256(BODY).hexdigest()
REPO, HUB_FILE = "lab/net", "model.bin"


@pytest.fixture(autouse=True)
def online(monkeypatch, tmp_path):
    """Downloads on (CI runs offline), a fresh weights folder and hub cache for each test."""
    import huggingface_hub.constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_offline_override", None)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # read by huggingface_hub at import
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("SIDBENCH_WEIGHTS", str(tmp_path / "weights"))


@pytest.fixture
def host(monkeypatch):
    with FileHost() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)  # the hub stand-in
        yield h


def by_url(monkeypatch, host, **pins):
    """A known file served at host/w/net.bin (pins: sha256, size...)."""
    spec = weights.WeightsSpec("net", "net.bin", host.url + "/w/net.bin", "tests", pin_source="tests", **pins)
    monkeypatch.setitem(weights.WEIGHTS, "net", spec)
    return spec


def on_hub(monkeypatch, **pins):
    spec = weights.hub_spec("hubnet", "hubnet.bin", REPO, HUB_FILE, "tests", **pins)
    monkeypatch.setitem(weights.WEIGHTS, "hubnet", spec)
    return spec


def gets(host):
    return [entry for entry in host.log if entry[0] == "GET"]


def test_first_use_downloads_into_the_weights_folder_and_the_second_finds_it(monkeypatch, host, tmp_path):
    host.files["/w/net.bin"] = BODY
    by_url(monkeypatch, host, sha256=SHA)
    path, sha = weights.find_weights("net")
    assert path == tmp_path / "weights" / "net.bin" and path.read_bytes() == BODY and sha == SHA
    assert weights.find_weights("net") == (path, SHA)
    assert len(gets(host)) == 1


@pytest.mark.parametrize("served, pins, problem", [
    (BODY[:-1] + b"\x00", {"sha256": SHA}, "not the pinned"),
    (BODY[:1000], {"size": len(BODY)}, "1,000 bytes, not the pinned"),
    (b"other" + BODY[5:], {"sha256_prefix": SHA[:8]}, "does not start with the pinned prefix"),
], ids=["corrupt", "short", "wrong-prefix"])
def test_a_download_that_fails_its_pin_is_refused_and_not_kept(monkeypatch, host, tmp_path, served, pins, problem):
    host.files["/w/net.bin"] = served
    by_url(monkeypatch, host, **pins)
    with pytest.raises(dl.DownloadError, match=problem):
        weights.find_weights("net")
    assert list((tmp_path / "weights").iterdir()) == []  # neither the file, nor its .part, nor the lock


def test_an_interrupted_download_resumes_where_it_stopped(monkeypatch, host, tmp_path):
    host.files["/w/net.bin"] = BODY
    host.cut_after["/w/net.bin"] = 200_000
    by_url(monkeypatch, host, sha256=SHA, size=len(BODY))
    with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
        weights.find_weights("net")
    kept = (tmp_path / "weights" / "net.bin.part").stat().st_size
    assert 0 < kept <= 200_000 and not (tmp_path / "weights" / "net.bin").exists()
    assert weights.find_weights("net")[1] == SHA
    assert gets(host)[-1][2] == f"bytes={kept}-"


@pytest.mark.parametrize("where", ["url", "hub"])
@pytest.mark.parametrize("how", ["SIDBENCH_OFFLINE", "HF_HUB_OFFLINE", "flag"])
def test_offline_refuses_with_the_fetch_command_and_sends_nothing(monkeypatch, host, tmp_path, where, how):
    host.files["/w/net.bin"] = BODY
    publish(host, REPO, HUB_FILE, BODY)
    name = "net" if where == "url" else "hubnet"
    spec = by_url(monkeypatch, host) if where == "url" else on_hub(monkeypatch)
    if how == "flag":
        dl.set_offline(True)
    else:
        monkeypatch.setenv(how, "1")
    with pytest.raises(MissingWeightsError) as e:
        weights.find_weights(name)
    msg = str(e.value)
    assert "downloads are off" in msg and f"sidbench weights fetch {name}" in msg and spec.url in msg
    assert str(tmp_path / "weights" / spec.filename) in msg
    assert host.log == []


def test_a_hub_file_goes_through_the_hub_cache_at_its_revision(monkeypatch, host, tmp_path):
    publish(host, REPO, HUB_FILE, BODY)
    on_hub(monkeypatch, sha256=SHA, pin_source=weights.HUB_PIN)
    path, sha = weights.find_weights("hubnet")
    assert sha == SHA and path.read_bytes() == BODY
    assert path == tmp_path / "hub" / "models--lab--net" / "snapshots" / COMMIT / HUB_FILE
    assert (tmp_path / "hub" / "models--lab--net" / "blobs" / SHA).is_file()  # the blob is named by the LFS oid
    requests = len(host.log)
    assert weights.find_weights("hubnet") == (path, SHA) and len(host.log) == requests  # the cache, no request
    assert not (tmp_path / "weights").exists()


def test_a_hub_file_that_fails_its_pin_is_removed_from_the_cache(monkeypatch, host, tmp_path):
    publish(host, REPO, HUB_FILE, b"tampered" + BODY[8:])
    on_hub(monkeypatch, sha256=SHA)
    with pytest.raises(dl.DownloadError, match="removed from the hub cache, not kept"):
        weights.find_weights("hubnet")
    repo = tmp_path / "hub" / "models--lab--net"
    assert not list((repo / "blobs").iterdir()) and not (repo / "snapshots" / COMMIT / HUB_FILE).exists()


def test_a_cut_hub_transfer_resumes_with_a_range_request(monkeypatch, host):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)  # it keeps what it read in whole chunks (10 MiB)
    publish(host, REPO, HUB_FILE, BODY)
    host.cut_after[f"/{REPO}/resolve/main/{HUB_FILE}"] = 100_000
    on_hub(monkeypatch, sha256=SHA)
    assert weights.find_weights("hubnet")[1] == SHA
    ranges = [r for _, _, r in gets(host) if r]
    assert len(gets(host)) == 2 and ranges and int(ranges[0].split("=")[1].rstrip("-")) > 0


def test_a_mirror_url_fetches_a_hub_file_into_the_weights_folder(monkeypatch, host, tmp_path):
    host.files["/mirror/model.bin"] = BODY
    on_hub(monkeypatch, sha256=SHA)
    res = CliRunner().invoke(app, ["weights", "fetch", "hubnet", "--url", host.url + "/mirror/model.bin"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "weights" / "hubnet.bin").read_bytes() == BODY and SHA in res.output
    assert weights.find_weights("hubnet") == (tmp_path / "weights" / "hubnet.bin", SHA)  # the folder wins


def test_weights_list_shows_each_pin_its_source_and_where_the_file_is(monkeypatch, host, tmp_path):
    publish(host, REPO, HUB_FILE, BODY)
    on_hub(monkeypatch, sha256=SHA, pin_source=weights.HUB_PIN)
    weights.find_weights("hubnet")
    res = CliRunner().invoke(app, ["weights", "list", "--json"])
    listed = {w["name"]: w for w in json.loads(res.stdout)["weights"]}
    assert listed["hubnet"]["store"] == "hub cache" and listed["hubnet"]["present"] is True
    assert listed["hubnet"]["pin"] == SHA and listed["hubnet"]["pin_source"] == weights.HUB_PIN
    assert listed["hubnet"]["revision"] == "main" and listed["hubnet"]["hub_repo"] == REPO
    inception = listed["inception-2015-12-05"]
    assert inception["pin"] == "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
    assert "k-diffusion" in inception["pin_source"] and inception["store"] == "weights folder"
    assert listed["vgg16-torchvision"]["pin"] == "397923af... (prefix)"
    for w in listed.values():  # every pin names its source; every unpinned file says so
        assert (w["pin"] == "not pinned") == (w["pin_source"] is None), w["name"]
    table = CliRunner().invoke(app, ["weights", "list"]).stdout
    assert "k-diffusion" in table and "not here (goes to the hub cache)" in table


def test_weights_fetch_offline_refuses_with_the_command(monkeypatch, host):
    host.files["/w/net.bin"] = BODY
    by_url(monkeypatch, host)
    res = CliRunner().invoke(app, ["weights", "fetch", "net", "--offline"])
    assert res.exit_code == 2 and "sidbench weights fetch net" in res.output and host.log == []


def test_eval_downloads_its_extractor_weights_and_records_the_served_hash(monkeypatch, host, two_folders, tmp_path):
    buf = io.BytesIO()
    torch.save(TinyFeatures(16, seed=7).state_dict(), buf)
    served = buf.getvalue()
    host.files["/w/net.bin"] = served

    def load(path, mode):
        net = TinyFeatures(16)
        net.load_state_dict(torch.load(path, weights_only=True))
        return net

    by_url(monkeypatch, host)
    monkeypatch.setitem(registry._REGISTRY, "served-net", registry.ExtractorSpec(
        "served-net", "a tiny network whose weights a host serves", 16, ("clean",), "net", load,
        lambda seed, mode: TinyFeatures(16, seed)))
    a, b = two_folders
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "--images", str(a), "--ref", str(b), "--extractor", "served-net",
                                   "--no-cache", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "weights" / "net.bin").read_bytes() == served
    recorded = json.dumps(json.loads(out.read_text()))
    assert hashlib.sha256(served).hexdigest() in recorded and len(gets(host)) == 1


@pytest.mark.parametrize("verb", [["eval"], ["stats", "compute"], ["generate"], ["export"], ["distill"], ["weights", "fetch"],
                                  ["data", "fetch"], ["prompts", "fetch"]])
def test_every_verb_that_can_download_takes_offline(verb):
    res = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "200"})
    assert "--offline" in res.output and "SIDBENCH_OFFLINE=1" in res.output


def test_eval_offline_refuses_missing_weights_with_the_fetch_command(monkeypatch, host, two_folders):
    host.files["/w/net.bin"] = b"never sent"
    by_url(monkeypatch, host)
    monkeypatch.setitem(registry._REGISTRY, "served-net", registry.ExtractorSpec(
        "served-net", "a tiny network whose weights a host serves", 16, ("clean",), "net", lambda p, m: None,
        lambda seed, mode: TinyFeatures(16, seed)))
    a, b = two_folders
    res = CliRunner().invoke(app, ["eval", "--images", str(a), "--ref", str(b), "--extractor", "served-net",
                                   "--no-cache", "--offline", "-q"])
    assert res.exit_code == 2 and "sidbench weights fetch net" in res.output and "Traceback" not in res.output
    assert host.log == []


def _tiny_pickscore_on_the_hub(host, tmp_path):
    """A tiny CLIP in transformers layout (model + tokenizer files), served as PickScore_v1 at its pinned commit."""
    from hub_server import publish_listing
    from sidbench.eval.metrics import preference as P
    from sidbench.eval.metrics.clip_score import random_hf_clip

    small = P.pickscore_config(text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2),
                               vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, patch_size=32), projection_dim=16)
    net, tok = random_hf_clip(small, 3, pad_token="!")
    folder = tmp_path / "pickscore"
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"a pickled copy of the same weights: never fetched"
    publish_listing(host, P.PICKSCORE_REPO, P.PICKSCORE_REVISION, files)
    for name, body in files.items():
        publish(host, P.PICKSCORE_REPO, name, body, revision=P.PICKSCORE_REVISION, commit=P.PICKSCORE_REVISION)
    return folder


def test_pickscore_without_a_folder_is_fetched_from_the_hub_once_and_scores_as_the_folder(monkeypatch, host,
                                                                                          tmp_path):
    import numpy as np

    from sidbench.eval.metrics import preference as P

    folder = _tiny_pickscore_on_the_hub(host, tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), np.uint8)
    prompts = ["a red cube on a table", "two dogs"]
    got = P.load_pickscore_scorer(device="cpu")
    want = P.load_pickscore_scorer(weights=str(folder), device="cpu")
    assert torch.equal(got.update(images, prompts), want.update(images, prompts))
    assert Path(got.info["weights"]).parts[-2:] == ("snapshots", P.PICKSCORE_REVISION)
    fetched = {p.rsplit("/", 1)[1] for m, p, _ in gets(host) if "/resolve/" in p}
    assert "model.safetensors" in fetched and "pytorch_model.bin" not in fetched
    asked = len(host.log)
    monkeypatch.setattr(dl, "_offline_override", True)  # the second use: the hub cache, nothing asked
    again = P.load_pickscore_scorer(device="cpu")
    assert torch.equal(again.update(images, prompts), want.update(images, prompts)) and len(host.log) == asked


def test_the_torchmetrics_clip_variant_offline_without_a_folder_says_what_to_do(monkeypatch, host):
    from sidbench.eval.metrics.clip_score import load_hf_clip

    monkeypatch.setattr(dl, "_offline_override", True)
    with pytest.raises(dl.OfflineError, match=r"openai/clip-vit-large-patch14 is not in the Hugging Face cache and "
                                              r"downloads are off .*pass --clip-weights DIR"):
        load_hf_clip()
    assert host.log == []
