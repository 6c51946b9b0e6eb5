"""The trainer's console and log.txt: one readable line per tick (kimg, speed, both losses, gap, memory) on
stderr and appended to ``run_dir/log.txt``; plain lines (no carriage returns) when stderr is not a terminal; the
resume point named; a tracker that was asked for but is not installed reported, never dropped silently."""
import io
import json
import re
import sys

import pytest

from distill.config import resolve
from distill.loop import _memory, tick_line, train
from distill.tracking import open_trackers
from sidbench.core.errors import SidbenchError

TICK = re.compile(r"^iter (\d+)/(\d+) +kimg (\d+\.\d{3}) +time \S+ +sec/tick \d+\.\d\d +sec/kimg (\d+\.\d\d) +"
                  r"loss_fake (\S+) +loss_gen (\S+) +gap (\S+) +cpumem (\d+\.\d\d)GB")


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a red circle\na blue square\ntwo cats\na dog on a mat\n")
    return p


def config(tiny_sd, prompts, run, iters, **kw):
    values = dict(base=str(tiny_sd), prompts=str(prompts), run_dir=str(run), batch=4, batch_per_device=4,
                  duration_kimg=iters * 4 / 1000, lr_gen=1e-4, lr_fake=1e-4, checkpoint_every=0, trackers="none")
    return resolve(overrides={**values, **kw})


def ticks(text: str) -> list[re.Match]:
    return [m for m in map(TICK.match, text.splitlines()) if m]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (what an interactive shell gives the trainer)."""

    def isatty(self):
        return True


def test_one_plain_line_per_tick_in_log_txt_and_on_stderr(tiny_sd, prompts, tmp_path, capsys):
    run = tmp_path / "run"
    train(config(tiny_sd, prompts, run, 3, log_every=2), resume="none")  # progress on, stderr not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err  # a batch scheduler's log: no progress bar redrawn in place
    log = (run / "log.txt").read_text()
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    lines = ticks(log)
    # One line per tick: every log_every iterations and the last one, as in log.jsonl.
    assert [int(m[1]) for m in lines] == [r["iteration"] for r in records] == [2, 3]
    for m, r in zip(lines, records):
        assert int(m[2]) == 3 and float(m[3]) == pytest.approx(r["kimg"])
        assert float(m[4]) == pytest.approx(r["sec_per_kimg"], abs=0.006) and float(m[4]) > 0
        assert m[5] == f"{r['loss_fake']:.4g}" and m[6] == f"{r['loss_gen']:.4g}"
        assert m[7] == f"{r['fake_teacher_gap']:.4g}"
        assert float(m[8]) == pytest.approx(r["rss_max_mb"] / 1024, abs=0.006) and float(m[8]) > 0
    # The console shows the same lines, whole.
    assert [m[0] for m in ticks(err)] == [m[0] for m in lines]
    assert log.splitlines()[0].startswith("start ") and "iteration 0 of 3" in log.splitlines()[0]
    assert log.splitlines()[-1].startswith("finished: iteration 3")


def test_on_a_terminal_the_bar_stays_and_tick_lines_do_not_share_its_row(tiny_sd, prompts, tmp_path, monkeypatch):
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    run = tmp_path / "run"
    train(config(tiny_sd, prompts, run, 2), resume="none")
    out = tty.getvalue()
    assert "\r" in out and "distill" in out  # the tqdm bar
    rows = re.split(r"[\r\n]", out)
    lines = ticks((run / "log.txt").read_text())
    assert len(lines) == 2
    for m in lines:
        assert m[0] in [TICK.match(r)[0] for r in rows if TICK.match(r)]  # a row of its own, not glued to the bar


def test_progress_false_drops_only_the_bar_and_verbose_false_only_the_console(tiny_sd, prompts, tmp_path,
                                                                             monkeypatch):
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    train(config(tiny_sd, prompts, tmp_path / "a", 2), resume="none", progress=False)
    assert "\r" not in tty.getvalue() and len(ticks(tty.getvalue())) == 2
    assert len(ticks((tmp_path / "a" / "log.txt").read_text())) == 2

    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    train(config(tiny_sd, prompts, tmp_path / "b", 2), resume="none", progress=False, verbose=False)
    assert quiet.getvalue() == ""
    assert len(ticks((tmp_path / "b" / "log.txt").read_text())) == 2


class Killed(Exception):
    pass


def test_a_stopped_run_keeps_its_lines_and_the_resume_appends_and_names_the_checkpoint(tiny_sd, prompts, tmp_path,
                                                                                      capsys):
    run = tmp_path / "run"

    def stop_at_2(line):
        if line["iteration"] == 2:
            raise Killed("stop")

    with pytest.raises(Killed):  # after iteration 2's line, before its checkpoint
        train(config(tiny_sd, prompts, run, 4, checkpoint_every=1), resume="auto", on_log=stop_at_2)
    first = (run / "log.txt").read_text()
    assert [int(m[1]) for m in ticks(first)] == [1, 2]
    assert first.splitlines()[-1] == "stopped at iteration 2: Killed: stop"
    capsys.readouterr()

    train(config(tiny_sd, prompts, run, 4, checkpoint_every=1), resume="auto")
    err = capsys.readouterr().err
    ck = run / "checkpoints" / "ckpt-00000001.pt"
    resumed = f"resumed from {ck} (iteration 1, 0.004 kimg)"
    assert resumed in err.splitlines()
    log = (run / "log.txt").read_text()
    assert log.startswith(first)  # appended, never truncated
    rest = log[len(first):].splitlines()
    assert rest[0].startswith("start ") and "iteration 1 of 4" in rest[0] and rest[1] == resumed
    assert [int(m[1]) for m in ticks(log)] == [1, 2, 2, 3, 4]


def test_a_missing_default_tracker_is_reported_on_the_console_and_in_log_txt(tiny_sd, prompts, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not installed (find_spec -> None)
    cfg = config(tiny_sd, prompts, tmp_path / "run", 1, trackers="tensorboard")
    assert resolve().trackers == "tensorboard"  # the default: asked for without the user saying so
    tr = open_trackers(cfg, tmp_path / "run")
    assert tr.names == [] and [name for name, _ in tr.skipped] == ["tensorboard"]

    train(cfg, resume="none", progress=False)
    err = capsys.readouterr().err
    note = ("tracker tensorboard skipped: the tensorboard package is not installed (pip install tensorboard); "
            "metrics are still in log.jsonl")
    assert note in err.splitlines()
    log = (tmp_path / "run" / "log.txt").read_text().splitlines()
    assert note in log[:4]  # at the top of the session, a durable record of what this run lacks
    assert "trackers: none (log.jsonl is always written)" in log[:4]


def test_a_missing_explicit_tracker_is_still_an_error_and_log_txt_says_why(tiny_sd, prompts, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    run = tmp_path / "run"
    with pytest.raises(SidbenchError, match="pip install wandb"):
        train(config(tiny_sd, prompts, run, 1, trackers="wandb"), resume="none", progress=False, verbose=False)
    last = (run / "log.txt").read_text().splitlines()[-1]
    assert last.startswith("stopped at iteration 0: SidbenchError: tracker 'wandb' needs the wandb package")
    assert not (run / "log.jsonl").exists()


def test_tick_line_shows_gpu_memory_proxy_metrics_and_missing_values():
    rec = {"iteration": 7, "kimg": 3.584, "sec_per_kimg": 12.5, "loss_fake": 0.25, "loss_gen": -1e-3,
           "fake_teacher_gap": None, "rss_max_mb": 2048.0, "cuda_max_mb": 10240.0, "cuda_reserved_max_mb": 12288.0,
           "nonfinite_fake": 2, "nonfinite_gen": 0, "nan_samples": 1, "nan_dropped_gen": 0, "proxy_fid": 31.4159,
           "proxy_n": 64}
    line = tick_line(rec, total_iters=100, elapsed=3725, sec_per_tick=1.5)
    assert line.startswith("iter 7/100")
    assert re.search(r"time 1h 02m 05s +sec/tick 1\.50 +sec/kimg 12\.50 +loss_fake 0\.25 +loss_gen -0\.001 +gap n/a ",
                     line)
    assert "cpumem 2.00GB" in line and "gpumem 10.00GB" in line and "reserved 12.00GB" in line
    assert "nonfinite 3" in line and "proxy_fid 31.42" in line and "proxy_n" not in line
    assert set(_memory("cpu")) == {"rss_max_mb"} and _memory("cpu")["rss_max_mb"] > 0
