"""SiD-LSG's training prompts from a local stand-in for the hub: `sidbench prompts fetch aesthetics-6plus` lists the
authors' repository at the release commit, opens the archive named as the list first, extracts the list where
--out says, records what it extracted (md5, sha256, lines, commit) in a sidecar, and later uses the cache only;
offline it refuses with what to do; a list that does not read as prompts is not kept."""
import hashlib
import io
import json
import tarfile

import pytest
from typer.testing import CliRunner

from http_server import FileHost
from hub_server import publish, publish_listing
from sidbench.cli.app import app
from sidbench.core import download
from sidbench.data.prompts import KNOWN_PROMPT_LISTS, read_prompts
from sidbench.gen.releases import REPO, REVISION

LIST = "a lighthouse at dawn, oil painting\nportrait of a fox in a hat\nmisty forest, 35mm photo\n".encode()
MAIN_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def tar_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Downloads on (CI runs offline), an empty hub cache, HF_ENDPOINT at a local stand-in."""
    import huggingface_hub.constants as hc

    for k in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(k, "0")  # recorded, so that --offline's HF_HUB_OFFLINE=1 is undone after the test
        monkeypatch.delenv(k)
    monkeypatch.setattr(download, "_offline_override", None)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with FileHost() as host:
        monkeypatch.setenv("HF_ENDPOINT", host.url)
        yield host


def serve(host, revision, commit, files):
    publish_listing(host, REPO, revision, files)
    for name, body in files.items():
        publish(host, REPO, name, body, revision=revision, commit=commit)


def fetch(out, *extra):
    return CliRunner().invoke(app, ["prompts", "fetch", "aesthetics-6plus", "--out", str(out), *extra])


def gets(host):
    return [p for m, p, _ in host.log if m == "GET" and "/resolve/" in p]


def test_the_manifest_points_at_the_release_commit():
    spec = KNOWN_PROMPT_LISTS["aesthetics-6plus"]
    assert spec.hub == {"repo": REPO, "revision": REVISION, "fallback_revision": "main",
                        "member": "aesthetics_6_plus.txt"}
    assert spec.filename == "aesthetics_6_plus.txt" and spec.md5 is None and spec.unpinned


def test_fetch_extracts_the_list_records_it_and_then_uses_the_cache(hub, tmp_path):
    serve(hub, REVISION, REVISION, {
        "README.md": b"---\nlicense: apache-2.0\n---\n",
        "batch512_cfg1.51.51.5_t625_18789_v2.pkl": b"not asked for",
        "other.tar": tar_of({"notes.txt": b"x\n"}),
        "aesthetics_6_plus.tar": tar_of({"aesthetics_6_plus/aesthetics_6_plus.txt": LIST,
                                          "aesthetics_6_plus/readme.txt": b"y\n"}),
    })
    r = fetch(f"{tmp_path}/data/")
    assert r.exit_code == 0, r.output
    path = tmp_path / "data" / "aesthetics_6_plus.txt"
    md5, sha = hashlib.md5(LIST).hexdigest(), hashlib.sha256(LIST).hexdigest()
    assert path.read_bytes() == LIST and len(read_prompts(path)) == 3
    said = " ".join(r.output.split())
    assert f"3 lines, 3 distinct, md5 {md5}, sha256 {sha}" in said and f"at commit {REVISION}" in said
    assert "no published hash" in said
    side = json.loads((tmp_path / "data" / "aesthetics_6_plus.txt.json").read_text())
    assert (side["md5"], side["sha256"], side["lines"], side["commit"]) == (md5, sha, 3, REVISION)
    assert (side["archive"], side["member"]) == ("aesthetics_6_plus.tar", "aesthetics_6_plus/aesthetics_6_plus.txt")
    assert gets(hub) == [f"/{REPO}/resolve/{REVISION}/aesthetics_6_plus.tar"]  # the archive named as the list, only
    asked = len(hub.log)
    assert fetch(f"{tmp_path}/data/").exit_code == 0 and len(hub.log) == asked  # already there: nothing asked
    r = fetch(tmp_path / "again.txt", "--offline")  # a new place, offline: from the hub cache
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again.txt").read_bytes() == LIST and len(hub.log) == asked


def test_without_an_archive_at_the_release_commit_the_fallback_revision_is_listed(hub, tmp_path):
    serve(hub, REVISION, REVISION, {"batch512_cfg1.51.51.5_t625_18789_v2.pkl": b"not asked for"})
    serve(hub, "main", MAIN_COMMIT, {"prompts.tar": tar_of({"aesthetics_6_plus.txt": LIST})})
    r = fetch(tmp_path / "p.txt")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.txt").read_bytes() == LIST
    assert json.loads((tmp_path / "p.txt.json").read_text())["commit"] == MAIN_COMMIT
    assert gets(hub) == [f"/{REPO}/resolve/main/prompts.tar"]


def test_offline_with_nothing_cached_refuses_with_what_to_do(hub, tmp_path):
    serve(hub, REVISION, REVISION, {"aesthetics_6_plus.tar": tar_of({"aesthetics_6_plus.txt": LIST})})
    r = fetch(tmp_path / "p.txt", "--offline")
    assert r.exit_code == 2 and hub.log == []
    said = " ".join(r.output.split())
    assert "downloads are off" in said and f"huggingface.co/{REPO}/tree/{REVISION}" in said
    assert "Traceback" not in r.output and not (tmp_path / "p.txt").exists()


def test_a_list_that_does_not_read_as_prompts_is_not_kept_and_a_foreign_file_is_not_overwritten(hub, tmp_path):
    serve(hub, REVISION, REVISION, {"aesthetics_6_plus.tar": tar_of({"aesthetics_6_plus.txt": b"a cat\n\na dog\n"})})
    r = fetch(tmp_path / "p.txt")
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "aesthetics_6_plus.txt in UT-Austin-PML/SiD-LSG/aesthetics_6_plus.tar: line 2 is empty" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub-cache"]
    (tmp_path / "mine.txt").write_text("my own prompts\n")
    r = fetch(tmp_path / "mine.txt")
    assert r.exit_code == 2 and "already exists and is not aesthetics-6plus" in r.output
    assert (tmp_path / "mine.txt").read_text() == "my own prompts\n"


def test_no_archive_holding_the_list_is_named(hub, tmp_path):
    serve(hub, REVISION, REVISION, {"other.tar": tar_of({"notes.txt": b"x\n"})})
    r = fetch(tmp_path / "p.txt")
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and f"none of the archives of {REPO} at {REVISION} (other.tar) holds" in said
