"""Stopping a distillation on request: SIGTERM/SIGINT or --max-time finish the iteration, checkpoint, say so and
exit non-zero; a resume from there ends bitwise equal to an uninterrupted run; every process stops together."""
import json
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
    marker = json.loads((tmp_path / "run" / "stopped.json").read_text())  # what a job script behind torchrun tests
    assert marker == {"stopped_by": "--max-time 0:00", "iteration": 1, "exit_code": 124, "resume": "--resume auto",
                      "checkpoint": str(tmp_path / "run" / "checkpoints" / "ckpt-00000001.pt")}
    r = CliRunner().invoke(app, distill_args(tiny_sd, prompts, tmp_path / "run", 2, ["--checkpoint-every", "100"]))
    assert r.exit_code == 0 and not (tmp_path / "run" / "stopped.json").exists(), r.output  # removed at the start


def test_a_stop_finishes_the_tracker(tiny_sd, prompts, tmp_path, monkeypatch):
    import importlib.machinery
    import types

    from distill.config import resolve
    from distill.loop import train
    from distill.stopping import StopRequested

    finished = []
    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = lambda **kw: types.SimpleNamespace(log=lambda values, step=None: None,
                                                   finish=lambda: finished.append(True))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = resolve(overrides=dict(base=str(tiny_sd), prompts=str(prompts), run_dir=str(tmp_path / "run"), batch=4,
                                 batch_per_device=4, duration_kimg=0.008, checkpoint_every=0, trackers="wandb"))
    with pytest.raises(StopRequested):
        train(cfg, resume="none", progress=False, max_time="0:00")
    assert finished == [True]  # shown as ended, not as a crashed run


def test_a_distributed_checkpoint_cut_short_is_removed_when_the_run_resumes(tiny_sd, prompts, tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    from distill.config import resolve
    from distill.loop import train
    from sidbench.core.atomic import temporary_folder

    real_save, saves = dcp.save, []

    def killed_at_the_second(state, checkpoint_id):
        saves.append(checkpoint_id)
        if len(saves) == 1:
            return real_save(state, checkpoint_id=checkpoint_id)
        Path(checkpoint_id).mkdir()
        (Path(checkpoint_id) / "__0_0.distcp").write_bytes(b"half a shard")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(dcp, "save", killed_at_the_second)
    run = tmp_path / "run"
    cfg = dict(base=str(tiny_sd), prompts=str(prompts), run_dir=str(run), batch=4, batch_per_device=4,
               duration_kimg=0.008, checkpoint_every=1, sharding="fsdp", trackers="none")
    with pytest.raises(KeyboardInterrupt):
        train(resolve(overrides=cfg), resume="none", progress=False)
    cks = run / "checkpoints"
    cut = temporary_folder(cks / "ckpt-00000002.dcp")
    assert saves == [str(temporary_folder(cks / "ckpt-00000001.dcp")), str(cut)]
    assert sorted(p.name for p in cks.iterdir()) == [cut.name, "ckpt-00000001.dcp"]
    os.utime(cut, (1e9, 1e9))  # left by a process that has ended
    monkeypatch.setattr(dcp, "save", real_save)
    train(resolve(overrides=cfg), resume="auto", progress=False, verbose=False)
    assert sorted(p.name for p in cks.iterdir()) == ["ckpt-00000001.dcp", "ckpt-00000002.dcp"]
    assert "; removed 1 leftover temporary file(s) of interrupted writes" in (run / "log.txt").read_text()


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


def _torchrun_workers(proc) -> dict[int, int]:
    deadline = time.time() + 60
    while len(workers := {_rank_of(p): p for p in _children(proc.pid)}) < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    return workers


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker processes through /proc")
def test_under_torchrun_no_process_exits_before_the_stop_checkpoint_is_written(tiny_sd, prompts, tmp_path):
    """A scheduler signals every process; the first to exit makes torchrun SIGTERM the rest, which, more than two
    seconds after the first signal, is a second request that ends a process at once: so none may exit while the
    checkpoint (made slow here) is being written."""
    import shutil

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    run, events = tmp_path / "run", tmp_path / "events.txt"
    args = distill_args(tiny_sd, prompts, run, 40, ["--checkpoint-every", "100", "--batch-per-device", "1"])
    env = dict(os.environ, OMP_NUM_THREADS="1", SLOW_SAVE_S="3", EVENTS_FILE=str(events))
    proc = subprocess.Popen([torchrun, "--standalone", "--nproc-per-node", "2",
                             str(Path(__file__).with_name("slow_checkpoint_sidbench.py")), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_iterations(run, 2, proc)
    for pid in _torchrun_workers(proc).values():
        os.kill(pid, signal.SIGTERM)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 1, err[-3000:]  # torchrun's status for any failed process
    lines = [line.split() for line in events.read_text().splitlines()]
    (saved,) = [float(t) for what, _, t in lines if what == "saved"]
    exits = {int(rank): float(t) for what, rank, t in lines if what == "exit"}
    assert 1 in exits and all(t >= saved for t in exits.values()), lines  # rank 1 waited for rank 0's write
    (ck,) = [c.name for c in (run / "checkpoints").iterdir()]
    n = int(ck[5:13])
    assert f"stopped by SIGTERM at iteration {n}; resume with --resume auto" in (run / "log.txt").read_text()
    assert json.loads((run / "stopped.json").read_text()) == {
        "stopped_by": "SIGTERM", "iteration": n, "exit_code": 143, "checkpoint": str(run / "checkpoints" / ck),
        "resume": "--resume auto"}
    assert torch.load(run / "checkpoints" / ck, weights_only=True)["iteration"] == n
    r = run_sidbench(distill_args(tiny_sd, prompts, run, 40, ["--checkpoint-every", "100", "--batch-per-device", "1"]))
    assert r.returncode == 0 and f"resumed from {run / 'checkpoints' / ck} (iteration {n}" in r.stderr, r.stderr[-3000:]
    assert final_state(run)["iteration"] == 40 and not (run / "stopped.json").exists()


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


def test_one_process_decides_alone_without_a_collective(monkeypatch):
    import torch.distributed as dist

    def no_collective(*a, **kw):
        raise AssertionError("a collective with one process")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # e.g. `torchrun --nproc-per-node 1`
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 1)
    monkeypatch.setattr(dist, "all_reduce", no_collective)
    watch = StopWatch()
    assert watch.decide() == 0
    watch.signal = signal.SIGTERM
    assert watch.decide() == signal.SIGTERM
