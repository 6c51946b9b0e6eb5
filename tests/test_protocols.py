import json

import numpy as np
import pytest

from sidbench.core.errors import SidbenchError
from sidbench.eval.api import EvalConfig, evaluate
from sidbench.eval.metrics import clip_score as cs
from sidbench.eval.protocols import PROTOCOLS, check

from conftest import random_images, write_images
from test_clip_score import TINY


def test_coco2014_30k_refuses_a_broken_run_and_marks_an_allowed_one(two_folders, tiny, tmp_path):
    a, b = two_folders
    cfg = EvalConfig(protocol="coco2014-30k", use_cache=False, progress=False)
    with pytest.raises(SidbenchError) as e:
        evaluate(str(a), str(b), cfg, extractor=tiny)
    msg = str(e.value)
    assert "breaks protocol coco2014-30k" in msg and "30000" in msg and "40504" in msg and "--allow-deviation" in msg
    res = evaluate(str(a), str(b), EvalConfig(protocol="coco2014-30k", allow_deviation=True, use_cache=False,
                                              progress=False), extractor=tiny)
    assert res["protocol"]["name"] == "coco2014-30k" and res["protocol"]["comparable"] is False
    assert any("30000" in d for d in res["protocol"]["deviations"])
    assert res["preprocessing"]["pre_resize"] == 256  # the protocol's pre-resize by default


def test_a_run_that_follows_the_protocol_has_no_deviation():
    p = PROTOCOLS["coco2014-30k"]
    assert check(p, n_gen=30000, n_ref=40504, fid_mode="clean", pre_resize=256, prompts_md5=p.prompts_md5,
                 clip=True, clip_model="ViT-g-14", random_weights=False) == []
    wrong = check(p, n_gen=30000, n_ref=40504, fid_mode="legacy_tensorflow", pre_resize=None,
                  prompts_md5="0" * 32, clip=True, clip_model="ViT-B-32", random_weights=False,
                  clip_variant="torchmetrics")
    assert len(wrong) == 5 and any("CLIP variant torchmetrics" in w for w in wrong)
    assert check(PROTOCOLS["custom"], n_gen=1, n_ref=1, fid_mode="x", pre_resize=None, prompts_md5=None,
                 clip=False, clip_model=None, random_weights=True) == []


@pytest.fixture
def tiny_clip_registered(tmp_path):
    import open_clip

    (tmp_path / "sidbench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(tmp_path))


def test_eval_clip_pairs_prompts_by_index_and_matches_the_scorer(tmp_path, tiny_clip_registered):
    images = random_images(6, 0, sizes=((64, 64),))
    prompts = [f"a picture number {i}" for i in range(6)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    write_images(tmp_path / "gen", images)
    cfg = EvalConfig(fid=False, clip=True, prompts=str(tmp_path / "p.txt"), clip_model="sidbench-tiny-clip",
                     random_weights=True, progress=False, clip_batch_size=4)
    res = evaluate(str(tmp_path / "gen"), None, cfg)
    direct = cs.load_open_clip("sidbench-tiny-clip", random_weights=True, seed=0)
    direct.update(np.stack(images), prompts)
    assert res["metrics"]["clip"]["value"] == pytest.approx(direct.result()["value"], abs=1e-6)
    assert res["inputs"]["prompts"]["count"] == 6 and not res["protocol"]["comparable"]
    # the same images as an array give the same score
    np.save(tmp_path / "gen.npy", np.stack(images))
    res2 = evaluate(str(tmp_path / "gen.npy"), None, cfg)
    assert res2["metrics"]["clip"]["value"] == pytest.approx(res["metrics"]["clip"]["value"], abs=1e-7)


def test_eval_clip_count_or_name_mismatch_is_an_error(tmp_path, tiny_clip_registered):
    write_images(tmp_path / "gen", random_images(4, 0, sizes=((32, 32),)))
    (tmp_path / "p.txt").write_text("a\nb\nc\n")
    cfg = EvalConfig(fid=False, clip=True, prompts=str(tmp_path / "p.txt"), clip_model="sidbench-tiny-clip",
                     random_weights=True, progress=False)
    with pytest.raises(SidbenchError, match="4 images but only 3 prompts"):
        evaluate(str(tmp_path / "gen"), None, cfg)
    (tmp_path / "gen" / "000003.png").rename(tmp_path / "gen" / "img_3.png")
    (tmp_path / "p4.txt").write_text("a\nb\nc\nd\n")
    with pytest.raises(SidbenchError, match=r"\{i:06d\}"):
        evaluate(str(tmp_path / "gen"), None, EvalConfig(fid=False, clip=True, prompts=str(tmp_path / "p4.txt"),
                                                         clip_model="sidbench-tiny-clip", random_weights=True,
                                                         progress=False))
    with pytest.raises(SidbenchError, match="--prompts"):
        evaluate(str(tmp_path / "gen"), None, EvalConfig(fid=False, clip=True, progress=False))


def test_protocols_name_their_prompt_list_and_take_its_md5_from_the_manifest():
    from sidbench.data.prompts import KNOWN_PROMPT_LISTS
    from sidbench.eval.protocols import describe

    p = PROTOCOLS["coco2014-30k"]
    assert p.prompts == "gigagan-coco2014-30k"
    assert p.prompts_md5 == KNOWN_PROMPT_LISTS[p.prompts].md5
    assert describe(p)["prompts"] == p.prompts and describe(p)["prompts_md5"] == p.prompts_md5
    for proto in PROTOCOLS.values():                   # every protocol's list is known and says so
        if proto.prompts is not None:
            assert KNOWN_PROMPT_LISTS[proto.prompts].protocol == proto.name
        else:
            assert proto.prompts_md5 is None
    for spec in KNOWN_PROMPT_LISTS.values():           # every list of a registered protocol is that protocol's
        if spec.protocol in PROTOCOLS:
            assert PROTOCOLS[spec.protocol].prompts == spec.name
    # lists that are no evaluation protocol's: the demo world's and the distillation's training prompts
    assert {s.protocol for s in KNOWN_PROMPT_LISTS.values()} - set(PROTOCOLS) == {"sidbench-demo", "sid-lsg-training"}


def test_the_protocol_check_reads_the_md5_from_the_manifest(monkeypatch):
    from dataclasses import replace

    from sidbench.data import prompts

    p = PROTOCOLS["coco2014-30k"]
    monkeypatch.setitem(prompts.KNOWN_PROMPT_LISTS, p.prompts, replace(prompts.KNOWN_PROMPT_LISTS[p.prompts],
                                                                        md5="1" * 32))
    ok = dict(n_gen=30000, n_ref=40504, fid_mode="clean", pre_resize=256, clip=False, clip_model=None,
              random_weights=False)
    assert check(p, prompts_md5="1" * 32, **ok) == []
    assert check(p, prompts_md5="0" * 32, **ok) == [f"prompt list md5 {'0' * 32}, the protocol's list has md5 {'1' * 32}"]
    assert check(p, prompts_md5=None, **ok) == [
        f"no prompt list given, so it cannot be checked against the protocol's (md5 {'1' * 32})"]
