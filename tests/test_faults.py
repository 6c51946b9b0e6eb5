"""Faults long jobs meet, tried through the real CLI: leftovers of killed writes, corrupt and unwritable caches,
unwritable outputs and full disks."""
import os

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
