"""Faults long jobs meet, tried through the real CLI: leftovers of killed writes, corrupt and unwritable caches,
unwritable outputs and full disks."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core.atomic import atomic_path, write_text


def aged(path, text="half", when=1e9):
    """A file as a process that ran long ago left it (mtime ``when``)."""
    path.write_text(text)
    os.utime(path, (when, when))
    return path


def test_a_write_removes_the_leftovers_of_its_own_killed_writes_only(tmp_path):
    mine = [aged(tmp_path / ".r.json.abcd1234.tmp"), aged(tmp_path / ".s.npz.a_b_c_d_.npz")]
    others = [aged(tmp_path / ".q.json.abcd1234.tmp"),             # another file's
              aged(tmp_path / ".r.json.abcd1234.tmp.keep"),        # not our pattern
              aged(tmp_path / ".r.json.abcd1234.tmp2", when=4e9)]  # not ours, and new
    write_text(tmp_path / "r.json", "{}")
    with atomic_path(tmp_path / "s.npz", ".npz") as tmp:
        tmp.write_bytes(b"x")
    assert not any(p.exists() for p in mine) and all(p.exists() for p in others)
    newer = aged(tmp_path / ".r.json.zzzz9999.tmp", when=4e9)  # a process started after this one is writing it
    write_text(tmp_path / "r.json", "{}")
    assert newer.exists()


def test_generate_resumed_removes_and_counts_half_written_images(tiny_sd, prompt_file, tmp_path):
    out = tmp_path / "teacher"
    args = ["generate", "--base", str(tiny_sd), "--prompts", str(prompt_file), "--n", "2", "--steps", "2",
            "--out", str(out), "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "leftover" not in r.output, r.output
    aged(out / ".000001.png.3x4mpl3_.png")
    aged(out / ".sidbench_generate.json.abcdefgh.tmp")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "0 written (0 broken redone), 2 kept; removed 2 leftover temporary file(s) of interrupted writes" in r.output
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "sidbench_generate.json"]


@pytest.fixture
def tiny_registered(monkeypatch, tmp_path):
    from sidbench.eval.extractors.registry import ExtractorSpec, register_extractor

    from conftest import TinyFeatures

    register_extractor(ExtractorSpec("tiny-test", "test network", 16, ("clean", "legacy_tensorflow"), None,
                                     load=lambda p, m: None, random=lambda seed, m: TinyFeatures(16, seed)),
                       replace=True)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    return ["--extractor", "tiny-test", "--random-weights", "-q"]


def evaluate_cli(*args):
    r = CliRunner().invoke(app, ["eval", *map(str, args)])
    return r.exit_code, r.output


def test_an_unreadable_cache_entry_is_named_removed_and_recomputed(two_folders, tmp_path, tiny_registered):
    a, b = two_folders
    code, out = evaluate_cli("--images", a, "--ref", b, "--out", tmp_path / "r1.json", *tiny_registered)
    assert code == 0, out
    (entry,) = (tmp_path / "cache").glob("reference-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, e.g. by a crash of the file system
    code, out = evaluate_cli("--images", a, "--ref", b, "--out", tmp_path / "r2.json", *tiny_registered)
    assert code == 0, out
    assert f"the reference statistics cache entry {entry} was unreadable" in out and "removed and recomputed" in out
    r1, r2 = (json.loads((tmp_path / f"r{i}.json").read_text()) for i in (1, 2))
    assert r2["metrics"]["fid"]["value"] == r1["metrics"]["fid"]["value"]
    assert r2["inputs"]["reference"]["cache_hit"] is False
    code, out = evaluate_cli("--images", a, "--ref", b, "--out", tmp_path / "r3.json", *tiny_registered)
    assert json.loads((tmp_path / "r3.json").read_text())["inputs"]["reference"]["cache_hit"] is True  # healed


def test_a_cache_that_cannot_be_written_does_not_fail_the_evaluation(two_folders, tmp_path, tiny_registered):
    a, b = two_folders
    (tmp_path / "file").write_text("a file where the cache folder would go")
    code, out = evaluate_cli("--images", a, "--ref", b, "--cache-dir", tmp_path / "file" / "cache",
                             "--out", tmp_path / "r.json", *tiny_registered)
    assert code == 0, out
    assert (f"could not write the reference statistics cache entry {tmp_path / 'file' / 'cache'}" in out
            and "(Not a directory); the evaluation went on without caching" in out)
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["fid"]["value"] > 0


def test_a_prompt_list_is_the_same_list_whatever_its_line_endings_and_bom(tiny_sd, tmp_path):
    lf, crlf = tmp_path / "lf.txt", tmp_path / "crlf.txt"
    lf.write_bytes(b"a dog\na tree\n")
    crlf.write_bytes(b"\xef\xbb\xbfa dog\r\na tree\r\n")  # the same prompts as saved by a Windows editor
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(crlf), "--steps", "2",
                                 "--out", str(tmp_path / "img"), "-q"])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "img" / "sidbench_generate.json").read_text())["prompts"]
    assert side["md5"] == hashlib.md5(lf.read_bytes()).hexdigest()  # the list's: the LF file's bytes
    assert side["file_md5"] == hashlib.md5(crlf.read_bytes()).hexdigest()  # the file's own, beside it
    r = CliRunner().invoke(app, ["eval", "--images", str(tmp_path / "img"), "--clip", "--prompts", str(lf),
                                 "--clip-model", "RN50", "--random-weights", "--out", str(tmp_path / "r.json"), "-q"])
    assert r.exit_code == 0, r.output  # not refused: CLIP pairs image i with prompt i of the same list
    res = json.loads((tmp_path / "r.json").read_text())["inputs"]["prompts"]
    assert res["md5"] == side["md5"] and res["file_md5"] == side["md5"]
    (tmp_path / "other.txt").write_text("a dog\na cat\n")
    r = CliRunner().invoke(app, ["eval", "--images", str(tmp_path / "img"), "--clip", "--prompts",
                                 str(tmp_path / "other.txt"), "--random-weights", "-q"])
    assert r.exit_code == 2 and "CLIP would pair images with the wrong captions" in r.output


def test_known_lists_keep_their_published_md5_as_list_identity():
    from sidbench.data.prompts import KNOWN_PROMPT_LISTS, list_md5, packaged_list_bytes, read_prompts

    from conftest import SHARED

    checked = 0
    for spec in KNOWN_PROMPT_LISTS.values():
        if spec.packaged:
            path = None
            data = packaged_list_bytes(spec.name)
        else:
            path = SHARED / "data" / "sid-lsg" / spec.filename
            if not path.is_file():
                continue
            data = path.read_bytes()
        tmp_prompts = data.decode("utf-8-sig").splitlines()
        assert list_md5(tmp_prompts) == hashlib.md5(data).hexdigest() == spec.md5, spec.name
        if path is not None:
            assert list_md5(read_prompts(path)) == spec.md5
        checked += 1
    assert checked >= 1


# A full disk without root: the child may write no file beyond LIMIT bytes (writes then fail with EFBIG, "File too
# large"; SIGXFSZ, which would kill it instead, is ignored), with the tiny extractor registered as in the tests.
LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from conftest import TinyFeatures
from sidbench.eval.extractors.registry import ExtractorSpec, register_extractor
register_extractor(ExtractorSpec("tiny-test", "test network", 16, ("clean", "legacy_tensorflow"), None,
                                 load=lambda p, m: None, random=lambda seed, m: TinyFeatures(16, seed)), replace=True)
from sidbench.cli.app import main
sys.argv[0] = "sidbench"
main()
"""


def sidbench_on_a_full_disk(args, limit: int, env_extra=None):
    tests = str(Path(__file__).parent)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parents[1]), tests, os.environ.get("PYTHONPATH", "")]), **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=900)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [x for x in stderr.splitlines() if x.startswith("error:")]
    return line


def test_eval_on_a_full_disk_warns_about_the_cache_and_names_the_results_file(two_folders, tmp_path):
    a, b = two_folders
    out = tmp_path / "r.json"
    r = sidbench_on_a_full_disk(["eval", "--images", a, "--ref", b, "--extractor", "tiny-test", "--random-weights",
                                 "--out", out, "-q"], 1000, {"SIDBENCH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2
    assert one_error_line(r.stderr) == f"error: cannot write {out}: File too large; " + (
        "the file is larger than this process may write (ulimit -f, or the file system's limit)")
    assert "could not write the reference statistics cache entry" in r.stderr  # a warning, not the failure
    assert "FID" in r.stderr  # the numbers computed are printed all the same
    assert not out.exists() and not list(tmp_path.glob(".r.json*")) and not list((tmp_path / "cache").iterdir())


@pytest.mark.slow
def test_distill_on_a_full_disk_names_the_checkpoint_and_the_intact_previous_one(tiny_sd, train_prompts, tmp_path):
    from test_distill import distill_args

    run = tmp_path / "run"
    r = CliRunner().invoke(app, distill_args(tiny_sd, train_prompts, run, 1))
    assert r.exit_code == 0, r.output
    before = (run / "checkpoints" / "ckpt-00000001.pt").read_bytes()
    r = sidbench_on_a_full_disk(distill_args(tiny_sd, train_prompts, run, 2), len(before) // 2)
    assert r.returncode == 2
    first = run / "checkpoints" / "ckpt-00000001.pt"
    assert one_error_line(r.stderr) == (
        f"error: cannot write {run / 'checkpoints' / 'ckpt-00000002.pt'}: File too large; the previous checkpoint "
        f"{first} is intact: free some space and continue from it with --resume auto")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-00000001.pt"]  # nothing partial
    assert first.read_bytes() == before


@pytest.mark.parametrize("verb", ["eval", "generate", "stats", "distill", "report", "prompts", "demo"])
def test_an_output_under_a_regular_file_is_refused_before_the_work(verb, two_folders, tiny_sd, prompt_file, tmp_path):
    a, b = two_folders
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would have to be")
    out = blocker / "sub" / "out"
    args = {"eval": ["eval", "--images", a, "--ref", b, "--random-weights", "--out", out],
            "generate": ["generate", "--base", tiny_sd, "--prompts", prompt_file, "--out", out],
            "stats": ["stats", "compute", "--images", a, "--random-weights", "--out", out],
            "distill": ["distill", "--base", tiny_sd, "--prompts", prompt_file, "--run-dir", out],
            "report": ["report", "--protocol", "coco2014-30k", "--out", out],
            "prompts": ["prompts", "coco", "--annotations", tmp_path / "none.json", "--seed", "0", "--out", out],
            "demo": ["demo", "--out", out]}[verb]
    r = CliRunner().invoke(app, [str(x) for x in args])
    assert r.exit_code == 2, r.output
    flag = "--run-dir" if verb == "distill" else "--out"
    assert one_error_line(r.output) == (f"error: {flag} {out}: {blocker} is a file, so no folder can be made there; "
                                        f"choose another path")


def test_a_file_output_onto_a_folder_is_refused_before_the_work(two_folders, tmp_path):
    a, b = two_folders
    r = CliRunner().invoke(app, ["eval", "--images", str(a), "--ref", str(b), "--random-weights", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert one_error_line(r.output) == f"error: --out {tmp_path} is a folder; give a file path inside it or elsewhere"
    r = CliRunner().invoke(app, ["stats", "compute", "--images", str(a), "--random-weights", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in one_error_line(r.output)


def test_prompts_cut_by_the_text_encoder_are_counted_in_generate_distill_and_eval(tiny_sd, two_folders, tmp_path,
                                                                                   tiny_registered):
    from transformers import AutoTokenizer

    from test_distill import distill_args

    long_a, long_b = " ".join(["red"] * 100), " ".join(["blue"] * 100)  # 100 words: over CLIP's 77 tokens
    prompts = tmp_path / "p.txt"
    prompts.write_text(f"a dog\n{long_a}\n{long_b}\n")
    tok = AutoTokenizer.from_pretrained(tiny_sd / "tokenizer")
    assert [len(ids) > 77 for ids in tok(prompts.read_text().splitlines(), verbose=False).input_ids] == [0, 1, 1]
    expected = [{"encoder": "text_encoder (CLIPTextModel)", "limit": 77, "prompts": 2, "of": 3}]
    warning = ("prompts longer than a text encoder's token limit are cut (it sees only their first tokens): "
               "2 of 3 by text_encoder (CLIPTextModel) at 77 tokens")
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(prompts), "--steps", "2",
                                 "--out", str(tmp_path / "img"), "-q"])
    assert r.exit_code == 0 and f"warning: {warning}" in r.output, r.output
    assert json.loads((tmp_path / "img" / "sidbench_generate.json").read_text())["prompts"]["truncated"] == expected
    a, b = two_folders
    r = CliRunner().invoke(app, ["eval", "--base", str(tiny_sd), "--prompts", str(prompts), "--steps", "2",
                                 "--ref", str(b), "--out", str(tmp_path / "r.json"), *tiny_registered])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["inputs"]["generated"]["prompts_truncated"] == expected and f"generated: {warning}" in res["warnings"]
    # The trainer counts as it encodes (each prompt once, as the conditioning cache does): after two iterations
    # (16 draws of 3 prompts) it has encoded all three, and its counts are the list's
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, tmp_path / "run", 2))
    assert r.exit_code == 0, r.output
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert (records[-1]["prompts_encoded"], records[-1]["prompts_cut"]) == (3, {"text_encoder (CLIPTextModel)": 2})
    cut_lines = [x for x in (tmp_path / "run" / "log.txt").read_text().splitlines() if "token limit" in x]
    first = records[0]["prompts_cut"]["text_encoder (CLIPTextModel)"], records[0]["prompts_encoded"]
    assert cut_lines == [f"warning: prompts longer than a text encoder's token limit are cut (it sees only their "
                         f"first tokens): {first[0]} of {first[1]} prompts encoded so far by text_encoder "
                         f"(CLIPTextModel) at 77 tokens"]  # once, at the first record that counts a cut


@pytest.mark.parametrize("family, limits", [
    ("sdxl", {"text_encoder (CLIPTextModel)": 77, "text_encoder_2 (CLIPTextModelWithProjection)": 77}),
    ("sd3", {"text_encoder (CLIPTextModelWithProjection)": 77, "text_encoder_2 (CLIPTextModelWithProjection)": 77,
             "text_encoder_3 (T5EncoderModel)": 256}),  # the pipelines' max_sequence_length defaults
    ("flux", {"text_encoder (CLIPTextModel)": 77, "text_encoder_2 (T5EncoderModel)": 512}),
    ("sana", {"text_encoder (Gemma2Model)": 300}),
])
def test_every_family_counts_the_cuts_of_each_of_its_text_encoders(family, limits, tmp_path):
    from sidbench.gen import tiny
    from sidbench.gen.families import TruncationCount, truncated_prompts
    from sidbench.gen.models import load_base

    base = load_base(getattr(tiny, f"build_tiny_{family}")(tmp_path / family))
    words = ["a red cube", " ".join(["cube"] * 3000), "a red cube"]  # the long one is over every encoder's limit
    cuts = {c["encoder"]: (c["limit"], c["prompts"], c["of"]) for c in truncated_prompts(base, words)}
    assert cuts == {name: (limit, 1, 3) for name, limit in limits.items()}
    count = TruncationCount(base)  # the trainer's count, prompt by prompt as it encodes them: the same answer
    for w in words:
        count.add(w)
    assert count.report() == truncated_prompts(base, words)


def test_the_long_jobs_guide_commands_parse():
    import re
    import shlex

    from test_readme_commands import parse

    guide = Path(__file__).parents[1] / "docs" / "guide" / "long-jobs.md"
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)^```", guide.read_text(), re.S | re.M))
    commands = [m.group(1) for m in re.finditer(r"^sidbench (.+)$", blocks, re.M)]
    assert len(commands) >= 4
    for command in commands:
        parse(shlex.split(command.replace("$USER", "me").replace('"', "")))


def test_only_a_refused_write_becomes_a_write_error(tmp_path):
    import errno

    from sidbench.core.outputs import WriteError

    with pytest.raises(ConnectionResetError):  # e.g. a download's connection, read inside the write
        with atomic_path(tmp_path / "w.bin") as tmp:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'w.bin'}: No space left on device; free some"):
        with atomic_path(tmp_path / "w.bin") as tmp:
            raise RuntimeError("unexpected pos") from OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == []  # nothing partial either way


def test_a_resume_removes_the_temporary_folders_of_killed_distributed_writes_only(tmp_path):
    from sidbench.core.atomic import remove_leftovers, temporary_folder

    killed = temporary_folder(tmp_path / "checkpoints" / "ckpt-00000002.dcp")  # as distill/fsdp.py names it
    killed.mkdir(parents=True)
    aged(killed / "__0_0.distcp")
    os.utime(killed, (1e9, 1e9))
    live = temporary_folder(tmp_path / "checkpoints" / "ckpt-00000003.dcp")  # being written by a running process
    live.mkdir()
    other = tmp_path / ".cache"  # not our pattern
    other.mkdir()
    os.utime(other, (1e9, 1e9))
    assert killed.name == ".ckpt-00000002.dcp.partial.dcp"
    assert remove_leftovers(tmp_path, recursive=True) == 1
    assert not killed.exists() and live.is_dir() and other.is_dir()
