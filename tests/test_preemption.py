"""Stopping a distillation on request: SIGTERM/SIGINT or --max-time finish the iteration, checkpoint, say so and
exit non-zero; a resume from there ends bitwise equal to an uninterrupted run; every process stops together."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distill.stopping import StopWatch, parse_max_time
from sidbench.core.errors import SidbenchError

from conftest import run_sidbench
from test_distill import distill_args, final_state


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a red circle\na blue square\ntwo cats\na dog on a mat\na tree\nthe moon\na boat\n")
    return p


def test_max_time_parses_hours_and_minutes():
    assert parse_max_time("47:30") == 47 * 3600 + 30 * 60 and parse_max_time("0:00:05") == 5
    assert parse_max_time(None) is None
    with pytest.raises(SidbenchError, match="--max-time '90'.*HH:MM"):
        parse_max_time("90")


def test_max_time_stops_when_an_iteration_and_a_checkpoint_no_longer_fit():
    watch = StopWatch(max_time_s=100.0, started=time.time() - 80, max_time_text="0:01:40")
    watch.timed_iteration(5.0)
    assert watch.decide(lambda: 10**9) == 0  # 80 s gone + 5 s + a guessed 10 s write of 1 GB < 100 s
    assert watch.decide(lambda: 2 * 10**9) == 1  # ... of 2 GB (20 s): 105 s, past the limit
    watch = StopWatch(max_time_s=100.0, started=time.time() - 80, max_time_text="0:01:40")
    watch.timed_iteration(5.0)
    watch.timed_save(10.0)
    assert watch.decide() == 0  # 80 + 5 + 10 = 95 s < 100 s
    watch.timed_save(16.0)
    assert watch.decide() == 1  # 80 + 5 + 16 = 101 s: stop now
    assert "stopped by --max-time 0:01:40 at iteration 7" in str(watch.stop_error(1, 7))


SECOND_SIGNAL = """
import os, signal, sys, time
from distill import stopping
stopping.SAME_REQUEST_S = 0.5
with stopping.StopWatch() as w:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # the launcher's copy of the same request: not a second one
    time.sleep(1)
    print(w.signal, flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # a second request
    time.sleep(5)
print("survived")
"""


def test_a_second_signal_ends_the_process_at_once_and_a_repeat_of_the_first_does_not():
    r = subprocess.run([sys.executable, "-c", SECOND_SIGNAL], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert r.stdout.split() == [str(int(signal.SIGTERM))] and r.returncode == -signal.SIGINT, r.stderr


def wait_for_iterations(run: Path, n: int, proc, timeout: float = 600):
    deadline = time.time() + timeout
    log = run / "log.jsonl"
    while not (log.exists() and len(log.read_text().splitlines()) >= n):
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_then_resume_equals_an_uninterrupted_run(tiny_sd, prompts, tmp_path):
    every = ["--checkpoint-every", "100"]  # no periodic checkpoint: the stop writes the only one
    a = run_sidbench(distill_args(tiny_sd, prompts, tmp_path / "a", 6, every))
    assert a.returncode == 0, a.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "sidbench", *distill_args(tiny_sd, prompts, tmp_path / "b", 6, every)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_iterations(tmp_path / "b", 2, proc)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    stopped = [c.name for c in (tmp_path / "b" / "checkpoints").iterdir()]
    assert len(stopped) == 1 and stopped[0] != "ckpt-00000006.pt"
    n = int(stopped[0][5:13])
    line = f"stopped by SIGTERM at iteration {n}; resume with --resume auto"
    assert line in err and line in (tmp_path / "b" / "log.txt").read_text()
    b = run_sidbench(distill_args(tiny_sd, prompts, tmp_path / "b", 6, [*every, "--resume", "auto"]))
    assert b.returncode == 0, b.stderr[-3000:]
    assert f"resumed from {tmp_path / 'b' / 'checkpoints' / stopped[0]} (iteration {n}" in b.stderr
    sa, sb = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert sa["iteration"] == sb["iteration"] == 6
    for net in ("generator", "ema", "fake", "opt_gen", "opt_fake"):
        flat_a, flat_b = _tensors(sa[net]), _tensors(sb[net])
        assert flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), net


def _tensors(tree, prefix="") -> dict:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _tensors(sub, f"{prefix}/{key}").items()}
    return {}


def test_max_time_checkpoints_and_exits_124(tiny_sd, prompts, tmp_path):
    from typer.testing import CliRunner

    from sidbench.cli.app import app

    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, tmp_path / "run", 4,
                                             ["--checkpoint-every", "100", "--max-time", "0:00"]))
    assert r.exit_code == 124, r.output
    assert "stopped by --max-time 0:00 at iteration 1; resume with --resume auto" in r.output
    assert [c.name for c in (tmp_path / "run" / "checkpoints").iterdir()] == ["ckpt-00000001.pt"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _rank_of(pid: int) -> int | None:
    env = dict(x.split("=", 1) for x in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in x)
    return int(env["RANK"]) if "RANK" in env else None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker processes through /proc")
def test_sigterm_to_one_process_stops_every_process_at_the_same_iteration(tiny_sd, prompts, tmp_path):
    import shutil

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    run = tmp_path / "run"
    args = distill_args(tiny_sd, prompts, run, 40, ["--checkpoint-every", "100", "--batch-per-device", "1"])
    proc = subprocess.Popen([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "sidbench", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    wait_for_iterations(run, 2, proc)
    workers = {_rank_of(p): p for p in _children(proc.pid)}
    os.kill(workers[1], signal.SIGTERM)  # only the second process is told: the first must stop with it
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode != 0
    (ck,) = [c.name for c in (run / "checkpoints").iterdir()]
    n = int(ck[5:13])
    assert n < 40 and f"stopped by SIGTERM at iteration {n}; resume with --resume auto" in err
    state = torch.load(run / "checkpoints" / ck, weights_only=True)
    assert state["iteration"] == n


def test_resume_auto_falls_back_past_unreadable_checkpoints_and_stops_when_none_is_left(tiny_sd, prompts, tmp_path):
    from typer.testing import CliRunner

    from sidbench.cli.app import app

    run = tmp_path / "run"
    cks = run / "checkpoints"
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, run, 2))
    assert r.exit_code == 0, r.output
    (cks / "ckpt-00000002.pt").write_bytes(b"")  # what a kill during a non-atomic write would leave
    killed = cks / ".ckpt-00000003.pt.abcd_123.pt"  # what a kill during an atomic one leaves
    killed.write_bytes(b"half")
    os.utime(killed, (1e9, 1e9))
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, run, 3))
    assert r.exit_code == 0, r.output
    assert "; removed 1 leftover temporary file(s) of interrupted writes" in r.output and not killed.exists()
    assert (f"warning: checkpoint {cks / 'ckpt-00000002.pt'} is unreadable (an empty file (0 bytes: its write was "
            f"cut short)); moved to ckpt-00000002.pt.unreadable, resuming from ckpt-00000001.pt") in r.output
    assert f"resumed from {cks / 'ckpt-00000001.pt'} (iteration 1" in r.output
    assert (cks / "ckpt-00000002.pt.unreadable").stat().st_size == 0  # moved aside, not deleted
    assert final_state(run)["iteration"] == 3
    assert sorted(c.name for c in cks.glob("ckpt-*.pt")) == [f"ckpt-0000000{i}.pt" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        (cks / f"ckpt-0000000{i}.pt").write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, run, 4))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"error: no readable checkpoint in {cks}: ckpt-00000003.pt (" in r.output
    assert "ckpt-00000002.pt (" in r.output and "ckpt-00000001.pt (" in r.output and "start afresh with --resume none" in r.output
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, run, 4, ["--resume", str(cks / "ckpt-00000001.pt")]))
    assert r.exit_code == 2 and "name another checkpoint with --resume PATH" in r.output
    assert (cks / "ckpt-00000001.pt").exists()  # a checkpoint the user named is left where it is
