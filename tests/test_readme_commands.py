"""Every `sidbench ...` command in the README parses as written: the verb exists, every flag exists and its value
has the right type, required options are there. (What the commands do is run by the journey and the other tests.)
"""
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from sidbench.cli.app import app

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(page: Path = README) -> list[str]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        line = line.split("  #")[0].split(" | ")[0].strip()  # a comment or a pipe ends the command
        m = re.search(r"(?:^|\s)(?:-m\s+)?sidbench\s+(\S.*)$", line)
        if m and not line.startswith(("sidbench/", "#")) and "..." not in line:
            found.append(m.group(1))
    return found


def parse(argv: list[str]):
    """Resolve the verb (and sub-verb) and let the option parser check the rest, without running anything.

    (Typer ships its own copy of click, so groups are recognised by their ``list_commands``.)"""
    cmd = typer.main.get_command(app)
    ctx, name, args = None, "sidbench", list(argv)
    while hasattr(cmd, "list_commands"):
        ctx = type(cmd).context_class(cmd, info_name=name, parent=ctx)
        name, args = args[0], args[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"no command {name!r} in {argv}"
        cmd = sub
    return cmd.make_context(name, args, parent=ctx, resilient_parsing=False)


def test_the_readme_has_its_commands():
    verbs = {c.split()[0] for c in readme_commands()}
    assert {"eval", "generate", "export", "distill", "report", "stats", "prompts"} <= verbs


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    parse(shlex.split(command))


def test_a_wrong_flag_is_caught():
    with pytest.raises(Exception, match="No such option"):
        parse(shlex.split("eval --images out/ --no-such-flag 3"))
    with pytest.raises(Exception, match="valid integer"):
        parse(shlex.split("distill --base sd15/ --batch many"))
    assert parse(shlex.split("distill --base sd15/ --batch 8")).params["batch"] == 8
