"""`sidbench data fetch` and `stats compute --protocol`, end to end against a local host serving small archives of
COCO's layout: downloaded, resumed when cut, refused and not kept when a pin fails, extracted whole, described by
a manifest, and the protocol's reference statistics equal those of the extracted folder computed the ordinary way."""
import hashlib
import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core import download as dl
from sidbench.data import dataset_table
from sidbench.data.dataset_fetch import FOLDER_MANIFEST
from sidbench.data.images import open_source
from sidbench.eval import protocols
from sidbench.eval.api import EvalConfig, compute_stats_file, evaluate
from sidbench.eval.stats import FeatureStats

from conftest import random_images, write_images
from http_server import FileHost

N = 12
CAPTIONS = {"images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}],
            "annotations": [{"id": 1, "image_id": 42, "caption": "a red circle"}]}


def jpeg_zip(top: str, n: int, seed: int) -> bytes:
    """A zip of the official layout: TOP/COCO_TOP_<12-digit id>.jpg, small images of mixed sizes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/", b"")  # the archive's directory entry, as the official one has
        for i, im in enumerate(random_images(n, seed)):
            out = io.BytesIO()
            Image.fromarray(im).save(out, "JPEG", quality=90)
            zf.writestr(f"{top}/COCO_{top}_{42 + i:012d}.jpg", out.getvalue())
    return buf.getvalue()


def annotations_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("annotations/captions_val2014.json", json.dumps(CAPTIONS))
        zf.writestr("annotations/instances_val2014.json", json.dumps({"not": "wanted"}))
    return buf.getvalue()


ARCHIVES = {"coco2014-val": ("/zips/val2014.zip", jpeg_zip("val2014", N, 0), N),
            "coco2017-val": ("/zips/val2017.zip", jpeg_zip("val2017", N, 1), N),
            "coco2014-annotations": ("/annotations/annotations_trainval2014.zip", annotations_zip(), None)}


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SIDBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(dl, "_offline_override", None)


@pytest.fixture
def host():
    with FileHost() as h:
        for path, data, _ in ARCHIVES.values():
            h.files[path] = data
        yield h


@pytest.fixture
def table(host, monkeypatch):
    """The datasets table pointed at the local host, with the small archives' sizes, sha256 and image counts."""
    for name, (path, data, images) in ARCHIVES.items():
        spec = dataset_table.KNOWN_DATASETS[name]
        monkeypatch.setitem(dataset_table.KNOWN_DATASETS, name, replace(
            spec, url=host.url + path, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), images=images))
    return host


def sidbench(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def gets(host):
    return [e for e in host.log if e[0] == "GET"]


def leftovers(root):
    return sorted(p.name for p in root.iterdir())


def test_fetch_downloads_verifies_extracts_and_describes_the_folder(table, tmp_path):
    dest = tmp_path / "coco2014-val"
    r = sidbench("data", "fetch", "coco2014-val", dest, "-q")
    assert r.exit_code == 0, r.output
    assert "12 images" in r.output and "fetched" in r.output
    _, data, _ = ARCHIVES["coco2014-val"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # every member, byte for byte, at its archive path
        for info in zf.infolist():
            if not info.is_dir():
                assert (dest / info.filename).read_bytes() == zf.read(info)
    doc = json.loads((dest / FOLDER_MANIFEST).read_text())
    assert (doc["name"], doc["images"], doc["files"]) == ("coco2014-val", N, N)
    assert doc["archive"] == {"name": "val2014.zip", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert doc["source_url"] == table.url + "/zips/val2014.zip"
    # the file-list hash is the one statistics of the folder record, so a statistics file names its folder
    assert doc["listing_sha256"] == open_source(str(dest)).describe()["listing_sha256"]
    assert leftovers(tmp_path) == ["coco2014-val"]  # archive removed, no staging folder

    again = sidbench("data", "fetch", "coco2014-val", dest, "-q")
    assert again.exit_code == 0 and "already complete, nothing to do" in again.output
    assert len(gets(table)) == 1


def test_an_interrupted_download_resumes_and_keep_archive_keeps_it(table, tmp_path):
    path, data, _ = ARCHIVES["coco2014-val"]
    table.cut_after[path] = len(data) // 2
    dest = tmp_path / "coco"
    r = sidbench("data", "fetch", "coco2014-val", dest, "-q", "--keep-archive")
    assert r.exit_code == 2 and "run the same command again to resume" in r.output
    assert not dest.exists() and (tmp_path / "val2014.zip.part").stat().st_size <= len(data) // 2
    kept = (tmp_path / "val2014.zip.part").stat().st_size
    r = sidbench("data", "fetch", "coco2014-val", dest, "-q", "--keep-archive")
    assert r.exit_code == 0, r.output
    assert gets(table)[-1][2] == f"bytes={kept}-"  # only the rest was asked for
    assert (tmp_path / "val2014.zip").read_bytes() == data
    assert len(list((dest / "val2014").iterdir())) == N


def test_a_bad_checksum_is_refused_and_nothing_is_extracted(table, tmp_path, monkeypatch):
    spec = dataset_table.KNOWN_DATASETS["coco2014-val"]
    monkeypatch.setitem(dataset_table.KNOWN_DATASETS, "coco2014-val", replace(spec, sha256="0" * 64))
    r = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco", "-q")
    assert r.exit_code == 2 and "not the pinned" in r.output and "removed, not kept" in r.output
    assert leftovers(tmp_path) == []


def test_the_published_pins_refuse_another_archive_from_a_mirror(host, tmp_path):
    """The real table: TFDS's size of val2014.zip, so a mirror serving something else is refused."""
    r = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco", "-q", "--url", host.url + "/zips/val2014.zip")
    assert r.exit_code == 2 and "not the pinned 6,645,013,297" in r.output
    assert leftovers(tmp_path) == []


def test_an_archive_with_another_image_count_is_not_kept(table, tmp_path, monkeypatch):
    spec = dataset_table.KNOWN_DATASETS["coco2014-val"]
    monkeypatch.setitem(dataset_table.KNOWN_DATASETS, "coco2014-val", replace(spec, images=N + 1))
    r = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco", "-q")
    assert r.exit_code == 2 and f"holds {N} images, not the {N + 1} of coco2014-val" in r.output
    assert not (tmp_path / "coco").exists() and not (tmp_path / ".coco.extracting").exists()


def test_annotations_extract_only_the_captions(table, tmp_path):
    dest = tmp_path / "ann"
    r = sidbench("data", "fetch", "coco2014-annotations", dest, "-q")
    assert r.exit_code == 0, r.output
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["annotations/captions_val2014.json", FOLDER_MANIFEST]
    assert json.loads((dest / "annotations/captions_val2014.json").read_text()) == CAPTIONS


def test_a_full_folder_and_offline_mode_are_refused_with_the_command(table, tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    r = sidbench("data", "fetch", "coco2014-val", tmp_path / "full", "-q")
    assert r.exit_code == 2 and "give a new or empty folder" in r.output
    monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    r = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco", "-q")
    assert r.exit_code == 2 and "downloads are off" in r.output and "sidbench data fetch coco2014-val" in r.output
    assert table.log == []


def test_the_protocol_reference_count_is_its_datasets(monkeypatch):
    p = protocols.get_protocol("coco2014-30k")
    assert p.reference_dataset == "coco2014-val" and p.reference_count == 40504
    assert protocols.get_protocol("coco2017-5k").reference_count == 5000
    assert protocols.describe(p)["reference_count"] == 40504
    spec = dataset_table.KNOWN_DATASETS["coco2014-val"]
    monkeypatch.setitem(dataset_table.KNOWN_DATASETS, "coco2014-val", replace(spec, images=7))
    assert p.reference_count == 7  # read from the dataset's manifest, written nowhere else


def test_stats_compute_protocol_equals_the_extracted_folder_the_ordinary_way(table, tmp_path):
    dest = tmp_path / "coco2014-val"
    assert sidbench("data", "fetch", "coco2014-val", dest, "-q").exit_code == 0
    r = sidbench("stats", "compute", "--protocol", "coco2014-30k", "--images", dest, "--out", tmp_path / "p.npz",
                 "--random-weights", "-q")
    assert r.exit_code == 0, r.output
    r = sidbench("stats", "compute", "--images", dest, "--pre-resize", 256, "--out", tmp_path / "o.npz",
                 "--random-weights", "-q")
    assert r.exit_code == 0, r.output
    p, o = FeatureStats.load(tmp_path / "p.npz"), FeatureStats.load(tmp_path / "o.npz")
    assert p.n == o.n == N and p.meta["pre_resize"] == 256 and p.meta["fid_mode"] == "clean"
    np.testing.assert_array_equal(p.sum, o.sum)
    np.testing.assert_array_equal(p.outer, o.outer)
    ds = p.meta["input"]["dataset"]
    assert ds["name"] == "coco2014-val" and ds["listing_sha256"] == p.meta["input"]["listing_sha256"]
    assert "dataset" not in o.meta["input"]

    r = sidbench("stats", "compute", "--protocol", "coco2014-30k", "--images", dest, "--out", tmp_path / "x.npz",
                 "--pre-resize", 299, "--random-weights", "-q")
    assert r.exit_code == 2 and "--pre-resize 299 breaks protocol coco2014-30k, which uses 256" in r.output


def test_an_incomplete_changed_or_other_set_is_refused_naming_the_count(table, tmp_path, tiny):
    dest = tmp_path / "coco2014-val"
    assert sidbench("data", "fetch", "coco2014-val", dest, "-q").exit_code == 0
    first = sorted((dest / "val2014").iterdir())[0]
    data = first.read_bytes()
    first.unlink()
    r = sidbench("stats", "compute", "--protocol", "coco2014-30k", "--images", dest, "--out", tmp_path / "s.npz", "-q")
    assert r.exit_code == 2, r.output
    assert (f"holds 11 images; the coco2014-30k reference is all 12 images of coco2014-val" in r.output
            and "fetch them with `sidbench data fetch coco2014-val DIR`" in r.output)
    first.write_bytes(data + b"\0")  # the count is right again, a file is not
    r = sidbench("stats", "compute", "--protocol", "coco2014-30k", "--images", dest, "--out", tmp_path / "s.npz", "-q")
    assert r.exit_code == 2 and "its files have changed since" in r.output

    plain = tmp_path / "plain"  # a folder of the right count without a manifest: accepted, nothing to record
    write_images(plain, random_images(N, 3))
    st = compute_stats_file(str(plain), str(tmp_path / "plain.npz"), EvalConfig(protocol="coco2014-30k", progress=False),
                            extractor=tiny)
    assert st.n == N and "dataset" not in st.meta["input"]

    other = tmp_path / "coco2017-val"
    assert sidbench("data", "fetch", "coco2017-val", other, "-q").exit_code == 0
    r = sidbench("stats", "compute", "--protocol", "coco2014-30k", "--images", other, "--out", tmp_path / "s.npz", "-q")
    assert r.exit_code == 2 and "holds coco2017-val" in r.output and "reference is coco2014-val" in r.output


def test_eval_records_the_reference_dataset_and_flags_another_one(table, tmp_path, tiny, two_folders):
    gen, _ = two_folders
    for name in ("coco2014-val", "coco2017-val"):
        assert sidbench("data", "fetch", name, tmp_path / name, "-q").exit_code == 0
    ours = tmp_path / "ref14.npz"
    compute_stats_file(str(tmp_path / "coco2014-val"), str(ours), EvalConfig(protocol="coco2014-30k", progress=False),
                       extractor=tiny)
    cfg = EvalConfig(protocol="coco2014-30k", allow_deviation=True, progress=False, use_cache=False)
    res = evaluate(str(gen), str(ours), cfg, extractor=tiny)
    assert res["inputs"]["reference_dataset"]["name"] == "coco2014-val"
    assert res["inputs"]["reference"]["made_from"]["dataset"]["name"] == "coco2014-val"
    assert not any("the reference is" in d for d in res["protocol"]["deviations"])

    res = evaluate(str(gen), str(tmp_path / "coco2017-val"), cfg, extractor=tiny)  # a fetched folder says what it is
    assert res["inputs"]["reference_dataset"]["name"] == "coco2017-val"
    assert any("the reference is coco2017-val" in d and "protocol's is coco2014-val" in d
               for d in res["protocol"]["deviations"])


def test_data_list_shows_every_dataset_with_its_pins_and_sources():
    r = sidbench("data", "list", "--json")
    assert r.exit_code == 0, r.output
    listed = {d["name"]: d for d in json.loads(r.output)["datasets"]}
    assert set(listed) == {"coco2014-val", "coco2017-val", "coco2014-annotations", "coco2017-annotations"}
    assert listed["coco2014-val"]["url"] == "http://images.cocodataset.org/zips/val2014.zip"
    assert listed["coco2014-val"]["sha256"] == "fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0"
    assert all(d["sha256"] and "tensorflow_datasets" in d["sources"]["sha256"] for d in listed.values())
    table_text = sidbench("data", "list").output
    assert "40,504" in table_text and "val2017.zip" in table_text


def test_a_manifest_with_a_wrong_field_names_the_file(tmp_path):
    src = dataset_table.KNOWN_DATASETS["coco2014-val"].manifest
    doc = json.loads(open(src).read())
    (tmp_path / "coco2014-val.json").write_text(json.dumps(dict(doc, images=0)))
    with pytest.raises(Exception, match=r"coco2014-val.json: field 'images' must be a positive integer"):
        dataset_table.load_manifests(tmp_path)
    (tmp_path / "coco2014-val.json").write_text(json.dumps(dict(doc, extract=["elsewhere/x.json"])))
    with pytest.raises(Exception, match="field 'extract'"):
        dataset_table.load_manifests(tmp_path)


def test_every_command_of_the_coco_guide_parses():
    import shlex
    from pathlib import Path

    from test_readme_commands import parse, readme_commands

    commands = readme_commands(Path(__file__).resolve().parents[1] / "docs" / "guide" / "coco.md")
    assert {c.split()[0] for c in commands} >= {"data", "stats", "eval", "prompts"} and len(commands) >= 7
    for command in commands:
        parse(shlex.split(command))


def test_a_full_disk_while_extracting_is_one_line_and_keeps_the_verified_archive(table, tmp_path, monkeypatch):
    import errno

    def no_space(self, member, path=None, pwd=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(zipfile.ZipFile, "extract", no_space)
        r = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco2014-val", "-q")
    assert r.exit_code == 2 and "No space left on device; free some space" in r.output, r.output
    assert "Traceback" not in r.output and leftovers(tmp_path) == ["val2014.zip"]  # no half folder; archive kept
    table_again = sidbench("data", "fetch", "coco2014-val", tmp_path / "coco2014-val", "-q")
    assert table_again.exit_code == 0 and len(gets(table)) == 1  # the kept archive is used, not fetched again
