"""Two CPU processes (gloo) under torchrun give the statistics of one process."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sidbench.stats import FeatureStats

from conftest import random_images, write_images


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    write_images(tmp_path / "imgs", random_images(10, 3))
    common = ["stats", "compute", "--images", str(tmp_path / "imgs"), "--random-weights", "--kid", "--batch", "1", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "sidbench.cli", *common, "--out", str(tmp_path / "one.npz")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "sidbench.cli", *common,
                          "--out", str(tmp_path / "two.npz")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = FeatureStats.load(tmp_path / "one.npz"), FeatureStats.load(tmp_path / "two.npz")
    assert a.n == b.n == 10 and b.meta["processes"] == 2
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-10)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(b.ordered_features(), a.ordered_features())
