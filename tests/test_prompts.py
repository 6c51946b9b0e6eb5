"""Prompt lists: reading, describing, seeded COCO samples through the CLI, and verified fetches."""
import hashlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sidbench import __version__
from sidbench.data import prompts
from sidbench.core.errors import SidbenchError
from sidbench.cli.prompts import prompts_app

SHARED_CAPTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sid-lsg" / "captions.txt"

# The main CLI will mount the sub-app with add_typer; mount it the same way here.
app = typer.Typer()
app.add_typer(prompts_app, name="prompts")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["prompts", *map(str, args)])


@pytest.fixture
def coco(tmp_path):
    """A small COCO captions file: 6 images, 3-5 captions each, annotations listed out of id order."""
    images = [{"id": img, "file_name": f"COCO_val2014_{img:012d}.jpg", "width": 640, "height": 480}
              for img in (42, 7, 99, 13, 5, 61)]
    anns, aid = [], 1000
    for k, im in enumerate(images):
        for j in range(3 + k % 3):
            aid += 11
            anns.append({"image_id": im["id"], "id": aid, "caption": f"A photo {j} of image {im['id']}."})
    anns[4]["caption"] = "  A dog\non a  skateboard \n"   # newline + double spaces + padding
    anns.reverse()                                           # order in the file must not matter
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": anns}))
    return path, images, anns


def test_coco_end_to_end(coco, tmp_path):
    ann, images, anns = coco
    out = tmp_path / "a" / "prompts.txt"
    r = invoke("coco", "--annotations", ann, "--n", 12, "--seed", 3, "--out", out)
    assert r.exit_code == 0, r.output
    assert "NOT the GigaGAN COCO-2014 30K list" in r.output and "coco2014-30k-resampled" in r.output
    data = out.read_bytes()
    lines = data.decode().split("\n")
    assert data.endswith(b"\n") and lines[-1] == "" and len(lines) == 13
    captions = {" ".join(a["caption"].split()) for a in anns}
    assert set(lines[:-1]) <= captions
    assert all(line == line.strip() and "  " not in line for line in lines[:-1])
    assert len(set(lines[:-1])) == 12                     # sampled without replacement, all captions distinct
    assert prompts.read_prompts(out) == lines[:-1]

    side = json.loads((tmp_path / "a" / "prompts.txt.json").read_text())
    assert side["protocol"] == "coco2014-30k-resampled"
    assert side["n"] == 12 and side["seed"] == 3 and side["one_caption_per_image"] is False
    assert side["source_name"] == "captions_val2014.json"
    assert side["source_sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()
    assert side["prompts_md5"] == hashlib.md5(data).hexdigest()
    assert side["tool_version"] == __version__ and side["created"] and "default_rng" in side["sampling"]
    assert side["loader"] == "json" and side["available"] == len(anns)

    # Same seed -> byte-identical list; another seed -> a different one.
    again = tmp_path / "again.txt"
    assert invoke("coco", "--annotations", ann, "--n", 12, "--seed", 3, "--out", again).exit_code == 0
    assert again.read_bytes() == data
    other = tmp_path / "other.txt"
    assert invoke("coco", "--annotations", ann, "--n", 12, "--seed", 4, "--out", other).exit_code == 0
    assert other.read_bytes() != data

    # The newline caption is normalised when it is drawn: draw everything to be sure.
    full = tmp_path / "full.txt"
    assert invoke("coco", "--annotations", ann, "--n", len(anns), "--seed", 0, "--out", full).exit_code == 0
    assert "A dog on a skateboard" in prompts.read_prompts(full)


def test_coco_one_per_image_and_ids_file(coco, tmp_path):
    ann, images, anns = coco
    out, ids = tmp_path / "p.txt", tmp_path / "ids.tsv"
    r = invoke("coco", "--annotations", ann, "--n", 5, "--seed", 1, "--out", out, "--one-per-image", "--ids-out", ids)
    assert r.exit_code == 0, r.output
    got = prompts.read_prompts(out)
    rows = [line.split("\t") for line in ids.read_text().splitlines()]
    assert len(got) == len(rows) == 5
    ids_drawn = [int(i) for i, _ in rows]
    assert len(set(ids_drawn)) == 5
    files = {im["id"]: im["file_name"] for im in images}
    by_image = {}
    for a in anns:
        by_image.setdefault(a["image_id"], set()).add(" ".join(a["caption"].split()))
    for prompt, (img, fname) in zip(got, rows):
        assert fname == files[int(img)] and prompt in by_image[int(img)]
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["one_caption_per_image"] is True and side["protocol"] == "coco2017-5k-resampled"
    assert side["image_ids_file"] == str(ids)

    # n larger than the number of images: a clean error, nothing written.
    bad = tmp_path / "bad.txt"
    r = invoke("coco", "--annotations", ann, "--n", 7, "--seed", 1, "--out", bad, "--one-per-image")
    assert r.exit_code == 2 and "error:" in r.output and "only 6 images" in r.output
    assert not bad.exists()


def test_coco_datasets_loader_gives_the_same_file(coco, tmp_path):
    ann, _, _ = coco
    for one in (False, True):
        flag = ["--one-per-image"] if one else []
        a, b = tmp_path / f"json{one}.txt", tmp_path / f"ds{one}.txt"
        ia, ib = tmp_path / f"json{one}.ids", tmp_path / f"ds{one}.ids"
        assert invoke("coco", "--annotations", ann, "--n", 5, "--seed", 9, "--out", a, "--ids-out", ia, *flag).exit_code == 0
        r = invoke("coco", "--annotations", ann, "--n", 5, "--seed", 9, "--out", b, "--ids-out", ib,
                   "--loader", "datasets", *flag)
        assert r.exit_code == 0, r.output
        assert a.read_bytes() == b.read_bytes() and ia.read_bytes() == ib.read_bytes()
        sa, sb = (json.loads(Path(str(p) + ".json").read_text()) for p in (a, b))
        assert sb["loader"] == "datasets"
        for key in ("prompts_md5", "source_sha256", "seed", "sampling", "available", "n_annotations"):
            assert sa[key] == sb[key]


def test_sample_coco_errors(tmp_path, coco):
    ann, _, anns = coco
    with pytest.raises(SidbenchError, match=f"only {len(anns)} non-empty captions"):
        prompts.sample_coco_captions(ann, len(anns) + 1, 0)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(SidbenchError, match="not valid JSON"):
        prompts.sample_coco_captions(broken, 1, 0)
    nokey = tmp_path / "nokey.json"
    nokey.write_text(json.dumps({"images": []}))
    with pytest.raises(SidbenchError, match="missing key 'annotations'"):
        prompts.sample_coco_captions(nokey, 1, 0)
    nocap = tmp_path / "nocap.json"
    nocap.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                 "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(SidbenchError, match="has no 'caption'"):
        prompts.sample_coco_captions(nocap, 1, 0)
    with pytest.raises(SidbenchError, match="has no 'caption'"):
        prompts.sample_coco_captions(nocap, 1, 0, loader="datasets")
    with pytest.raises(SidbenchError, match="not found"):
        prompts.sample_coco_captions(tmp_path / "missing.json", 1, 0)
    r = invoke("coco", "--annotations", broken, "--n", 1, "--seed", 0, "--out", tmp_path / "x.txt")
    assert r.exit_code == 2 and "error:" in r.output and not (tmp_path / "x.txt").exists()


def test_read_prompts_normalises_and_refuses_empty_lines(tmp_path):
    p = tmp_path / "p.txt"
    p.write_bytes(b"a cat\r\na dog\rcaf\xc3\xa9\r\n")
    assert prompts.read_prompts(p) == ["a cat", "a dog", "café"]
    p.write_bytes(b"one\ntwo")                                   # no final newline
    assert prompts.read_prompts(p) == ["one", "two"]
    p.write_bytes(b"one\ntwo\n")                                 # final newline: no empty prompt
    assert prompts.read_prompts(p) == ["one", "two"]
    p.write_bytes(b"one\r\n\r\nthree\r\n")
    with pytest.raises(SidbenchError, match="line 2 is empty"):
        prompts.read_prompts(p)
    p.write_bytes(b"one\ntwo\n\n")                               # two final newlines: line 3 is empty
    with pytest.raises(SidbenchError, match="line 3 is empty"):
        prompts.read_prompts(p)
    p.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(SidbenchError, match="not UTF-8.*line 2"):
        prompts.read_prompts(p)
    with pytest.raises(SidbenchError, match="not found"):
        prompts.read_prompts(tmp_path / "nope.txt")


def test_write_prompts_refuses_newlines_and_writes_sidecar(tmp_path):
    out = tmp_path / "w.txt"
    with pytest.raises(SidbenchError, match="line break"):
        prompts.write_prompts(out, ["fine", "not\nfine"], sidecar={})
    assert not out.exists() and not prompts.sidecar_path(out).exists()
    meta = prompts.write_prompts(out, ["b", "a", "b"], sidecar={"seed": 1, "source": "hand"})
    assert out.read_bytes() == b"b\na\nb\n"
    assert json.loads(prompts.sidecar_path(out).read_text()) == meta
    assert meta["n"] == 3 and meta["seed"] == 1 and meta["tool_version"] == __version__


def test_check_small_file(tmp_path):
    p = tmp_path / "small.txt"
    p.write_bytes(b"a red car\na blue bus\na red car\n")
    r = invoke("check", p)
    assert r.exit_code == 0, r.output
    assert "lines:    3" in r.output and "distinct: 2" in r.output
    assert hashlib.md5(p.read_bytes()).hexdigest() in r.output and "recognised: no" in r.output
    r = invoke("check", p, "--json")
    d = json.loads(r.output)
    assert d["lines"] == 3 and d["distinct"] == 2 and d["known_list"] is None
    assert d["md5"] == prompts.prompts_md5(p)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"x\n\ny\n")
    r = invoke("check", bad)
    assert r.exit_code == 2 and "line 2 is empty" in r.output


def test_check_recognises_a_known_list_also_with_other_line_endings(tmp_path, monkeypatch):
    body = b"first caption\nsecond caption\n"
    spec = prompts.KnownPromptList("test-list", "Test list", "test-protocol", hashlib.md5(body).hexdigest(),
                                   2, 2, "http://unused.invalid/x.txt", "x.txt")
    monkeypatch.setitem(prompts.KNOWN_PROMPT_LISTS, spec.name, spec)
    p = tmp_path / "crlf.txt"
    p.write_bytes(body.replace(b"\n", b"\r\n"))
    d = prompts.describe_prompts(p)
    assert d["known_list"] == "test-list" and d["known_list_match"] == "normalised"
    p.write_bytes(body)
    assert prompts.describe_prompts(p)["known_list_match"] == "exact"


def test_check_gigagan_list():
    if not SHARED_CAPTIONS.is_file():
        pytest.skip(f"{SHARED_CAPTIONS} not present")
    r = invoke("check", SHARED_CAPTIONS)
    assert r.exit_code == 0, r.output
    assert "lines:    30000" in r.output and "distinct: 29436" in r.output
    assert "20ed79e6a73d7b8fdbfb6ebc8c5c7e99" in r.output
    assert "recognised: GigaGAN COCO-2014 30K list (coco2014-30k protocol)" in r.output
    d = prompts.describe_prompts(SHARED_CAPTIONS)
    known = prompts.KNOWN_PROMPT_LISTS["gigagan-coco2014-30k"]
    assert d["known_list"] == known.name and d["known_list_match"] == "exact"
    assert (d["lines"], d["distinct"], d["md5"], d["sha256"]) == (known.lines, known.distinct, known.md5, known.sha256)


def _fake_list(monkeypatch, md5):
    spec = prompts.KnownPromptList("test-list", "Test list", "test-protocol", md5, 3, 3,
                                   "http://unused.invalid/list.txt", "list.txt")
    monkeypatch.setitem(prompts.KNOWN_PROMPT_LISTS, spec.name, spec)
    return spec


@pytest.fixture
def downloads_on(monkeypatch):
    """CI runs with HF_HUB_OFFLINE=1 (and a test before may have set it): a download test turns downloads on."""
    from sidbench.core import download as dl

    for k in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE"):
        monkeypatch.setenv(k, "0")  # recorded first, so whatever was there comes back after the test
        monkeypatch.delenv(k)
    monkeypatch.setattr(dl, "_offline_override", None)


def test_fetch_verifies_md5(server, tmp_path, monkeypatch, downloads_on):
    www, base = server
    body = b"one\ntwo\nthree\n"
    (www / "list.txt").write_bytes(body)
    _fake_list(monkeypatch, hashlib.md5(body).hexdigest())
    dest = tmp_path / "dl" / "got.txt"
    r = invoke("fetch", "test-list", "--out", dest, "--url", f"{base}/list.txt")
    assert r.exit_code == 0, r.output
    assert dest.read_bytes() == body and "OK" in r.output
    assert sorted(p.name for p in dest.parent.iterdir()) == ["got.txt"]
    # Already there and correct: returned as is.
    assert prompts.fetch_prompt_list("test-list", dest, url=f"{base}/list.txt") == dest


def test_fetch_wrong_md5_leaves_nothing(server, tmp_path, monkeypatch, downloads_on):
    www, base = server
    (www / "list.txt").write_bytes(b"one\ntwo\nthree\n")
    _fake_list(monkeypatch, "0" * 32)
    folder = tmp_path / "dl"
    r = invoke("fetch", "test-list", "--out", folder / "got.txt", "--url", f"{base}/list.txt")
    assert r.exit_code == 2 and "error:" in r.output and "md5" in r.output
    assert not folder.exists() or not any(folder.iterdir())
    with pytest.raises(SidbenchError, match="could not download"):
        prompts.fetch_prompt_list("test-list", folder / "got.txt", url=f"{base}/missing.txt")
    assert not folder.exists() or not any(folder.iterdir())
    r = invoke("fetch", "no-such-list", "--out", folder / "x.txt")
    assert r.exit_code == 2 and "unknown prompt list" in r.output


# --------------------------------------------------------------------------------------------
# Manifests (the top-level prompts/ folder, package data sidbench.data.prompt_sets)
# --------------------------------------------------------------------------------------------

def _packaged_folder(tmp_path):
    """A copy of the packaged manifests (and lists) to break one field at a time."""
    from importlib import resources

    folder = tmp_path / "prompt_sets"
    folder.mkdir()
    for entry in resources.files(prompts.MANIFEST_PACKAGE).iterdir():
        if entry.name.endswith((".json", ".txt")):
            (folder / entry.name).write_bytes(entry.read_bytes())
    return folder


def test_manifests_load_into_the_known_lists(tmp_path):
    from importlib import resources

    assert prompts.load_manifests() == prompts.KNOWN_PROMPT_LISTS
    assert {"gigagan-coco2014-30k", "demo-world"} <= set(prompts.KNOWN_PROMPT_LISTS)
    root = resources.files(prompts.MANIFEST_PACKAGE)
    for name, spec in prompts.KNOWN_PROMPT_LISTS.items():
        doc = json.loads(root.joinpath(f"{name}.json").read_text(encoding="utf-8"))
        assert list(doc) == [k for k in prompts.MANIFEST_FIELDS + prompts.OPTIONAL_FIELDS if k in doc]  # in order
        assert spec.licence and spec.licence_source and spec.made_by
        assert (spec.md5 is None) == (spec.unpinned is not None)    # no hash only where it says why
        if not spec.packaged:                                       # third-party: only the manifest is shipped
            assert spec.url.startswith("https://") and not root.joinpath(spec.filename).is_file()
    giga = prompts.KNOWN_PROMPT_LISTS["gigagan-coco2014-30k"]
    assert (giga.md5, giga.lines, giga.distinct, giga.filename) == (
        "20ed79e6a73d7b8fdbfb6ebc8c5c7e99", 30000, 29436, "captions.txt")
    assert "CC BY 4.0" in giga.licence and "cocodataset.org" in giga.licence_source
    # Loading a copy of the folder gives the same lists (only where each was read from differs).
    again = prompts.load_manifests(_packaged_folder(tmp_path))
    assert {k: v.md5 for k, v in again.items()} == {k: v.md5 for k, v in prompts.KNOWN_PROMPT_LISTS.items()}


def test_no_list_hash_is_written_in_the_code():
    """A list's hashes live in its manifest only."""
    import sidbench
    import distill

    hashes = [h for s in prompts.KNOWN_PROMPT_LISTS.values() for h in (s.md5, s.sha256) if h]
    for pkg in (sidbench, distill):
        for py in Path(pkg.__file__).parent.rglob("*.py"):
            text = py.read_text(encoding="utf-8")
            assert not [h for h in hashes if h in text], f"{py} repeats a prompt list hash"


@pytest.mark.parametrize("change, expect", [
    (lambda d: d.update(md5="20ED79E6"), r"field 'md5' must be 32 lower-case hex digits, got '20ED79E6'"),
    (lambda d: d.update(lines="30000"), r"field 'lines' must be a positive integer, got '30000'"),
    (lambda d: d.update(distinct=30001), r"'distinct' \(30001\) is more than 'lines' \(30000\)"),
    (lambda d: d.update(sha265=d.pop("sha256")), r"unknown field\(s\) 'sha265'"),
    (lambda d: d.pop("licence"), r"missing field\(s\) 'licence'"),
    (lambda d: d.update(name="gigagan-30k"), r"field 'name' is 'gigagan-30k' but the file is named"),
    (lambda d: d.update(schema="v2"), r"field 'schema' must be"),
    (lambda d: d.update(packaged="no"), r"field 'packaged' must be true or false"),
    (lambda d: d.update(source_url="ftp://x/y"), r"field 'source_url' must be an http\(s\) URL or null"),
    (lambda d: d.update(source_url=None), r"'source_url' is null but the list is not packaged"),
    (lambda d: d.update(packaged=True), r"the list is packaged but 'captions.txt' is not beside the manifest"),
    (lambda d: d.update(md5=prompts.KNOWN_PROMPT_LISTS["demo-world"].md5), r"is also demo-world's"),
    (lambda d: d.update(md5=None), r"field 'md5' must be 32 lower-case hex digits, got None"),
    (lambda d: d.update(unpinned="unknown"), r"'unpinned' is only for a list taken from a hub archive"),
    (lambda d: d.update(unpinned="unknown", source_hub={"repo": "a/b", "revision": "main", "fallback_revision": "main",
                                                        "member": "x.txt"}), r"so md5, sha256, bytes, lines, distinct must be null"),
    (lambda d: d.update(source_hub={"repo": "a/b"}), r"field 'source_hub' must be an object of strings repo, revision"),
])
def test_a_wrong_manifest_field_is_an_error_naming_the_file(tmp_path, change, expect):
    folder = _packaged_folder(tmp_path)
    path = folder / "gigagan-coco2014-30k.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(SidbenchError, match=expect) as e:
        prompts.load_manifests(folder)
    assert str(e.value).startswith(f"prompt manifest {path}: ")


def test_a_broken_manifest_file_is_an_error_naming_it(tmp_path):
    folder = _packaged_folder(tmp_path)
    (folder / "extra.json").write_text('{"schema": ')
    with pytest.raises(SidbenchError, match=f"prompt manifest {folder / 'extra.json'}: not valid JSON"):
        prompts.load_manifests(folder)
    (folder / "extra.json").write_text("[]")
    with pytest.raises(SidbenchError, match="extra.json: expected a JSON object"):
        prompts.load_manifests(folder)


def test_the_demo_world_list_is_what_the_world_code_makes(tmp_path):
    """prompts/demo-world.txt and its manifest equal what sidbench.demo.world writes today: they cannot drift."""
    from importlib import resources

    from sidbench.demo.world import PROMPT_SET, all_captions, write_prompt_set

    assert prompts.read_known_list(PROMPT_SET) == all_captions()
    assert prompts.packaged_list_bytes(PROMPT_SET) == "".join(c + "\n" for c in all_captions()).encode()
    doc = write_prompt_set(tmp_path)
    root = resources.files(prompts.MANIFEST_PACKAGE)
    for name in (f"{PROMPT_SET}.txt", f"{PROMPT_SET}.json"):
        assert root.joinpath(name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"prompts/{name} is out of date: run `python -m sidbench.demo.world prompts`")
    spec = prompts.KNOWN_PROMPT_LISTS[PROMPT_SET]
    assert spec.packaged and spec.url is None and (spec.md5, spec.lines) == (doc["md5"], len(all_captions()))
    assert prompts.describe_prompts(tmp_path / f"{PROMPT_SET}.txt")["known_list"] == PROMPT_SET


def test_a_shipped_list_is_fetched_from_the_package_and_verified(tmp_path, monkeypatch):
    r = invoke("fetch", "demo-world", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "demo-world.txt").read_bytes() == prompts.packaged_list_bytes("demo-world")
    r = invoke("list")
    assert r.exit_code == 0 and "demo-world" in r.output and "shipped with sidbench" in r.output
    assert "gigagan-coco2014-30k" in r.output and "fetched from https://" in r.output
    with pytest.raises(SidbenchError, match="third-party data and is not shipped"):
        prompts.read_known_list("gigagan-coco2014-30k")
    from dataclasses import replace

    monkeypatch.setitem(prompts.KNOWN_PROMPT_LISTS, "demo-world",
                        replace(prompts.KNOWN_PROMPT_LISTS["demo-world"], md5="0" * 32))
    with pytest.raises(SidbenchError, match="damaged or its manifest is out of date"):
        prompts.read_known_list("demo-world")


def test_the_listed_packages_are_the_package_folders():
    """pyproject.toml lists its packages (the prompts/ folder is mapped in): no folder of the package may be left out."""
    tomllib = pytest.importorskip("tomllib")
    repo = Path(__file__).resolve().parents[1]
    conf = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = set()
    for top in ("sidbench", "distill"):
        for f in (repo / top).rglob("*"):
            rel = f.parent.relative_to(repo).parts
            if f.is_file() and "__pycache__" not in rel and not any("." in part for part in rel):
                folders.add(".".join(rel))
    assert set(conf["packages"]) == folders | {prompts.MANIFEST_PACKAGE}
    assert conf["package-dir"] == {prompts.MANIFEST_PACKAGE: "prompts"}
    assert set(conf["package-data"][prompts.MANIFEST_PACKAGE]) >= {"*.json", "*.txt"}


def test_fetch_into_a_new_folder_named_with_a_slash_and_resume_a_cut_transfer(tmp_path, monkeypatch):
    """`--out data/` is a folder even before it exists; a cut transfer resumes on the next try (the one downloader)."""
    from http_server import FileHost

    from sidbench.core import download as dl

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SIDBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(dl, "_offline_override", None)
    body = "".join(f"caption number {i}\n" for i in range(5000)).encode()
    spec = _fake_list(monkeypatch, hashlib.md5(body).hexdigest())
    with FileHost() as host:
        host.files["/list.txt"] = body
        host.cut_after["/list.txt"] = 20_000
        r = invoke("fetch", "test-list", "--out", f"{tmp_path}/data/", "--url", f"{host.url}/list.txt")
        assert r.exit_code == 2 and "resume" in r.output, r.output
        r = invoke("fetch", "test-list", "--out", f"{tmp_path}/data/", "--url", f"{host.url}/list.txt")
        assert r.exit_code == 0, r.output
        assert host.log[-1][2] is not None and host.log[-1][2].startswith("bytes=")  # only the rest was asked for
    assert (tmp_path / "data" / spec.filename).read_bytes() == body
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [spec.filename]
