"""Metrics beyond FID with known answers: Vendi score's cluster counts, CMMD against a literal restatement of
its reference code, FID-infinity's extrapolation on Gaussian features, and the bootstrap's coverage."""
import math

import numpy as np
import pytest

from sidbench.eval.bootstrap import bootstrap_fd, bootstrap_mean, weighted_moments
from sidbench.eval.metrics.cmmd import cmmd
from sidbench.eval.metrics.fid import frechet_distance
from sidbench.eval.metrics.fid_infinity import default_ns, fid_infinity
from sidbench.eval.metrics.vendi import vendi_score, vendi_score_kernel


def _clusters(sizes, d=16, seed=0):
    basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]  # orthonormal directions
    return np.concatenate([np.repeat(basis[i:i + 1] * (i + 2.0), s, axis=0) for i, s in enumerate(sizes)])


@pytest.mark.parametrize("k", [1, 3, 7])
def test_vendi_of_k_equal_orthogonal_clusters_is_k(k):
    assert vendi_score(_clusters([5] * k)) == pytest.approx(k, rel=1e-9)
    assert vendi_score(_clusters([40] * k)) == pytest.approx(k, rel=1e-9)  # n > d: the dual (d x d) route


def test_vendi_of_unequal_clusters_is_the_exponential_entropy_and_orders_behave():
    sizes = [6, 3, 1]
    p = np.array(sizes) / sum(sizes)
    x = _clusters(sizes)
    assert vendi_score(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert vendi_score(x, q=2) == pytest.approx(1 / (p ** 2).sum(), rel=1e-9)
    assert vendi_score(x, q=math.inf) == pytest.approx(1 / p.max(), rel=1e-9)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert vendi_score_kernel(xn @ xn.T) == pytest.approx(vendi_score(x), rel=1e-9)


def _cmmd_reference(x, y, sigma=10.0, scale=1000.0):
    """The reference's distance.mmd, restated literally (numpy for jax)."""
    x_sq, y_sq = np.diag(x @ x.T), np.diag(y @ y.T)
    gamma = 1 / (2 * sigma ** 2)
    k_xx = np.mean(np.exp(-gamma * (-2 * x @ x.T + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * x @ y.T + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * y @ y.T + y_sq[:, None] + y_sq[None, :])))
    return scale * (k_xx + k_yy - 2 * k_xy)


def test_cmmd_equals_the_reference_formula_and_is_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 12)), rng.normal(0.3, 1.0, size=(29, 12))
    x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    assert cmmd(x, y, block=5) == pytest.approx(_cmmd_reference(x, y), rel=1e-10)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)
    assert cmmd(x, y) > 0


def test_fid_infinity_removes_the_one_over_n_bias_on_gaussian_features():
    """Generated and reference both N(0, I) in 32 dimensions: the true FD is 0, and FID_N's bias is
    ~ d / N + d (d + 1) / (4 N): ~0.74 at N = 400 and ~0.074 still at N = 4000 (seeds 0-5 measured: the
    intercept stayed within 0.022 of 0, the full-N FID at 0.070-0.079)."""
    rng = np.random.default_rng(1)
    d, n = 32, 4000
    x = rng.normal(size=(n, d))
    res = fid_infinity(x, np.zeros(d), np.eye(d), ns=default_ns(n), seed=0)
    assert res["fids"][0] > 0.5 and res["fids"][-1] > 0.06  # the biased estimates
    assert abs(res["value"]) < 0.035  # the extrapolation removes the bias
    assert res["slope"] > 0 and res["ns"] == default_ns(n) and res["ns"][0] == 400 and res["ns"][-1] == n


def test_weighted_moments_equal_the_moments_of_the_repeated_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4))
    w = np.array([0, 2, 1, 0, 3, 1, 0, 1, 1], np.float64)
    rep = np.repeat(x, w.astype(int), axis=0)
    m, c = weighted_moments(x, w, chunk=4)
    assert np.allclose(m, rep.mean(0)) and np.allclose(c, np.cov(rep, rowvar=False))


def test_bootstrap_interval_of_a_mean_covers_at_its_level():
    """Known sampling distribution: the mean of n normal draws. 200 data sets, 95% intervals: the count that
    covers the true mean is Binomial(200, ~0.95); 175..198 holds with probability > 0.999 at a true 0.95."""
    rng = np.random.default_rng(3)
    covered = 0
    for rep in range(200):
        v = rng.normal(1.0, 2.0, size=60)
        ci = bootstrap_mean(v, b=400, seed=rep)
        covered += ci["low"] <= 1.0 <= ci["high"]
    assert 175 <= covered <= 198, covered


def test_bootstrap_fd_spread_matches_the_sampling_spread_of_fd():
    """FD of n Gaussian samples against the true distribution: its spread over fresh data sets (Monte Carlo)
    is what the bootstrap's std estimates from one data set."""
    rng = np.random.default_rng(4)
    d, n = 4, 400
    mu = np.array([0.6, 0, 0, 0])
    fresh = []
    for _ in range(300):
        x = rng.normal(size=(n, d)) + mu
        fresh.append(frechet_distance(x.mean(0), np.cov(x, rowvar=False), np.zeros(d), np.eye(d)))
    true_std = float(np.std(fresh, ddof=1))
    x = rng.normal(size=(n, d)) + mu
    ci = bootstrap_fd(x, np.zeros(d), np.eye(d), b=300, seed=0)
    assert 0.7 * true_std < ci["std"] < 1.4 * true_std, (ci["std"], true_std)
    assert ci["low"] < ci["high"] and ci["replicates"] == 300 and ci["seed"] == 0


def test_bootstrap_fd_interval_covers_the_population_fd_despite_the_finite_n_bias():
    """16-d Gaussian features, N = 300: FD_N sits ~0.28 above the true 0.36. The basic interval covers the true
    FD at about its level; a percentile interval of the same replicates (shifted up by the bias) would not."""
    d, n, truth = 16, 300, 0.36
    mu = np.zeros(d)
    mu[0] = 0.6
    covered = percentile = 0
    for r in range(40):
        x = np.random.default_rng(100 + r).normal(size=(n, d)) + mu
        ci = bootstrap_fd(x, np.zeros(d), np.eye(d), b=60, seed=r)
        covered += ci["low"] <= truth <= ci["high"]
        lo_p, hi_p = 2 * ci["estimate"] - ci["high"], 2 * ci["estimate"] - ci["low"]  # back to the percentiles
        percentile += lo_p <= truth <= hi_p
        assert ci["bias"] > 0.15  # the replicates' shift, ~ the estimator's own bias
    assert covered >= 34 and percentile <= 4, (covered, percentile)


def test_bootstrap_cmmd_replicates_are_cmmd_of_the_resampled_set():
    """Each replicate is the reference's CMMD of the generated images repeated by their multinomial counts (the
    blockwise quadratic form computes exactly that), and the estimate is CMMD itself."""
    from sidbench.eval.bootstrap import bootstrap_cmmd

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(30, 5)) * 3, rng.normal(size=(25, 5)) * 3
    ci = bootstrap_cmmd(x, y, b=7, seed=4, block=8)
    assert ci["estimate"] == pytest.approx(_cmmd_reference(x, y), rel=1e-10)
    draws = np.random.default_rng(4)
    reps = [_cmmd_reference(np.repeat(x, draws.multinomial(30, np.full(30, 1 / 30)), axis=0), y) for _ in range(7)]
    assert ci["std"] == pytest.approx(np.std(reps, ddof=1), rel=1e-9)
    assert ci["bias"] == pytest.approx(np.mean(reps) - ci["estimate"], rel=1e-9, abs=1e-12)


def test_bootstrap_cmmd_interval_covers_the_population_mmd_of_gaussians():
    """Generated x ~ N(mu, I_4) against a fixed reference sample y: with k = exp(-|a-b|^2 / 2), E k(x, x') =
    3^-2 and E_x k(x, y_j) = 2^-2 exp(-|mu - y_j|^2 / 4) in closed form, so the population CMMD (given y) is known.
    The V-statistic sits ~(1 - E k(x, x')) / n above it; the basic interval covers it at about its level, a
    percentile interval of the same replicates would not."""
    from sidbench.eval.bootstrap import bootstrap_cmmd

    d, n = 4, 200
    mu = np.zeros(d)
    mu[0] = 0.5
    y = np.random.default_rng(0).normal(size=(400, d))
    kyy = np.exp(-((y[:, None] - y[None]) ** 2).sum(-1) / 2).mean()
    truth = 1000 * (3.0 ** -2 + kyy - 2 * (2.0 ** -2 * np.exp(-((mu - y) ** 2).sum(1) / 4)).mean())
    covered = percentile = 0
    for r in range(40):
        x = np.random.default_rng(100 + r).normal(size=(n, d)) + mu
        ci = bootstrap_cmmd(x, y, b=100, seed=r, sigma=1.0)
        covered += ci["low"] <= truth <= ci["high"]
        percentile += 2 * ci["estimate"] - ci["high"] <= truth <= 2 * ci["estimate"] - ci["low"]
    assert covered >= 34 and percentile <= 6, (covered, percentile)


def test_eval_reports_intervals_fid_infinity_and_vendi_from_the_same_pass(tmp_path, capsys):
    """The pass's own per-image features, saved, give back every new number through the functions above."""
    from conftest import random_images, tiny_extractor, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.results import print_table
    from sidbench.eval.stats import FeatureStats

    write_images(tmp_path / "gen", random_images(40, 1))
    write_images(tmp_path / "ref", random_images(30, 2))
    (tmp_path / "p.txt").write_text("".join(f"prompt {i}\n" for i in range(40)))
    cfg = EvalConfig(fid_infinity=True, vendi=True, bootstrap=50, bootstrap_seed=3, clip=True,
                     prompts=str(tmp_path / "p.txt"), clip_model="ViT-B-32", random_weights=True, use_cache=False,
                     progress=False)
    res = evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), cfg, extractor=tiny_extractor(),
                   save_stats=str(tmp_path / "gen.npz"))
    ref = evaluate(str(tmp_path / "ref"), str(tmp_path / "ref"), EvalConfig(use_cache=False, progress=False),
                   extractor=tiny_extractor(), save_stats=str(tmp_path / "ref.npz"))
    assert ref["metrics"]["fid"]["value"] == pytest.approx(0, abs=1e-9)
    g, r = FeatureStats.load(tmp_path / "gen.npz"), FeatureStats.load(tmp_path / "ref.npz")
    m = res["metrics"]
    assert m["fid"]["interval"] == bootstrap_fd(g.ordered_features(), r.mean, r.cov, 50, 3, 0.95)
    assert m["fid_infinity"]["value"] == pytest.approx(
        fid_infinity(g.ordered_features(), r.mean, r.cov, seed=3)["value"], rel=1e-12)
    assert m["vendi"]["value"] == pytest.approx(vendi_score(g.ordered_features()), rel=1e-12)
    ci = m["clip"]["interval"]
    assert ci["low"] <= m["clip"]["value"] <= ci["high"] and ci["replicates"] == 50
    import io

    from rich.console import Console

    con = Console(width=500, file=io.StringIO(), record=True)  # one line per row
    print_table(res, con)
    shown = con.export_text()
    assert "FD∞" in shown and "Vendi" in shown and "± " in shown and "95% basic bootstrap interval" in shown


def test_report_shows_value_plus_minus_half_width_where_an_interval_exists(tmp_path):
    from typer.testing import CliRunner

    from conftest import random_images, tiny_extractor, write_images
    from sidbench.cli.app import app
    from sidbench.eval.api import EvalConfig, evaluate

    write_images(tmp_path / "gen", random_images(24, 1))
    write_images(tmp_path / "ref", random_images(20, 2))
    for name, b in (("with.json", 40), ("without.json", 0)):
        evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), EvalConfig(bootstrap=b, use_cache=False, progress=False),
                 extractor=tiny_extractor(), out=str(tmp_path / name), subject={"name": name[:-5]})
    res = __import__("json").loads((tmp_path / "with.json").read_text())
    ci = res["metrics"]["fid"]["interval"]
    from sidbench.eval.bootstrap import spread

    half = f"{spread(ci):.2f}"
    r = CliRunner().invoke(app, ["report", str(tmp_path / "with.json"), str(tmp_path / "without.json"),
                                 "--out", str(tmp_path / "t.md")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "t.md").read_text()
    assert f"{res['metrics']['fid']['value']:.2f} ± {half}" in md
    r = CliRunner().invoke(app, ["report", str(tmp_path / "with.json"), "--format", "csv", "--out", str(tmp_path / "t.csv")])
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert r.exit_code == 0 and any(h.startswith("fd_") and h.endswith("_pm") for h in header), header


def test_report_gives_each_metric_beyond_fid_a_column_with_its_interval(tmp_path, monkeypatch):
    """eval's real results with Vendi and ImageReward (bootstrap on): report's table gains their columns, each cell
    the value with its ± where the metric has an interval, in md and CSV; a metric no result has gets no column."""
    import json

    from typer.testing import CliRunner

    from conftest import random_images, tiny_extractor, write_images
    from sidbench.cli.app import app
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.bootstrap import spread
    from sidbench.eval.metrics import image_reward as IR

    real = IR.load_image_reward_scorer
    monkeypatch.setattr(IR, "load_image_reward_scorer", lambda **kw: real(**kw, **_IR_SMALL))
    write_images(tmp_path / "gen", random_images(16, 1))
    write_images(tmp_path / "ref", random_images(16, 2))
    (tmp_path / "p.txt").write_text("".join(f"prompt number {i}\n" for i in range(16)))
    evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), EvalConfig(
        bootstrap=30, vendi=True, image_reward=True, prompts=str(tmp_path / "p.txt"), random_weights=True,
        use_cache=False, progress=False), extractor=tiny_extractor(), out=str(tmp_path / "a.json"), subject={"name": "a"})
    res = json.loads((tmp_path / "a.json").read_text())
    ir = res["metrics"]["image_reward"]
    r = CliRunner().invoke(app, ["report", str(tmp_path / "a.json"), "--out", str(tmp_path / "t.md")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "t.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Protocol"))
    assert "ImageReward" in header and "Vendi" in header and "CMMD" not in header and "HPS" not in header
    assert f"{ir['value']:.3f} ± {spread(ir['interval']):.3f}" in md
    import re

    assert re.search(rf"\|\s*{res['metrics']['vendi']['value']:.2f}\s*\|", md)  # no interval: the value alone
    r = CliRunner().invoke(app, ["report", str(tmp_path / "a.json"), "--format", "csv", "--out", str(tmp_path / "t.csv")])
    rows = (tmp_path / "t.csv").read_text().splitlines()
    cols = rows[0].split(",")
    assert {"image_reward", "image_reward_pm", "vendi"} <= set(cols) and "vendi_pm" not in cols
    assert float(rows[1].split(",")[cols.index("image_reward")]) == pytest.approx(ir["value"], abs=5e-4)


def test_paired_comparison_known_cases_and_null_calibration():
    from sidbench.eval.compare import paired_compare

    rng = np.random.default_rng(5)
    a = rng.normal(0.3, 0.05, size=200)
    same = paired_compare(a, a.copy(), r_perm=999)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    better = paired_compare(a, a + 0.01 + rng.normal(0, 0.005, size=200), r_perm=999)
    assert better["p_value"] == pytest.approx(1 / 1000) and better["interval"]["low"] > 0
    # Under the null (B and A exchangeable per pair), p is uniform: ~5% of p-values fall below 0.05.
    small = sum(paired_compare(a, a + rng.normal(0, 0.01, size=200), r_perm=199, b_boot=10, seed=s)["p_value"] < 0.05
                for s in range(100))
    assert 0 <= small <= 12, small


def test_eval_per_sample_then_compare_on_the_command_line(tmp_path):
    import json

    from typer.testing import CliRunner

    from conftest import random_images, write_images
    from sidbench.cli.app import app

    write_images(tmp_path / "gen", random_images(12, 1))
    (tmp_path / "p.txt").write_text("".join(f"a photo of thing {i}\n" for i in range(12)))
    r = CliRunner().invoke(app, ["eval", "--images", str(tmp_path / "gen"), "--clip", "--prompts", str(tmp_path / "p.txt"),
                                 "--random-weights", "--clip-model", "ViT-B-32", "--per-sample", str(tmp_path / "a.csv"),
                                 "--out", str(tmp_path / "a.json"), "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "a.json").read_text())
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0] == "index,file,prompt,clip" and len(rows) == 13 and rows[1].startswith("0,000000.png,a photo of thing 0,")
    clip = [float(x.split(",")[-1]) for x in rows[1:]]
    assert np.mean(clip) == pytest.approx(res["metrics"]["clip"]["value"], rel=1e-9)
    assert res["outputs"]["per_sample"] == str((tmp_path / "a.csv").resolve())
    shifted = [rows[0]] + [",".join([*x.split(",")[:-1], repr(float(x.split(",")[-1]) + 0.01)]) for x in rows[1:]]
    (tmp_path / "b.csv").write_text("\n".join(shifted) + "\n")
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json",
                                 "--permutations", "999"])
    assert r.exit_code == 0, r.output
    (cmp,) = json.loads(r.stdout)
    # 12 pairs all shifted alike: the exact sign-flip p is 2 / 2^12; 999 Monte Carlo draws put it below 0.01
    assert cmp["difference"] == pytest.approx(0.01) and cmp["p_value"] < 0.01
    (tmp_path / "c.csv").write_text("\n".join(rows[:6]) + "\n")
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "c.csv")])
    assert r.exit_code == 2 and "same images" in r.output


def test_aesthetic_head_is_one_affine_map_of_the_normalised_embedding():
    import torch

    from sidbench.eval.metrics.aesthetic import AestheticHead

    torch.manual_seed(0)
    head = AestheticHead(12).eval()
    L = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
    w, b = L[0].weight.T, L[0].bias
    for lin in L[1:]:  # no activations between the layers: the product of the weights, the biases carried
        w, b = w @ lin.weight.T, b @ lin.weight.T + lin.bias
    x = torch.randn(5, 12)
    assert torch.allclose(head(x), x @ w + b, atol=1e-5)
    keys = set(head.state_dict())  # the reference MLP's state-dict keys, so its .pth loads as it is
    assert keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}


def test_eval_aesthetic_equals_a_literal_restatement_per_image(tmp_path, monkeypatch):
    import json

    import torch
    from PIL import Image

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    imgs = random_images(6, 3)
    write_images(tmp_path / "gen", imgs)
    cfg = EvalConfig(fid=False, aesthetic=True, random_weights=True, per_sample=str(tmp_path / "a.csv"),
                     bootstrap=20, progress=False)
    import sidbench.eval.metrics.aesthetic as A

    real_loader = A.load_aesthetic_scorer
    monkeypatch.setattr(A, "load_aesthetic_scorer", lambda **kw: real_loader(**{**kw, "model_name": "ViT-B-32"}))
    res = evaluate(str(tmp_path / "gen"), None, cfg)  # the same seeded random weights as ``ref``: a smaller CLIP
    ref = real_loader(random_weights=True, model_name="ViT-B-32")
    with torch.no_grad():  # the reference's simple_inference.py, restated: preprocess, encode, normalise, MLP
        lit = []
        for im in imgs:
            e = ref.clip.encode_image(ref.preprocess(Image.fromarray(im)).unsqueeze(0)).float()
            lit.append(float(ref.head(e / e.norm(dim=-1, keepdim=True))))
    a = res["metrics"]["aesthetic"]
    assert a["value"] == pytest.approx(np.mean(lit), rel=1e-5) and a["n"] == 6 and "interval" in a
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0] == "index,file,prompt,aesthetic"
    assert [float(r.split(",")[-1]) for r in rows[1:]] == pytest.approx(lit, rel=1e-5)
    assert not res["protocol"]["comparable"]  # random weights


# --- FD-DINOv2 and CMMD: their networks, resizes and the one pass -------------------------------------------

def test_dinov2_equals_timm_at_518_and_resamples_its_grid_at_224_as_the_hub_does():
    """At the training size the hub network and timm's agree (same weights); at 224 the position grid is the
    hub's bicubic scale_factor (16 + 0.1) / 37 resample, which timm's and transformers' size=(16, 16) rule is not."""
    import timm
    import torch
    import torch.nn.functional as F

    from sidbench.eval.extractors.dinov2 import DinoV2, resample_position_grid

    torch.manual_seed(0)
    ours = DinoV2(dim=32, depth=2, heads=2).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.05)
    theirs = timm.models.vision_transformer.VisionTransformer(
        img_size=518, patch_size=14, embed_dim=32, depth=2, num_heads=2, init_values=1.0, num_classes=0).eval()
    theirs.load_state_dict({k: v for k, v in ours.state_dict().items() if k != "mask_token"}, strict=True)
    x = torch.randn(2, 3, 518, 518)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    grid = ours.pos_embed[:, 1:].reshape(1, 37, 37, 32).permute(0, 3, 1, 2)
    hub = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    mine = resample_position_grid(ours.pos_embed, 16, 16)
    assert torch.equal(mine[:, 1:], hub.permute(0, 2, 3, 1).reshape(1, 256, 32)) and torch.equal(mine[:, :1], ours.pos_embed[:, :1])
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 256, 32)
    assert (mine[:, 1:] - by_size).abs().max() > 1e-3  # the substitution would be caught
    with torch.no_grad():  # and the CLS feature is the post-norm token 0 at 224 too
        t = ours.patch_embed(x[:, :, :224, :224])
        t = torch.cat([ours.cls_token.expand(2, -1, -1), t], 1) + mine
        for blk in ours.blocks:
            t = blk(t)
        assert torch.allclose(ours(x[:, :, :224, :224]), ours.norm(t)[:, 0], atol=1e-6)


def test_openai_clip_files_load_as_quickgelu_networks(tmp_path):
    import open_clip
    import torch

    from sidbench.eval.extractors.clip_embed import openai_clip

    a, _ = openai_clip("ViT-B-32", seed=3)
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in a.modules())  # OpenAI's activation
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b, _ = openai_clip("ViT-B-32", str(tmp_path / "w.pt"), seed=4)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(a.encode_image(x), b.encode_image(x))


def _register_small():
    """Small networks of the real classes, registered like the published ones (same resizes, own sizes)."""
    from sidbench.eval.extractors import dinov2
    from sidbench.eval.extractors.clip_embed import ClipImageEmbedding, openai_clip
    from sidbench.eval.extractors.registry import ExtractorSpec, register_extractor

    def small_dino(seed, mode):
        import torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = dinov2.DinoV2(dim=48, depth=2, heads=3)
            for p in net.parameters():
                torch.nn.init.normal_(p, std=0.05)
        return dinov2.DinoV2Features(net)

    register_extractor(ExtractorSpec("dinov2-test", "small DINOv2", 48, (), None, None, small_dino,
                                     resize="squash-pil-224"), replace=True)
    register_extractor(ExtractorSpec("clip-test", "small CLIP", 512, (), None, None,
                                     lambda seed, mode: ClipImageEmbedding(openai_clip("ViT-B-32", seed=seed)[0]),
                                     resize="crop-pil-224"), replace=True)
    return small_dino


def test_eval_fd_dinov2_and_cmmd_equal_their_references_restated(tmp_path):
    """One pass gives FD-DINOv2 (dgm-eval: PIL bicubic 224 squash, ImageNet norm, np.cov, sqrtm) and CMMD
    (the reference's crop + PIL bicubic, OpenAI norm, normalised embeddings, distance.mmd) as restated here."""
    import scipy.linalg
    import torch
    from PIL import Image

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD, openai_clip

    small_dino = _register_small()
    gen, ref = random_images(9, 11), random_images(7, 12)
    write_images(tmp_path / "gen", gen)
    write_images(tmp_path / "ref", ref)
    cfg = EvalConfig(fid=False, fd_dinov2=True, dinov2="dinov2-test", cmmd=True, cmmd_extractor="clip-test",
                     random_weights=True, use_cache=False, progress=False)
    res = evaluate(str(tmp_path / "gen"), str(tmp_path / "ref"), cfg)

    dino, clip = small_dino(0, "").eval(), openai_clip("ViT-B-32", seed=0)[0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

    def dgm(images):  # dgm-eval dinov2.py transform: Resize((224, 224), BICUBIC) on PIL, ToTensor, Normalize
        x = np.stack([(np.asarray(Image.fromarray(im).resize((224, 224), Image.BICUBIC)) / 255 - mean) / std
                      for im in images]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            return dino.net(torch.tensor(x, dtype=torch.float32)).double().numpy()

    def cmmd_embed(images):  # cmmd io_util._center_crop_and_resize, /255, clip normalisation, normalise
        out = []
        for im in images:
            pil = Image.fromarray(im)
            w, h = pil.size
            l = min(w, h)
            pil = pil.crop(((w - l) // 2, (h - l) // 2, (w - l) // 2 + l, (h - l) // 2 + l)).resize((224, 224), Image.BICUBIC)
            out.append((np.asarray(pil) / 255.0 - np.array(OPENAI_MEAN)) / np.array(OPENAI_STD))
        with torch.no_grad():
            e = clip.encode_image(torch.tensor(np.stack(out).transpose(0, 3, 1, 2), dtype=torch.float32)).double()
        return (e / e.norm(dim=-1, keepdim=True)).numpy()

    fg, fr = dgm(gen), dgm(ref)
    m1, m2, s1, s2 = fg.mean(0), fr.mean(0), np.cov(fg, rowvar=False), np.cov(fr, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    fd = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert res["metrics"]["fd_dinov2"]["value"] == pytest.approx(fd, rel=1e-4)

    x, y = cmmd_embed(gen), cmmd_embed(ref)  # distance.mmd, restated: gamma = 1 / (2 sigma^2), means of full matrices
    k = lambda a, b: np.exp(-(1 / 200) * (-2 * a @ b.T + (a * a).sum(1)[:, None] + (b * b).sum(1)[None]))  # noqa: E731
    assert res["metrics"]["cmmd"]["value"] == pytest.approx(1000 * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()),
                                                            rel=1e-4)
    assert res["extractors"]["dinov2"]["preprocessing"]["fid_mode"] == "squash-pil-224"
    assert not res["protocol"]["comparable"]  # random weights, and not the published CLIP


def test_per_sample_parquet_reads_back_like_the_csv(tmp_path):
    from sidbench.eval.compare import compare_files, read_per_sample, write_per_sample

    scores = {"clip": {0: 0.25, 1: 0.5, 2: 0.125}}
    write_per_sample(tmp_path / "a.csv", [0, 1, 2], ["p0", "p, 1", "p2"], ["a.png", "b.png", "c.png"], scores)
    write_per_sample(tmp_path / "a.parquet", [0, 1, 2], ["p0", "p, 1", "p2"], ["a.png", "b.png", "c.png"], scores)
    a, b = read_per_sample(tmp_path / "a.csv"), read_per_sample(tmp_path / "a.parquet")
    assert a["index"] == b["index"] and a["prompt"] == b["prompt"] == ["p0", "p, 1", "p2"]
    assert list(b["scores"]["clip"]) == [0.25, 0.5, 0.125]
    (cmp,) = compare_files(tmp_path / "a.csv", tmp_path / "a.parquet", r_perm=99, b_boot=10)
    assert cmp["difference"] == 0


def test_default_fid_path_loads_none_of_the_extra_networks(tmp_path):
    """The extra metrics cost nothing unless asked for: a default FID run imports none of their code."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import random_images, write_images

    write_images(tmp_path / "g", random_images(6, 1))
    code = ("import sys; sys.path.insert(0, %r); from conftest import tiny_extractor;"
            "from sidbench.eval.api import EvalConfig, evaluate;"
            "evaluate(%r, %r, EvalConfig(use_cache=False, progress=False), extractor=tiny_extractor());"
            "print(sorted(m for m in ('open_clip', 'timm', 'transformers', 'sidbench.eval.metrics.aesthetic',"
            " 'sidbench.eval.extractors.clip_embed', 'sidbench.eval.metrics.cmmd') if m in sys.modules))"
            % (str(Path(__file__).parent), str(tmp_path / "g"), str(tmp_path / "g")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_cli_fd_dinov2_on_the_real_small_backbone_caches_the_reference(tmp_path):
    import json

    from typer.testing import CliRunner

    from conftest import random_images, write_images
    from sidbench.cli.app import app

    write_images(tmp_path / "gen", random_images(5, 1))
    write_images(tmp_path / "ref", random_images(5, 2))
    args = ["eval", "--images", str(tmp_path / "gen"), "--ref", str(tmp_path / "ref"), "--fd-dinov2",
            "--dinov2-model", "vits14", "--dinov2-resize", "squash-torch", "--random-weights",
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert "fid" not in a["metrics"] and a["metrics"]["fd_dinov2"]["value"] > 0
    assert a["extractors"]["dinov2"]["dim"] == 384 and a["inputs"]["reference_dinov2"]["cache_hit"] is False
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.json")])
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["inputs"]["reference_dinov2"]["cache_hit"] is True
    assert b["metrics"]["fd_dinov2"]["value"] == a["metrics"]["fd_dinov2"]["value"]
    r = CliRunner().invoke(app, ["eval", "--help"])
    assert "Beyond Inception" in r.output and "--fd-dinov2" in r.output and "--cmmd" in r.output


# --- Preference scores: HPSv2 and PickScore -------------------------------------------------------------------

def test_hps_letterbox_restates_the_vendored_resize_max_size():
    """tgxs002/HPSv2 transform.py: ToTensor, ResizeMaxSize(224) (tensor bicubic, pad [pw//2, ph//2, pw - pw//2,
    ph - ph//2] with 0), then OpenAI normalisation: the pad is -mean/std; a 224x224 image is only normalised."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD
    from sidbench.eval.metrics.preference import hps_letterbox

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)  # H=200, W=300: scale 224/300
    x = TF.to_tensor(img)
    ref = TF.pad(TF.resize(x, [149, 224], InterpolationMode.BICUBIC), padding=[0, 37, 0, 38], fill=0)
    ours = hps_letterbox(img)
    assert ours.shape == (3, 224, 224)
    assert torch.allclose(ours, TF.normalize(ref, OPENAI_MEAN, OPENAI_STD), atol=1e-6)
    pad = -torch.tensor(OPENAI_MEAN) / torch.tensor(OPENAI_STD)
    assert torch.allclose(ours[:, 0, 0], pad) and torch.allclose(ours[:, -1, -1], pad)
    sq = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    assert torch.allclose(hps_letterbox(sq), TF.normalize(TF.to_tensor(sq), OPENAI_MEAN, OPENAI_STD), atol=1e-7)


def test_eval_hps_and_pickscore_per_image_equal_the_references_restated(tmp_path, monkeypatch):
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD
    from sidbench.eval.metrics import preference as P

    small = P.pickscore_config(text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2),
                               vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, patch_size=32), projection_dim=16)
    real_hps, real_pick = P.load_hps_scorer, P.load_pickscore_scorer
    monkeypatch.setattr(P, "load_hps_scorer", lambda *a, **kw: real_hps(*a, **{**kw, "model_name": "ViT-B-32"}))
    monkeypatch.setattr(P, "load_pickscore_scorer", lambda **kw: real_pick(**{**kw, "config": small}))
    imgs = random_images(5, 4)
    write_images(tmp_path / "gen", imgs)
    prompts = ["a red cube", "two dogs on a beach at sunset", "a bowl", "city at night, rain", "a cat with two horns"]
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in prompts))
    cfg = EvalConfig(fid=False, hps=True, pickscore=True, prompts=str(tmp_path / "p.txt"), random_weights=True,
                     per_sample=str(tmp_path / "s.csv"), progress=False)
    res = evaluate(str(tmp_path / "gen"), None, cfg)

    hps = real_hps("v2.1", random_weights=True, model_name="ViT-B-32")
    pick = real_pick(random_weights=True, config=small)
    with torch.no_grad():  # img_score.score: diag(normalised image @ normalised text), per image
        lit_h = [float((F.normalize(hps.model.encode_image(P.hps_letterbox(im)[None]), dim=-1)
                        * F.normalize(hps.model.encode_text(hps.tokenizer([p])), dim=-1)).sum())
                 for im, p in zip(imgs, prompts)]
        lit_p = []
        for im, p in zip(imgs, prompts):  # the CLIP processor restated: PIL bicubic short side 224, centre crop
            pil = Image.fromarray(im)
            w, h = pil.size
            s = 224 / min(w, h)
            pil = pil.resize((224 if w <= h else int(w * s), 224 if h <= w else int(h * s)), Image.BICUBIC)
            w, h = pil.size
            left, top = (w - 224) // 2, (h - 224) // 2
            x = (np.asarray(pil.crop((left, top, left + 224, top + 224))) / 255.0 - OPENAI_MEAN) / OPENAI_STD
            fi = pick.model.get_image_features(pixel_values=torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32))
            t = pick.tokenizer([p], truncation=True, max_length=77, return_tensors="pt")
            ft = pick.model.get_text_features(**t)
            from sidbench.eval.metrics.clip_score import _as_tensor
            lit_p.append(float(pick.model.logit_scale.exp() * F.cosine_similarity(_as_tensor(fi), _as_tensor(ft))))
    m = res["metrics"]
    assert m["hps"]["value"] == pytest.approx(np.mean(lit_h), rel=1e-5) and m["hps"]["version"] == "v2.1"
    assert m["pickscore"]["value"] == pytest.approx(np.mean(lit_p), rel=1e-4)
    rows = [r.split(",") for r in (tmp_path / "s.csv").read_text().splitlines()]
    assert rows[0][-2:] == ["hps", "pickscore"]
    assert [float(r[-2]) for r in rows[1:]] == pytest.approx(lit_h, rel=1e-5)
    assert [float(r[-1]) for r in rows[1:]] == pytest.approx(lit_p, rel=1e-4)


# --- ImageReward -----------------------------------------------------------------------------------------------

_IR_SMALL = dict(vision=dict(embed_dim=48, depth=2, num_heads=3, patch_size=32),
                 text=dict(encoder_hidden_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64))


def _image_reward_restated(sd, pixels, ids, mask, vit_heads, bert_heads):
    """THUDM/ImageReward ImageReward.score, restated on the state dict: BLIP vit.py (pre-norm blocks, eps 1e-6,
    all tokens after the final norm), med.py BertModel in mode 'multimodal' (word + position embeddings,
    post-norm layers, additive (1 - mask) * -10000 self-attention mask, cross-attention over every image token),
    then the first token through the linear MLP and (r - mean) / std."""
    import torch
    import torch.nn.functional as F

    def lin(x, p):
        return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])

    def heads(x, n):
        return x.view(x.shape[0], x.shape[1], n, -1).transpose(1, 2)

    def attend(q, k, v, n, add_mask=0.0):
        q, k, v = heads(q, n), heads(k, n), heads(v, n)
        a = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + add_mask).softmax(-1)
        return (a @ v).transpose(1, 2).flatten(2)

    v = "blip.visual_encoder."
    x = F.conv2d(pixels, sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"], stride=32)
    x = torch.cat([sd[v + "cls_token"].expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1) + sd[v + "pos_embed"]
    d = x.shape[-1]
    for i in range(len({k.split(".")[3] for k in sd if k.startswith(v + "blocks.")})):
        b = f"{v}blocks.{i}."
        h = F.layer_norm(x, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6)
        q, k, vv = lin(h, b + "attn.qkv").chunk(3, -1)
        x = x + lin(attend(q, k, vv, vit_heads), b + "attn.proj")
        h = F.layer_norm(x, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6)
        x = x + lin(F.gelu(lin(h, b + "mlp.fc1")), b + "mlp.fc2")
    img = F.layer_norm(x, (d,), sd[v + "norm.weight"], sd[v + "norm.bias"], 1e-6)

    t = "blip.text_encoder."
    w = sd[t + "embeddings.word_embeddings.weight"].shape[1]
    ln = lambda x, p: F.layer_norm(x, (w,), sd[p + ".weight"], sd[p + ".bias"], 1e-12)  # noqa: E731
    h = ln(sd[t + "embeddings.word_embeddings.weight"][ids]
           + sd[t + "embeddings.position_embeddings.weight"][: ids.shape[1]], t + "embeddings.LayerNorm")
    add_mask = (1.0 - mask[:, None, None, :].float()) * -10000.0
    for i in range(len({k.split(".")[4] for k in sd if k.startswith(t + "encoder.layer.")})):
        L = f"{t}encoder.layer.{i}."
        a = attend(lin(h, L + "attention.self.query"), lin(h, L + "attention.self.key"),
                   lin(h, L + "attention.self.value"), bert_heads, add_mask)
        h = ln(lin(a, L + "attention.output.dense") + h, L + "attention.output.LayerNorm")
        c = attend(lin(h, L + "crossattention.self.query"), lin(img, L + "crossattention.self.key"),
                   lin(img, L + "crossattention.self.value"), bert_heads)
        h = ln(lin(c, L + "crossattention.output.dense") + h, L + "crossattention.output.LayerNorm")
        h = ln(lin(F.gelu(lin(h, L + "intermediate.dense")), L + "output.dense") + h, L + "output.LayerNorm")
    r = h[:, 0]
    for j in (0, 2, 4, 6, 7):
        r = lin(r, f"mlp.layers.{j}")
    return ((r - 0.16717362830052426) / 1.0333394966054072).squeeze(-1)


def test_image_reward_tokenizer_and_preprocessing_are_the_references():
    """35 tokens with [CLS] first and [SEP] last when truncated; BLIP's [DEC] and [ENC] appended to the vocabulary;
    torchvision's PIL Resize(224, bicubic) + CenterCrop(224) restated with PIL and round()."""
    import torch
    from PIL import Image

    from sidbench.eval.extractors.clip_embed import OPENAI_MEAN, OPENAI_STD
    from sidbench.eval.metrics import image_reward as IR

    s = IR.load_image_reward_scorer(random_weights=True, **_IR_SMALL)
    tok = s.tokenizer
    base = len(tok) - 2
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [base, base + 1] and tok.bos_token_id == base
    t = IR.tokenize(tok, ["A Cat", " ".join(["word"] * 100)])
    ids = t["input_ids"]
    assert ids.shape == (2, 35) and (ids[:, 0] == tok.cls_token_id).all() and ids[1, -1] == tok.sep_token_id
    assert t["attention_mask"][0].tolist() == [1] * 6 + [0] * 29  # [CLS] a c ##a ##t [SEP], lower-cased
    assert tok.convert_ids_to_tokens(ids[0, 1:6].tolist()) == ["a", "c", "##a", "##t", "[SEP]"]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(200, 301, 3), dtype=np.uint8)
    pil = Image.fromarray(img).resize((int(224 * 301 / 200), 224), Image.BICUBIC)
    left, top = int(round((pil.width - 224) / 2.0)), 0
    x = np.asarray(pil.crop((left, top, left + 224, top + 224))) / 255.0
    ref = torch.tensor(((x - OPENAI_MEAN) / OPENAI_STD).transpose(2, 0, 1), dtype=torch.float32)
    assert torch.allclose(IR.preprocess(img), ref, atol=1e-6)


def test_eval_image_reward_per_image_equals_the_reference_restated(tmp_path, monkeypatch):
    import torch

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.metrics import image_reward as IR

    real = IR.load_image_reward_scorer
    monkeypatch.setattr(IR, "load_image_reward_scorer", lambda **kw: real(**kw, **_IR_SMALL))
    imgs = random_images(5, 7)
    write_images(tmp_path / "gen", imgs)
    prompts = ["a red cube", "two dogs on a beach at sunset, highly detailed", "a bowl", "city at night", "x " * 60]
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in prompts))
    res = evaluate(str(tmp_path / "gen"), None, EvalConfig(
        fid=False, image_reward=True, prompts=str(tmp_path / "p.txt"), random_weights=True, batch_size=2,
        per_sample=str(tmp_path / "s.csv"), progress=False))
    ours = real(random_weights=True, **_IR_SMALL)
    with torch.no_grad():  # one image at a time, as ImageReward.score runs
        sd = ours.model.state_dict()
        lit = []
        for im, p in zip(imgs, prompts):
            t = IR.tokenize(ours.tokenizer, [p])
            lit.append(float(_image_reward_restated(sd, IR.preprocess(im)[None], t["input_ids"], t["attention_mask"],
                                                    3, 2)))
    m = res["metrics"]["image_reward"]
    assert m["value"] == pytest.approx(np.mean(lit), abs=1e-5) and m["n"] == 5 and m["model"]["random"]
    rows = [r.split(",") for r in (tmp_path / "s.csv").read_text().splitlines()]
    assert rows[0][-1] == "image_reward"
    assert [float(r[-1]) for r in rows[1:]] == pytest.approx(lit, abs=1e-5)
    assert np.ptp(lit) > 1e-4  # the images are told apart, so the per-image match means something


def test_image_reward_checkpoint_loads_under_the_reference_keys(tmp_path):
    """A state dict saved under the reference's names (plus the unused BLIP projections it also holds) loads
    through the weights table, with the tokenizer folder, and scores as the network it came from."""
    import torch

    from sidbench.eval.metrics import image_reward as IR

    src = IR.load_image_reward_scorer(random_weights=True, seed=3, **_IR_SMALL)
    state = {**src.model.state_dict(), "blip.vision_proj.weight": torch.zeros(256, 48),
             "blip.text_proj.weight": torch.zeros(256, 32)}
    torch.save(state, tmp_path / "ImageReward.pt")
    (tmp_path / "bert").mkdir()
    IR.write_toy_vocab(str(tmp_path / "bert" / "vocab.txt"))
    text = {k: v for k, v in _IR_SMALL["text"].items()}
    text.update(vocab_size=len(src.tokenizer))
    got = IR.load_image_reward_scorer(weights=str(tmp_path / "ImageReward.pt"), tokenizer=str(tmp_path / "bert"),
                                      vision=_IR_SMALL["vision"], text=text)
    assert got.info["sha256"] and got.info["random"] is False
    imgs = [np.full((64, 64, 3), c, np.uint8) for c in (10, 200)]
    assert torch.allclose(got.update(imgs, ["a", "b c"]), src.update(imgs, ["a", "b c"]), atol=1e-6)
    torch.save({k: v for k, v in state.items() if not k.startswith("mlp.")}, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="not an ImageReward"):
        IR.load_image_reward_scorer(weights=str(tmp_path / "bad.pt"), tokenizer=str(tmp_path / "bert"),
                                    vision=_IR_SMALL["vision"], text=text)


def test_image_reward_equals_the_image_reward_package(tmp_path):
    """THUDM's image-reward 1.5 itself (its ImageReward.score, BLIP ViT, med.py BERT under transformers 4.46, in a
    subprocess: tools/install-reference.sh) scores three images; its saved state dict loads as our checkpoint and
    gives the same rewards; and its full-size ViT-L/16 and med_config BERT have our parameter names and shapes."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from sidbench.eval.metrics import image_reward as IR

    root = Path(__file__).resolve().parents[1]
    lib = Path(os.environ.get("SIDBENCH_REFERENCE_LIBS", root / ".venv-ref")) / "image-reward"
    if not (lib / "ImageReward" / "ImageReward.py").is_file():
        pytest.skip(f"image-reward reference not installed in {lib} (bash tools/install-reference.sh)")
    vocab = IR.write_toy_vocab(str(tmp_path / "vocab.txt"))
    n_vocab = len(IR.blip_tokenizer(vocab))
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
           "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524,
           "encoder_width": 768, "add_cross_attention": True}  # THUDM/ImageReward med_config.json, as published
    (tmp_path / "med_full.json").write_text(json.dumps(med))
    small = dict(vocab_size=n_vocab, num_hidden_layers=2, intermediate_size=128)  # the MLP needs width 768
    (tmp_path / "med.json").write_text(json.dumps({**med, **small}))
    vit = dict(embed_dim=64, depth=2, num_heads=4, patch_size=16)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(3, 200, 300, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    prompts = ["a cat", "Two dogs on a beach, at sunset!", "word " * 50]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "reference" / "image_reward_package.py"), str(lib),
                          vocab, str(tmp_path / "med.json"), str(tmp_path / "med_full.json"), str(tmp_path),
                          str(tmp_path / "images.npy"), str(tmp_path / "prompts.json"), json.dumps(vit)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ref = json.loads((tmp_path / "reference.json").read_text())
    ours = IR.load_image_reward_scorer(weights=str(tmp_path / "ImageReward.pt"), tokenizer=vocab,
                                       vision={k: v for k, v in vit.items()},
                                       text=dict(small, encoder_hidden_size=64))
    got = ours.update(list(images), prompts)
    assert got.tolist() == pytest.approx(ref["scores"], abs=2e-5) and np.ptp(ref["scores"]) > 0.1
    with torch.device("meta"):
        full = IR.ImageRewardNet()
    shapes = {k: list(v.shape) for k, v in full.state_dict().items() if not k.startswith("mlp.")}
    theirs = {k: v for k, v in ref["full_shapes"].items() if not k.endswith("embeddings.position_ids")}
    assert shapes == theirs


# --- LPIPS diversity ------------------------------------------------------------------------------------------

def _their_lpips(ours):
    """The pip lpips package's network with our weights (trunk and linear layers) copied in."""
    lpips = pytest.importorskip("lpips")
    theirs = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    trunk = {f"net.slice{k + 1}.{n}": v for k, s in enumerate(ours.slices) for n, v in s.state_dict().items()}
    theirs.load_state_dict({**theirs.state_dict(), **trunk, **ours.lin_state_dict()})
    return theirs


def test_lpips_equals_the_lpips_package_with_its_own_linear_weights():
    import torch

    from sidbench.eval.extractors.weights import find_weights
    from sidbench.eval.metrics.lpips_diversity import build_lpips

    ours, _ = build_lpips(random_weights=True, seed=1)
    pytest.importorskip("lpips")
    path, sha = find_weights("lpips-alex-v0.1")  # the package's copy, found through the weights table, hash checked
    lin = torch.load(path, map_location="cpu", weights_only=True)
    assert set(lin) == set(ours.lin_state_dict())
    ours.load_state_dict(lin, strict=False)
    theirs = _their_lpips(ours)
    assert sha == "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
    torch.manual_seed(0)
    a, b = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(a, b), theirs(a, b).flatten(), atol=1e-6)
        assert torch.equal(ours(a, a), torch.zeros(4)) and torch.allclose(ours(a, b), ours(b, a), atol=1e-7)


def test_eval_lpips_diversity_is_the_mean_over_prompts_of_all_pairs(tmp_path):
    import dataclasses

    import torch

    from conftest import random_images, write_images
    from sidbench.eval.api import EvalConfig, evaluate
    from sidbench.eval.metrics.lpips_diversity import build_lpips

    imgs = random_images(9, 5, sizes=((48, 64),))
    imgs[3:6] = [imgs[3]] * 3  # prompt 1 collapsed: its diversity is exactly 0
    write_images(tmp_path / "gen", imgs)
    prompts = [p for p in ("a fox", "a boat", "a lamp") for _ in range(3)]
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in prompts))
    cfg = EvalConfig(fid=False, images_per_prompt=3, prompts=str(tmp_path / "p.txt"), random_weights=True,
                     progress=False, batch_size=4)  # batches that cut across prompt groups
    d = evaluate(str(tmp_path / "gen"), None, cfg)["metrics"]["lpips_diversity"]
    theirs = _their_lpips(build_lpips(random_weights=True)[0])
    x = [torch.from_numpy(im).permute(2, 0, 1)[None].float() / 127.5 - 1 for im in imgs]
    with torch.no_grad():
        per = [np.mean([float(theirs(x[3 * g + i], x[3 * g + j])) for i, j in ((0, 1), (0, 2), (1, 2))]) for g in range(3)]
    assert per[1] == 0 and d["value"] == pytest.approx(np.mean(per), rel=1e-5)
    assert d["prompts"] == 3 and d["pairs_per_prompt"] == 3
    b = evaluate(str(tmp_path / "gen"), None, dataclasses.replace(cfg, bootstrap=50))["metrics"]["lpips_diversity"]
    from sidbench.eval.bootstrap import bootstrap_mean  # the interval resamples prompts, never single images

    ci = bootstrap_mean(per, 50, 0)
    assert b["interval"]["method"].endswith("over prompts")
    assert (b["interval"]["low"], b["interval"]["high"]) == pytest.approx((ci["low"], ci["high"]), rel=1e-5)
    (tmp_path / "q.txt").write_text("".join(p + "\n" for p in prompts[1:] + ["x"]))  # groups no longer share a prompt
    with pytest.raises(Exception, match="its group's"):
        evaluate(str(tmp_path / "gen"), None, EvalConfig(fid=False, images_per_prompt=3, prompts=str(tmp_path / "q.txt"),
                                                         random_weights=True, progress=False))
