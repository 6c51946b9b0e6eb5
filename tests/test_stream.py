"""The one image stream: every metric of an `eval` run is fed from one decode of each image.

Known answers: a --fid --kid --clip --pr run decodes each file exactly once (counted at the decoder), and its
numbers equal those of one-metric runs on the same inputs, bit for bit (same batches, same networks).
"""
import json

import numpy as np
import pytest

from conftest import random_images, write_images
from sidbench.data import images as images_module
from sidbench.data.images import open_source
from sidbench.data.stream import ImageStream
from sidbench.eval.api import EvalConfig, evaluate
from test_clip_score import TINY


@pytest.fixture
def tiny_clip(tmp_path):
    import open_clip

    (tmp_path / "sidbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(tmp_path))
    return "sidbench-tiny-clip"


@pytest.fixture
def counted_decodes(monkeypatch):
    calls = []
    real = images_module.load_image_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(images_module, "load_image_file", counting)
    return calls


def _inputs(tmp_path, n_gen=9, n_ref=11):
    write_images(tmp_path / "gen", random_images(n_gen, 1, sizes=((40, 40),)))
    write_images(tmp_path / "ref", random_images(n_ref, 2, sizes=((40, 40),)))
    (tmp_path / "p.txt").write_text("".join(f"a photo of thing {i}\n" for i in range(n_gen)))
    return str(tmp_path / "gen"), str(tmp_path / "ref"), str(tmp_path / "p.txt")


def _cfg(prompts, clip_model, **kw):
    base = dict(fid=False, random_weights=True, use_cache=False, progress=False, batch_size=4, prompts=prompts,
                clip_model=clip_model, kid_subset_size=4, pr_k=2)
    return EvalConfig(**dict(base, **kw))


def test_every_metric_from_one_decode_equals_one_metric_runs(tmp_path, tiny, tiny_clip, counted_decodes):
    gen, ref, prompts = _inputs(tmp_path)
    together = evaluate(gen, ref, _cfg(prompts, tiny_clip, fid=True, kid=True, clip=True, pr=True), extractor=tiny)
    assert len(counted_decodes) == 9 + 11                      # one decode per file, whatever the metrics
    assert sorted(set(counted_decodes)) == sorted(counted_decodes)
    counted_decodes.clear()
    fid_only = evaluate(gen, ref, _cfg(prompts, tiny_clip, fid=True, kid=True), extractor=tiny)
    clip_only = evaluate(gen, None, _cfg(prompts, tiny_clip, clip=True))
    pr_only = evaluate(gen, ref, _cfg(prompts, tiny_clip, pr=True))
    assert len(counted_decodes) == (9 + 11) + 9 + (9 + 11)     # the same decodes, spread over three runs
    assert together["metrics"]["fid"]["value"] == fid_only["metrics"]["fid"]["value"]
    assert together["metrics"]["kid"]["mean"] == fid_only["metrics"]["kid"]["mean"]
    assert together["metrics"]["clip"]["value"] == clip_only["metrics"]["clip"]["value"]
    for key in ("precision", "recall"):
        assert together["metrics"]["pr"][key] == pr_only["metrics"]["pr"][key]
    assert together["inputs"]["generated"]["n"] == 9 and together["inputs"]["reference_pr"]["n"] == 11


def test_cached_reference_is_not_decoded_again(tmp_path, tiny, counted_decodes):
    gen, ref, _ = _inputs(tmp_path)
    cfg = EvalConfig(fid=True, pr=True, random_weights=True, progress=False, batch_size=4, pr_k=2,
                     cache_dir=str(tmp_path / "cache"))
    first = evaluate(gen, ref, cfg, extractor=tiny)
    counted_decodes.clear()
    again = evaluate(gen, ref, cfg, extractor=tiny)
    assert len(counted_decodes) == 9                              # both reference statistics came from the cache
    assert again["inputs"]["reference"]["cache_hit"] and again["inputs"]["reference_pr"]["cache_hit"]
    assert again["metrics"]["fid"]["value"] == first["metrics"]["fid"]["value"]


def test_an_unreadable_file_is_skipped_once_for_every_metric(tmp_path, tiny, tiny_clip):
    gen, ref, prompts = _inputs(tmp_path)
    (tmp_path / "gen" / "000004.png").write_bytes(b"not a png")
    res = evaluate(gen, ref, _cfg(prompts, tiny_clip, fid=True, clip=True, pr=True, skip_bad=True), extractor=tiny)
    assert res["inputs"]["generated"]["skipped"] == 1
    assert res["inputs"]["generated"]["skipped_files"][0]["file"].endswith("000004.png")
    assert res["metrics"]["fid"]["n_gen"] == 8 and res["metrics"]["clip"]["n"] == 8
    with pytest.raises(Exception, match="000004.png"):
        evaluate(gen, ref, _cfg(prompts, tiny_clip, fid=True, clip=True), extractor=tiny)


def test_folders_arrays_and_generators_are_one_interface(tmp_path, tiny_sd, prompt_file):
    from sidbench.gen.generate import GenerateConfig, open_generated

    gen, _, _ = _inputs(tmp_path)
    arr = np.stack([np.asarray(im) for im in random_images(5, 3, sizes=((16, 16),))])
    streams = [open_source(gen), open_source(arr),
               open_generated(GenerateConfig(base=str(tiny_sd), prompts=str(prompt_file), batch_size=2, steps=2))]
    for s in streams:
        assert isinstance(s, ImageStream)
        idx = list(range(len(s)))[1:5]
        batches = list(s.batches(idx, batch_size=3))
        assert [i for b in batches for i in b.indices] == idx
        assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for b in batches for im in b.items)
        assert s.describe()["count"] == len(s)
