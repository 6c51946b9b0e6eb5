import numpy as np
import pytest
from cleanfid.fid import kernel_distance

from sidbench.eval.metrics.kid import kernel_inception_distance


def test_kid_equals_clean_fid_on_the_same_features():
    rng = np.random.default_rng(0)
    gen = rng.normal(size=(300, 64)).astype(np.float32)
    ref = (rng.normal(size=(350, 64)) * 1.2 + 0.1).astype(np.float32)
    ours = kernel_inception_distance(gen, ref, num_subsets=20, max_subset_size=200, seed=123)
    np.random.seed(123)  # clean-fid draws from numpy's global RNG
    theirs = kernel_distance(gen.astype(np.float64), ref.astype(np.float64), num_subsets=20, max_subset_size=200)
    assert ours["mean"] == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    np.random.seed(123)  # clean-fid computes in the features' dtype: float32 differs only by round-off
    assert ours["mean"] == pytest.approx(kernel_distance(gen, ref, 20, 200), rel=1e-3, abs=1e-6)
    assert ours["std"] > 0 and ours["subset_size"] == 200


def test_kid_known_answers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16))
    same = kernel_inception_distance(x[:200], x[200:], num_subsets=10, max_subset_size=200)
    shifted = kernel_inception_distance(x[:200] + 1.0, x[200:], num_subsets=10, max_subset_size=200)
    assert abs(same["mean"]) < 0.05 * shifted["mean"]
    # Unbiased: E[MMD^2] for a mean shift delta with the cubic kernel is positive and grows with delta.
    more = kernel_inception_distance(x[:200] + 2.0, x[200:], num_subsets=10, max_subset_size=200)
    assert more["mean"] > shifted["mean"] > 0
