import numpy as np
import pytest
import scipy.linalg

from sidbench.eval.metrics.fid import frechet_distance


def rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_closed_form_shared_eigenvectors():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FD = |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2.
    d = 64
    rng = np.random.default_rng(0)
    q = rotation(d, 1)
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_closed_form_scalar_and_identical():
    # 1-d Gaussians: (m1-m2)^2 + (s1-s2)^2.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, rel=1e-12)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 20))
    c = np.cov(x, rowvar=False)
    assert frechet_distance(x.mean(0), c, x.mean(0), c) == pytest.approx(0.0, abs=1e-9)


def test_non_commuting_matches_scipy_sqrtm():
    d = 128
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, d)), rng.normal(size=(400, d)) @ rng.normal(size=(d, d)) * 0.3
    m1, m2 = x.mean(0), y.mean(0)
    c1, c2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = scipy.linalg.sqrtm(c1 @ c2)
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(ref).real
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-9)


def test_singular_covariances_stay_finite_and_real():
    # N < d: rank-deficient covariances (the case where sqrtm goes complex).
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.5
    v = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(v) and v > 0


def test_bad_input_is_refused():
    with pytest.raises(Exception, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(Exception, match="NaN"):
        frechet_distance(np.zeros(2), np.array([[np.nan, 0], [0, 1]]), np.zeros(2), np.eye(2))
