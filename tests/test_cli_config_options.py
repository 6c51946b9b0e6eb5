"""The distill verb's flags come from the config dataclass's field metadata: types, defaults, help, lists, None."""
from dataclasses import dataclass, fields

import pytest
import typer
from typer.testing import CliRunner

from distill.config import DistillConfig, setting, trajectory_keys
from sidbench.cli.distill import config_options
from sidbench.cli.app import app


@dataclass
class Toy:
    name: str = setting("a", "A name.")
    limit: int | None = setting(None, "An optional limit.")
    tags: list[str] = setting(["x"], "Some tags.", trajectory=True)
    scale: float = setting(1.5, "A scale.")
    on: bool = setting(False, "A switch.")


def _invoke(args):
    got = {}

    def cmd(**kw):
        got.update(kw)

    import inspect

    cmd.__signature__ = inspect.Signature(config_options(Toy))
    t = typer.Typer()
    t.command()(cmd)
    t.command("other")(lambda: None)  # two commands: typer then expects the command name
    res = CliRunner().invoke(t, ["cmd", *args])
    assert res.exit_code == 0, res.output
    return got


def test_optional_list_and_scalar_fields_become_flags():
    assert _invoke([]) == {"name": None, "limit": None, "tags": None, "scale": None, "on": None}  # None: not given
    got = _invoke(["--limit", "3", "--tags", "p", "--tags", "q", "--scale", "2", "--on", "--name", "b"])
    assert got == {"name": "b", "limit": 3, "tags": ["p", "q"], "scale": 2.0, "on": True}


def test_a_field_without_help_is_refused():
    @dataclass
    class Bad:
        x: int = 1

    with pytest.raises(TypeError, match="Bad.x has no help"):
        config_options(Bad)


def test_every_distill_field_has_help_and_a_flag_and_trajectory_is_metadata():
    res = CliRunner().invoke(app, ["distill", "--help"], env={"COLUMNS": "200"})
    for f in fields(DistillConfig):
        assert f.metadata["help"]
        assert "--" + f.name.replace("_", "-") in res.output
    assert {"seed", "cfg_eval_real", "batch", "lr_gen"} <= set(trajectory_keys())
    assert not {"run_dir", "log_every", "proxy_every", "checkpoint_every"} & set(trajectory_keys())
