"""The CLI follows the conventions of click/clean-fid/diffusers tools (issue 14): each friction a user met has a test.

Help checks render in-process (the same click command the entry point builds); everything about streams,
exit codes and wrapping runs the installed ``sidbench`` entry point.
"""
import json
import re
import shlex

import pytest
import typer.main
from typer.testing import CliRunner

import sidbench
from sidbench.cli.app import app
from sidbench.demo.world import sample_world

from conftest import run_sidbench, write_images
from test_readme_commands import parse


def all_verbs() -> list[list[str]]:
    """Every leaf command as its argv prefix, e.g. ['eval'], ['stats', 'compute']."""
    out = []

    def walk(cmd, prefix):
        if hasattr(cmd, "list_commands"):
            ctx = type(cmd).context_class(cmd, info_name="sidbench")
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*prefix, name])
        else:
            out.append(prefix)

    walk(typer.main.get_command(app), [])
    return out


def help_text(argv, columns=80) -> str:
    import typer.rich_utils

    saved, typer.rich_utils.MAX_WIDTH = typer.rich_utils.MAX_WIDTH, columns  # what TERMINAL_WIDTH sets
    try:
        r = CliRunner().invoke(app, [*argv, "-h"])
    finally:
        typer.rich_utils.MAX_WIDTH = saved
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("verb", all_verbs(), ids=" ".join)
def test_help_has_click_metavars_whole_flag_names_and_two_runnable_examples(verb):
    text = help_text(verb)
    assert "…" not in text, "a flag name or value was truncated at 80 columns"
    assert not re.search(r"<(str|int|float|bool|path)>", text), "typer's <type> metavars (--kid true looks valid)"
    wide = help_text(verb, columns=300)  # examples on one line each
    examples = [re.sub(r"^(\w+=\S+\s+)+", "", ln.strip()) for ln in wide.split("Examples:")[-1].splitlines()]
    examples = [ex for ex in examples if ex.startswith("sidbench ")]
    assert "Examples:" in text and len(examples) >= 2, f"`sidbench {' '.join(verb)} -h` needs two examples"
    for ex in examples:
        argv = shlex.split(ex.split("  #")[0].split(" | ")[0])[1:]
        assert argv[:len(verb)] == verb, ex
        parse(argv)  # every flag exists and every value has its type


def test_eval_help_is_grouped_and_choices_are_listed():
    text = help_text(["eval"], columns=160)
    for panel in ("Inputs", "Metrics", "Beyond Inception", "Intervals and extrapolation", "Diversity", "Protocol",
                  "Feature extractor", "Generation", "Performance", "Output"):
        assert f"─ {panel} " in text, panel
    assert "[clean|legacy_tensorflow|legacy_pytorch]" in text and "[ddim|dpm++|euler]" in text
    assert "[custom|coco2014-30k|coco2017-5k]" in text
    assert "FID, KID, CLIP score, precision/recall" in text


def test_distill_help_shows_every_default_and_help():
    text = help_text(["distill"], columns=200)
    from dataclasses import fields

    from distill.config import DistillConfig

    rows = re.split(r"\n│ (?=--)", text)
    for f in fields(DistillConfig):
        flag = "--" + f.name.replace("_", "-")
        row = next(r for r in rows if re.match(rf"{flag}\s", r))
        assert len(re.sub(r"[│╰─╯]", " ", row).split()) >= 3, f"{flag} has no help"
        if f.type != "bool":
            assert "[default: " in row, f"{flag} shows no default"
    assert "[default: 979]" in text and "[fp32|bf16|fp16|fp16-pure]" in text
    assert "--no-tf32" not in text  # plain flags, as in diffusers' training scripts


def test_a_flag_takes_no_value():
    r = CliRunner().invoke(app, ["eval", "--images", "x", "--kid", "true"])
    assert r.exit_code == 2 and "unexpected extra argument" in r.output.lower()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    real, _ = sample_world(100, res=16, seed=0)
    fake, _ = sample_world(100, res=16, seed=1)
    write_images(tmp / "fake", list(fake))
    write_images(tmp / "real", list(real))
    return tmp


def test_results_go_to_stdout_only_when_asked_and_messages_to_stderr(folders, tmp_path, monkeypatch):
    common = ["eval", "--images", folders / "fake", "--ref", folders / "real", "--extractor", "world-cnn",
              "--no-cache", "-q"]
    r = run_sidbench([*common, "--out", tmp_path / "r.json"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == "", "without --json nothing goes to stdout"
    assert "FID" in r.stderr and "results written to" in r.stderr
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:") and "singular" in ln]
    assert len(warned) == 1  # the warning once (100 images, 128-d), on stderr
    j = run_sidbench([*common, "--json"])
    assert j.returncode == 0 and json.loads(j.stdout)["metrics"]["fid"]["value"] == pytest.approx(
        json.loads((tmp_path / "r.json").read_text())["metrics"]["fid"]["value"], rel=1e-12)
    monkeypatch.chdir(tmp_path)
    d = run_sidbench([*common, "--out", "-"])
    assert d.returncode == 0 and json.loads(d.stdout)["schema"] == "sidbench.results/1"
    assert not (tmp_path / "-").exists(), "--out - created a file named '-'"


def test_errors_are_not_wrapped_outside_a_terminal(tmp_path):
    deep = tmp_path / ("a-very-long-folder-name-" * 5) / "http-style-name"
    r = run_sidbench(["eval", "--images", deep, "--ref", deep])
    assert r.returncode == 2
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("error:"))
    assert str(deep) in line and len(line) > 120  # one line, the path whole


def test_threads_and_oversubscription_warning(folders):
    from sidbench.core.threads import available_cores

    cores = available_cores()
    r = run_sidbench(["stats", "compute", "--images", folders / "real", "--extractor", "world-cnn", "--out",
                      folders / "s.npz", "--threads", cores + 1, "-q"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "oversubscribed" in r.stderr and f"use --threads {cores}" in r.stderr
    r = run_sidbench(["stats", "compute", "--images", folders / "real", "--extractor", "world-cnn", "--out",
                      folders / "s.npz", "--threads", 1, "-q"])
    assert r.returncode == 0 and "oversubscribed" not in r.stderr
    for verb in (["eval"], ["generate"], ["distill"], ["demo"], ["stats", "compute"]):
        assert "--threads" in help_text(verb, columns=200), verb


def test_threads_default_shares_the_cores_between_local_processes(monkeypatch):
    from sidbench.core import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.default_threads() == 4 and threads.oversubscription(4) is None
    assert "oversubscribed" in threads.oversubscription(8)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.default_threads() == 2


def test_version_and_short_help_via_the_entry_point():
    r = run_sidbench(["--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"sidbench {sidbench.__version__}"
    r = run_sidbench(["eval", "-h"])
    assert r.returncode == 0 and "Examples:" in r.stdout


def test_weights_list_has_urls_whole_file_names_and_json(tmp_path):
    r = run_sidbench(["weights", "list", "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    listed = {w["name"]: w for w in json.loads(r.stdout)["weights"]}
    assert listed["world-cnn"]["present"] is True                       # shipped in the package
    assert listed["inception-2015-12-05"]["url"].startswith("https://")
    table = run_sidbench(["weights", "list"]).stdout
    for w in listed.values():
        assert w["file"] in table and (w["url"] in table or not w["url"].startswith("http"))


def test_the_guidance_label_is_not_the_guidance_scale():
    text = help_text(["eval"], columns=200)
    assert "--guidance-label" in text and not re.search(r"--guidance\s", text)
    labels = text.split("─ Labels for reports ")[1]
    assert "--guidance-label" in labels and "--cfg " not in labels
