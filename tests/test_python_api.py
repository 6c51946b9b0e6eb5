"""The top-level Python API: sidbench.evaluate / compute_* and the stateful metrics agree with `sidbench eval`."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import sidbench
import sidbench.demo  # noqa: F401  (registers world-cnn: a real, shipped network, fast on CPU)
from sidbench.demo.world import sample_world

from conftest import write_images

NET = "world-cnn"


@pytest.fixture(scope="module")
def worlds():
    real, _ = sample_world(300, res=16, seed=0)
    fake, caps = sample_world(300, res=16, seed=1)
    return real, fake, caps


def test_top_level_names_are_functions_not_modules():
    from sidbench import evaluate  # the function, not a module

    assert callable(evaluate) and evaluate is sidbench.api.evaluate
    for name in ("compute_fid", "compute_kid", "compute_clip_score", "compute_precision_recall",
                 "FID", "KID", "PrecisionRecall", "CLIPScore", "EvalConfig", "GenerateConfig"):
        assert name in sidbench.__all__ and getattr(sidbench, name) is not None
    with pytest.raises(AttributeError):
        sidbench.no_such_name


def test_arrays_folders_tensors_and_lists_give_one_fid(worlds, tmp_path):
    real, fake, _ = worlds
    fd = sidbench.compute_fid(fake, real, extractor=NET)
    write_images(tmp_path / "fake", list(fake))
    write_images(tmp_path / "real", list(real))
    assert sidbench.compute_fid(str(tmp_path / "fake"), str(tmp_path / "real"), extractor=NET) == pytest.approx(fd, rel=1e-9)
    nchw = torch.from_numpy(fake).permute(0, 3, 1, 2)
    assert sidbench.compute_fid(nchw, real, extractor=NET) == pytest.approx(fd, rel=1e-9)             # uint8 NCHW
    f01 = nchw.float() / 255
    assert sidbench.compute_fid(f01, real, extractor=NET, value_range="0,1") == pytest.approx(fd, rel=1e-9)
    assert sidbench.compute_fid([im for im in fake], real, extractor=NET) == pytest.approx(fd, rel=1e-9)  # list
    # (the CLI's --json on folders gives the same number: test_cli_conventions checks it against --out)


def test_bad_in_memory_input_is_a_short_named_error(worlds):
    real = worlds[0]
    big = torch.rand(64, 3, 3, 3)
    with pytest.raises(sidbench.SidbenchError, match=r"could be NCHW or NHWC; say which with layout=") as e:
        sidbench.compute_fid(big, real, extractor=NET, value_range="0,1")
    assert len(str(e.value)) < 200  # the tensor is never printed
    with pytest.raises(sidbench.SidbenchError, match="explicit value range"):
        sidbench.compute_fid(torch.rand(8, 3, 16, 16), real, extractor=NET)
    with pytest.raises(sidbench.SidbenchError, match="outside the stated range"):
        sidbench.compute_fid(torch.rand(8, 3, 16, 16) * 2, real, extractor=NET, value_range="0,1")
    with pytest.raises(sidbench.SidbenchError, match="unknown setting.*fdi"):
        sidbench.evaluate(real, real, fdi=True)
    with pytest.raises(sidbench.SidbenchError, match="expected a folder"):
        sidbench.evaluate({"a": 1}, real)


def test_warnings_reach_python_warnings_and_the_results(worlds):
    real, fake, _ = worlds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sidbench.evaluate(fake[:40], real[:40], extractor=NET)
    msgs = [str(w.message) for w in caught if issubclass(w.category, sidbench.SidbenchWarning)]
    assert msgs and all(m in res["warnings"] for m in msgs) and "singular" in msgs[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sidbench.evaluate(fake, real, extractor=NET)  # 300 > 128: no warning
    assert not [w for w in caught if issubclass(w.category, sidbench.SidbenchWarning)]


def test_in_memory_reference_is_not_cached_unless_asked(worlds, tmp_path):
    real, fake, _ = worlds
    sidbench.evaluate(fake, real, extractor=NET, kid=True, cache_dir=str(tmp_path / "c1"))
    assert not (tmp_path / "c1").exists() or not any((tmp_path / "c1").iterdir())
    res = sidbench.evaluate(fake, real, extractor=NET, cache_dir=str(tmp_path / "c2"), cache_in_memory=True)
    assert len(list((tmp_path / "c2").glob("reference-*.npz"))) == 1 and res["inputs"]["reference"]["cache"]
    np.save(tmp_path / "real.npy", real)  # on disk: cached by default
    sidbench.evaluate(fake, str(tmp_path / "real.npy"), extractor=NET, cache_dir=str(tmp_path / "c3"))
    assert len(list((tmp_path / "c3").glob("reference-*.npz"))) == 1


def test_stateful_metrics_equal_evaluate_and_merge_exactly(worlds, tmp_path):
    real, fake, caps = worlds
    res = sidbench.evaluate(fake, real, extractor=NET, kid=True, kid_subset_size=100, kid_subsets=20)
    fid, kid = sidbench.FID(extractor=NET), sidbench.KID(extractor=NET, subset_size=100, subsets=20)
    for i in range(0, 300, 64):  # batches of another size than evaluate's
        for m in (fid, kid):
            m.update(fake[i:i + 64], real=False)
            m.update(real[i:i + 64], real=True)
    assert fid.compute() == pytest.approx(res["metrics"]["fid"]["value"], rel=1e-6)
    mean, std = kid.compute()
    assert mean == pytest.approx(res["metrics"]["kid"]["mean"], rel=1e-5) and std > 0
    # two workers' halves merged = one object that saw everything
    a, b = sidbench.KID(extractor=NET, subset_size=100, subsets=20), sidbench.KID(extractor=NET, subset_size=100, subsets=20)
    a.update(fake[:120], real=False); a.update(real[:200], real=True)
    b.update(fake[120:], real=False); b.update(real[200:], real=True)
    a.merge(b)
    assert (a.fake.n, a.real.n) == (300, 300)
    np.testing.assert_allclose(a.fake.ordered_features(), kid.fake.ordered_features(), rtol=1e-5, atol=1e-5)
    assert a.compute()[0] == pytest.approx(mean, rel=1e-4)
    # a fixed reference: from a statistics file, kept across reset(real=False)
    fid.real.save(tmp_path / "ref.npz")
    g = sidbench.FID(extractor=NET)
    g.load_reference(str(tmp_path / "ref.npz"))
    g.update(fake, real=False)
    assert g.compute() == pytest.approx(fid.compute(), rel=1e-9)
    g.reset(real=False)
    assert (g.fake.n, g.real.n) == (0, 300)
    with pytest.raises(sidbench.SidbenchError, match="0 generated image"):
        g.compute()
    with pytest.raises(sidbench.SidbenchError, match="per-image features"):
        sidbench.KID(extractor=NET).load_reference(str(tmp_path / "ref.npz"))


def test_stateful_fid_syncs_across_processes(worlds, tmp_path):
    """Two gloo processes, each updating its own half: compute() on each equals one process over all."""
    real, fake, _ = worlds
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, numpy as np, torch.distributed as dist, sidbench, sidbench.demo
        dist.init_process_group("gloo")
        r, w = dist.get_rank(), dist.get_world_size()
        real, fake = np.load({str(tmp_path / 'real.npy')!r}), np.load({str(tmp_path / 'fake.npy')!r})
        m = sidbench.FID(extractor="world-cnn")
        m.update(fake[r::w], real=False)
        m.update(real[r::w], real=True)
        out = {{"synced": m.compute(), "local_n": m.fake.n}}
        open({str(tmp_path)!r} + f"/rank{{r}}.json", "w").write(json.dumps(out))
        dist.destroy_process_group()
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    single = sidbench.compute_fid(fake, real, extractor=NET)
    for r in (0, 1):
        out = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert out["local_n"] == 150 and out["synced"] == pytest.approx(single, rel=1e-6)


def test_clip_score_function_and_object_agree(worlds, prompt_file):
    from sidbench.data.prompts import read_prompts

    prompts = read_prompts(prompt_file)
    real = worlds[0][:len(prompts)]
    kw = dict(random_weights=True, clip_model="ViT-B-32")
    value = sidbench.compute_clip_score(real, prompts, **kw)
    assert value == pytest.approx(sidbench.compute_clip_score(real, str(prompt_file), **kw), rel=1e-9)
    m = sidbench.CLIPScore(model="ViT-B-32", random_weights=True)
    m.update(torch.from_numpy(real).permute(0, 3, 1, 2), prompts)
    assert m.compute() == pytest.approx(value, rel=1e-5)
