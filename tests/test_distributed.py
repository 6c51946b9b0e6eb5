"""Two CPU processes (gloo) under torchrun give the statistics of one process."""

import numpy as np
import pytest

from sidbench.eval.stats import FeatureStats

from conftest import random_images, run_sidbench, write_images


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    write_images(tmp_path / "imgs", random_images(10, 3))
    common = ["stats", "compute", "--images", str(tmp_path / "imgs"), "--random-weights", "--kid", "--batch", "1", "-q"]
    one = run_sidbench([*common, "--out", tmp_path / "one.npz"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_sidbench([*common, "--out", tmp_path / "two.npz"], processes=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = FeatureStats.load(tmp_path / "one.npz"), FeatureStats.load(tmp_path / "two.npz")
    assert a.n == b.n == 10 and b.meta["processes"] == 2
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-10)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(b.ordered_features(), a.ordered_features())
