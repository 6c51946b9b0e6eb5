"""Shared fixtures: tiny image folders, a fast stand-in extractor, the random-weight FID Inception."""
from __future__ import annotations

import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sidbench  # noqa: F401  (installs the torchvision guard first)
from sidbench.eval.extractors.registry import Extractor, build_extractor

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Download locks of the test session's own, not the user's ~/.cache (subprocesses inherit it).
os.environ.setdefault("SIDBENCH_LOCKS", __import__("tempfile").mkdtemp(prefix="sidbench-locks-"))
SHARED = Path(__file__).resolve().parents[2] / "shared"


class TinyFeatures(torch.nn.Module):
    """A fast deterministic feature map for pipeline tests (the real Inception is tested separately)."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Parameter(torch.randn(3 * 8 * 8, dim, generator=g) / 14, requires_grad=False)

    def forward(self, x):
        x = torch.nn.functional.adaptive_avg_pool2d((x - 128) / 128, 8).reshape(x.shape[0], -1)
        return torch.tanh(x @ self.proj) + 0.1 * (x @ self.proj) ** 2


def tiny_extractor(dim: int = 16) -> Extractor:
    return Extractor.from_module("tiny-test", TinyFeatures(dim), dim,
                                 weights={"name": "tiny", "sha256": None, "random": True, "seed": 0})


@pytest.fixture
def tiny():
    return tiny_extractor()


@pytest.fixture(scope="session")
def inception_random():
    return build_extractor("inception-v3-tf", mode="clean", random_weights=True, seed=0)


def write_images(folder: Path, images, ext: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{i:06d}.{ext}"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


def random_images(n: int, seed: int, sizes=((48, 64), (64, 48), (57, 57))) -> list[np.ndarray]:
    """Smooth random images of mixed sizes (so resizers have something to do)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        im = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC))
        out.append(np.clip(im.astype(int) + rng.integers(-20, 21, im.shape), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A tiny random Stable Diffusion folder (diffusers layout), built once per test session."""
    from sidbench.gen.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture
def train_prompts(tmp_path):
    """Four training prompts for the tiny-SD distillation runs."""
    p = tmp_path / "train.txt"
    p.write_text("a red circle\na blue square\ntwo cats\na dog on a mat\n")
    return p


@pytest.fixture
def prompt_file(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text("\n".join(["a red circle", "a dog", "two cats on a sofa", "x", "a kitchen", "a tree",
                            "a boat", "the moon"]) + "\n")
    return p


@pytest.fixture
def two_folders(tmp_path):
    a = tmp_path / "gen"
    b = tmp_path / "ref"
    write_images(a, random_images(20, 1))
    write_images(b, random_images(24, 2))
    return a, b


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 (port chosen by the OS) serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run_sidbench(args, *, processes: int = 1, timeout: int = 900):
    """The installed ``sidbench`` entry point in a subprocess (one thread each), as users run it;
    processes > 1 goes through torchrun (skips without it)."""
    import shutil
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    if processes == 1:
        script = shutil.which("sidbench", path=os.path.dirname(sys.executable))
        assert script, f"no installed sidbench entry point beside {sys.executable} (pip install -e .)"
        cmd = [script, *map(str, args)]
    else:
        torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
        if torchrun is None:
            pytest.skip("torchrun not installed beside this Python")
        cmd = [torchrun, "--standalone", "--nproc-per-node", str(processes), "-m", "sidbench", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(autouse=True)
def _downloads_follow_the_environment_again():
    """A CLI call with --offline switches this process offline; the next test starts as the environment says."""
    yield
    from sidbench.core.download import set_offline

    set_offline(None)
