"""--device auto: the resolver on every branch (availability injected), the backend that follows it, and the device
recorded where a run says how it was made (eval results, generate sidecars, distill logs)."""
from __future__ import annotations

import json
import re

import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from sidbench.cli.app import app
from sidbench.core import distributed
from sidbench.core.device import describe_device, device_line, resolve_device
from sidbench.core.errors import SidbenchError

from conftest import run_sidbench, write_images


@pytest.fixture
def machine(monkeypatch):
    """A machine with ``gpus`` CUDA devices, MPS or not, and a launcher's LOCAL_RANK or none."""
    def make(*, gpus: int = 0, mps: bool = False, local_rank: int | None = None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "NVIDIA H100 80GB HBM3")
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
            monkeypatch.delenv(key, raising=False)
        if local_rank is not None:
            monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    return make


@pytest.mark.parametrize("gpus, mps, local_rank, expected", [
    (2, False, None, "cuda:0"),   # one process: the first GPU
    (2, False, 1, "cuda:1"),      # under a launcher: this process's GPU
    (1, True, None, "cuda:0"),    # CUDA wins over MPS
    (0, True, None, "mps"),       # no CUDA: Apple's GPU
    (0, True, 1, "mps"),          # a launcher without CUDA: no GPU index to pick
    (0, False, None, "cpu"),      # nothing: the CPU
    (0, False, 3, "cpu"),
])
def test_auto_picks_the_launchers_gpu_else_cuda_else_mps_else_cpu(machine, gpus, mps, local_rank, expected):
    machine(gpus=gpus, mps=mps, local_rank=local_rank)
    assert resolve_device("auto") == resolve_device(None) == torch.device(expected)


def test_explicit_requests_are_kept_and_a_bare_cuda_is_the_launchers_gpu(machine):
    machine(gpus=2, mps=True, local_rank=1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda:1")
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda:1")


@pytest.mark.parametrize("gpus, mps, local_rank, requested, says", [
    (0, False, None, "cuda", "--device cuda: this torch"),
    (2, False, None, "cuda:2", "--device cuda:2: only 2 GPU(s) visible"),
    (0, False, None, "mps", "--device mps: this torch"),
    (0, False, None, "gpu0", "--device 'gpu0': not a device name"),
    (2, False, 2, "auto", "LOCAL_RANK 2, but only 2 GPU(s) are visible"),
])
def test_an_impossible_request_is_a_named_error(machine, gpus, mps, local_rank, requested, says):
    machine(gpus=gpus, mps=mps, local_rank=local_rank)
    with pytest.raises(SidbenchError, match=re.escape(says)):
        resolve_device(requested)


def test_description_names_the_gpu_and_the_cpu(machine, monkeypatch):
    machine(gpus=1)
    assert describe_device(resolve_device()) == {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3"}
    cpu = describe_device("cpu")
    assert cpu["device"] == "cpu" and cpu["device_name"].strip()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert device_line(cpu) == f"rank 1/2: device cpu ({cpu['device_name']})"


@pytest.mark.parametrize("requested, backend, gpu_set", [("auto", "nccl", 1), ("cuda", "nccl", 1), ("cpu", "gloo", None)])
def test_the_backend_follows_the_device_not_the_machine(machine, monkeypatch, requested, backend, gpu_set):
    """A CPU run under a launcher on a GPU machine uses gloo and leaves the GPU alone."""
    machine(gpus=2, local_rank=1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    seen = {}
    monkeypatch.setattr(dist, "init_process_group", lambda b, **kw: seen.setdefault("backend", b))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.setdefault("gpu", torch.device(d).index))
    assert distributed.init_if_launched(device=requested)
    assert seen == ({"backend": backend, "gpu": gpu_set} if gpu_set is not None else {"backend": backend})


@pytest.fixture
def small_folders(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    write_images(a, rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    write_images(b, rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    return a, b


def test_two_launched_processes_each_print_and_record_their_choice(small_folders, tmp_path):
    """Under torchrun, with no --device: each rank says where it runs (here the CPU), over gloo."""
    a, _ = small_folders
    r = run_sidbench(["stats", "compute", "--images", a, "--out", tmp_path / "s.npz", "--extractor", "world-cnn",
                      "--random-weights", "-q"], processes=2, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cpu = describe_device("cpu")["device_name"]
    for rank in (0, 1):
        assert f"rank {rank}/2: device cpu ({cpu})" in r.stderr
    st = json.loads(CliRunner().invoke(app, ["stats", "info", str(tmp_path / "s.npz")]).stdout)
    assert st["n"] == 4 and st["processes"] == 2 and st["device"] == {"device": "cpu", "device_name": cpu}


def test_eval_results_record_the_resolved_device(small_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    a, b = small_folders
    r = CliRunner().invoke(app, ["eval", "--images", str(a), "--ref", str(b), "--extractor", "world-cnn",
                                 "--random-weights", "--out", str(tmp_path / "r.json"), "-q"])
    assert r.exit_code == 0, r.output
    cpu = describe_device("cpu")
    assert f"device cpu ({cpu['device_name']})" in r.output  # the start line
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["provenance"]["device"] == cpu and res["config"]["device"] == "cpu"
    assert res["extractors"]["fid"]["device"] == "cpu"


def test_a_generate_sidecar_records_the_resolved_device(tiny_sd, prompt_file, tmp_path):
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(prompt_file), "--n", "1",
                                 "--steps", "1", "--out", str(tmp_path / "g"), "-q"])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "g" / "sidbench_generate.json").read_text())
    cpu = describe_device("cpu")
    assert side["config"]["device"] == "cpu" and side["networks"]["device"] == "cpu"
    assert side["networks"]["device_name"] == cpu["device_name"]
    # A rerun asking for the device by name keeps the image: the device is not part of what made it.
    r = CliRunner().invoke(app, ["generate", "--base", str(tiny_sd), "--prompts", str(prompt_file), "--n", "1",
                                 "--steps", "1", "--out", str(tmp_path / "g"), "--device", "cpu", "-q"])
    assert r.exit_code == 0 and "1 kept" in r.output, r.output


def test_an_impossible_device_is_one_line_on_the_command_line(tmp_path, machine):
    machine(gpus=0)
    r = CliRunner().invoke(app, ["stats", "compute", "--images", str(tmp_path), "--out", str(tmp_path / "s.npz"),
                                 "--device", "cuda"])
    assert r.exit_code == 2 and "error: --device cuda: this torch" in r.output and "Traceback" not in r.output


def test_a_distill_run_logs_the_resolved_device_and_keeps_auto_in_its_config(tiny_sd, train_prompts, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["distill", "--base", str(tiny_sd), "--prompts", str(train_prompts), "--run-dir",
                                 str(run), "--batch", "2", "--batch-per-device", "2", "--duration-kimg", "0.002",
                                 "--checkpoint-every", "0", "--trackers", "none", "-q"])
    assert r.exit_code == 0, r.output
    cpu = describe_device("cpu")
    assert json.loads((run / "config.json").read_text())["device"] == "auto"  # a resume elsewhere re-resolves
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log and all(x["device"] == "cpu" and x["device_name"] == cpu["device_name"] for x in log)
    assert f"on cpu ({cpu['device_name']}, asked: auto)" in (run / "log.txt").read_text()
