import numpy as np
import pytest

from sidbench.core.errors import SidbenchError, StatsMismatchError
from sidbench.eval.stats import FeatureStats, is_stats_file

META = {"extractor": "x", "extractor_weights_sha256": None, "extractor_random_seed": 0, "dim": 8,
        "fid_mode": "clean", "pre_resize": None, "input": {"listing_sha256": "abc", "used": 300}}


def feats(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * 3 + 10).astype(np.float32)


def test_streaming_moments_equal_numpy():
    x = feats()
    st = FeatureStats(8, meta=dict(META))
    for k in range(0, 300, 37):
        st.update(x[k:k + 37])
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(st.mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st.cov, np.cov(x64, rowvar=False), rtol=1e-10, atol=1e-12)
    assert st.n == 300 and not st.singular


def test_two_shards_merge_to_the_single_pass():
    x = feats()
    whole = FeatureStats(8, keep_features=True, meta=dict(META))
    whole.update(x, np.arange(300))
    parts = []
    for i in range(2):
        p = FeatureStats(8, keep_features=True, meta=dict(META, shard=[i, 2]))
        idx = np.arange(i, 300, 2)
        for k in range(0, len(idx), 50):
            p.update(x[idx[k:k + 50]], idx[k:k + 50])
        parts.append(p)
    m = FeatureStats.merged(parts)
    assert m.n == 300
    np.testing.assert_allclose(m.mean, whole.mean, rtol=1e-10)
    np.testing.assert_allclose(m.cov, whole.cov, rtol=1e-10)
    np.testing.assert_array_equal(m.ordered_features(), x)  # single-run order restored for KID


def test_incomplete_or_foreign_shards_are_refused():
    a = FeatureStats(8, meta=dict(META, shard=[0, 3]))
    b = FeatureStats(8, meta=dict(META, shard=[1, 3]))
    with pytest.raises(SidbenchError, match="cover"):
        FeatureStats.merged([a, b])
    c = FeatureStats(8, meta=dict(META, fid_mode="legacy_tensorflow", shard=[2, 3]))
    with pytest.raises(StatsMismatchError, match="fid_mode"):
        FeatureStats.merged([a, b, c])
    d = FeatureStats(8, meta=dict(META, input={"listing_sha256": "other", "used": 300}, shard=[2, 3]))
    with pytest.raises(StatsMismatchError, match="different inputs"):
        FeatureStats.merged([a, b, d])


def test_file_roundtrip_is_self_describing(tmp_path):
    st = FeatureStats(8, keep_features=True, meta=dict(META))
    st.update(feats(), np.arange(300))
    p = tmp_path / "s.npz"
    st.save(p)
    assert is_stats_file(p)
    back = FeatureStats.load(p)
    assert back.meta == st.meta and back.n == 300
    np.testing.assert_array_equal(back.sum, st.sum)
    np.testing.assert_array_equal(back.ordered_features(), st.ordered_features())
    z = np.load(p)  # clean-fid users can read mu / sigma directly
    np.testing.assert_allclose(z["sigma"], st.cov)
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_non_finite_features_and_wrong_width_are_errors():
    st = FeatureStats(4)
    with pytest.raises(SidbenchError, match="NaN"):
        st.update(np.array([[np.nan, 0, 0, 0]], np.float32))
    with pytest.raises(SidbenchError, match="dimension"):
        st.update(np.zeros((2, 5), np.float32))
    with pytest.raises(SidbenchError, match="at least 2"):
        FeatureStats(4, n=1, sum=np.zeros(4)).cov


def test_not_a_stats_file(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, mu=np.zeros(3))
    assert not is_stats_file(p)
    with pytest.raises(SidbenchError, match="not a sidbench statistics file"):
        FeatureStats.load(p)
