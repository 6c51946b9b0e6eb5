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


def test_fetch_verifies_md5(server, tmp_path, monkeypatch):
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


def test_fetch_wrong_md5_leaves_nothing(server, tmp_path, monkeypatch):
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
