"""``sidbench demo``: SiD-LSG end to end, offline, on a small synthetic text-to-image world with known truth.

A 16x16 world of coloured shapes with an exact sampler; a teacher trained on it (shipped in
``sidbench/demo_assets``, rebuilt by ``sidbench demo --rebuild-teacher``); a metric network trained on the
world (Fréchet distance on its features, attribute accuracy as the prompt-adherence score). The demo
distils the teacher data-free into one-step generators (unguided k = 1, and LSG k = 1.5) with the same
trainer users run on Stable Diffusion, evaluates every sampler through ``sidbench eval``'s code, and writes
a report: table, FD-adherence trade-off, FD-over-iterations curves, sample grids.

Stopping rule (stated, not chosen after the fact): each run trains for a fixed iteration budget and the
report's row is the EMA generator at the end of it; the curve shows every proxy point as it is.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sidbench.atomic import write_json, write_text
from sidbench.errors import SidbenchError

ASSETS = Path(__file__).parent / "demo_assets"
REBUILD = "sidbench demo --rebuild-teacher"


def asset_hashes(root: Path | None = None) -> dict[str, str]:
    root = root or ASSETS
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def check_assets(root: Path | None = None) -> None:
    root = root or ASSETS
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        raise SidbenchError(f"the demo's teacher is missing ({root}); rebuild it with `{REBUILD}` (~10 min)")
    expected = dict(line.split("  ", 1)[::-1] for line in sums.read_text().splitlines() if line.strip())
    actual = asset_hashes(root)
    bad = sorted(k for k in expected if actual.get(k) != expected[k])
    if bad:
        raise SidbenchError(f"demo assets do not match SHA256SUMS ({', '.join(bad)}): rebuild with `{REBUILD}`")


def rebuild_assets(console: Console, root: Path | None = None) -> None:
    root = root or ASSETS
    import shutil

    from sidbench.toyworld import train_metric_net, train_teacher

    if root.exists():
        shutil.rmtree(root)
    console.print("rebuilding the demo assets: two metric networks (~1 min each), teacher (~8 min on 2 cores)")
    train_metric_net(root / "world_cnn.safetensors", steps=1500, noise_max=25.0, log=console.print)
    train_metric_net(root / "world_cnn_clean.safetensors", steps=1500, noise_max=0.0, log=console.print)
    train_teacher(root / "teacher", steps=2000, log=console.print)
    write_text(root / "SHA256SUMS", "".join(f"{h}  {k}\n" for k, h in asset_hashes(root).items()))


class World:
    """Evaluation in the world: reference statistics, FD through sidbench eval, adherence, precision/recall."""

    def __init__(self, n: int, out: Path):
        from sidbench.extractors.registry import build_extractor
        from sidbench.toyworld import RES, load_metric_net
        from sidbench.world import sample_world

        self.extractor = build_extractor("world-cnn", weights=str(ASSETS / "world_cnn.safetensors"))
        self.net = self.extractor.module
        # The same CNN trained on clean images only: its FD is mostly a pixel-noise meter, shown for contrast.
        self.clean_net = load_metric_net(ASSETS / "world_cnn_clean.safetensors")
        self.n, self.out = n, out
        self.ref, _ = sample_world(n, RES, seed=10)                 # the data
        self.floor_images, self.floor_captions = sample_world(n, RES, seed=11)
        _, self.captions = sample_world(n, RES, seed=12)            # prompts every sampler is asked for

    def evaluate(self, name: str, images: np.ndarray, captions: list[str], *, against: np.ndarray | None = None,
                 extra: dict | None = None) -> dict:
        from sidbench.evaluate import EvalConfig, evaluate
        from sidbench.metrics.prdc import precision_recall
        from sidbench.metrics.fid import frechet_distance
        from sidbench.toyworld import adherence, background_noise

        import torch

        ref = self.ref if against is None else against
        cfg = EvalConfig(mode="inside-network", use_cache=False, progress=False)
        res = evaluate(images, ref, cfg, extractor=self.extractor, subject={"name": name})
        with torch.no_grad():
            tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
            pr = precision_recall(self.net.features(tensor(ref)), self.net.features(tensor(images)), k=3)
            fc_ref, fc = (self.clean_net.features(tensor(a)).double().numpy() for a in (ref, images))
        res["metrics"]["fd_noise_sensitive"] = {
            "value": frechet_distance(fc.mean(0), np.cov(fc, rowvar=False), fc_ref.mean(0), np.cov(fc_ref, rowvar=False)),
            "definition": "Fréchet distance on the features of the same CNN trained on clean images only (reacts "
                          "mostly to pixel noise)"}
        res["metrics"]["background_noise"] = {"value": background_noise(images),
                                              "definition": "mean |pixel - 128| over the one-pixel border, grey levels"}
        res["metrics"]["adherence"] = {"value": adherence(self.net, images, captions),
                                       "definition": "mean attribute accuracy (shape, colour, size, position) of "
                                                     "the world's metric network against the caption"}
        res["metrics"]["pr"] = dict(pr, extractor="world-cnn")
        res["demo"] = extra or {}
        slug = name.lower().replace(" ", "-").replace("=", "").replace(",", "").replace("(", "").replace(")", "")
        write_json(self.out / "results" / f"{slug}.json", res)
        return res


def _sample_all(sampler, captions: list[str], batch: int = 250) -> np.ndarray:
    out = [sampler.sample(captions[k:k + batch], list(range(k, min(len(captions), k + batch))))
           for k in range(0, len(captions), batch)]
    return np.concatenate(out)


def _row(label: str, res: dict, kind: str, group: str) -> dict:
    m = res["metrics"]
    return {"sampler": label, "group": group, "kind": kind, "fd": m["fid"]["value"],
            "adherence": m["adherence"]["value"], "noise": m["background_noise"]["value"],
            "fd_noise_sensitive": m["fd_noise_sensitive"]["value"], "precision": m["pr"]["precision"],
            "recall": m["pr"]["recall"], "n": m["fid"]["n_gen"], **res.get("demo", {})}


def _distill(world: World, base, run_dir: Path, *, k: float, iters: int, proxy_every: int, console: Console,
             quick: bool) -> tuple:
    """Distil with the real trainer; the proxy curve logs FD (500 images) and adherence of raw and EMA."""
    import copy

    from distill.config import resolve
    from distill.loop import train
    from sidbench.metrics.fid import frechet_distance
    from sidbench.sampling import OneStepSampler
    from sidbench.toyworld import adherence, background_noise

    import torch

    n_proxy = 100 if quick else 500
    caps = world.captions[:n_proxy]
    ref_feats = world.net.features(torch.from_numpy(world.ref).permute(0, 3, 1, 2).float()).detach().double().numpy()
    mu_r, cov_r = ref_feats.mean(0), np.cov(ref_feats, rowvar=False)

    def proxy(tr) -> dict:
        out = {}
        for tag, net in (("ema", tr.ema), ("raw", tr.generator)):
            ims = _sample_all(OneStepSampler(tr.base, generator=copy.deepcopy(net).eval()), caps)
            with torch.no_grad():
                f = world.net.features(torch.from_numpy(ims).permute(0, 3, 1, 2).float()).double().numpy()
            out[f"proxy_fd_{tag}"] = frechet_distance(f.mean(0), np.cov(f, rowvar=False), mu_r, cov_r)
            out[f"proxy_adherence_{tag}"] = adherence(world.net, ims, caps)
            out[f"proxy_noise_{tag}"] = background_noise(ims)
        out["proxy_n"] = n_proxy
        return out

    cfg = resolve(overrides=dict(
        base=str(ASSETS / "teacher"), prompts=str(world.out / "train_prompts.txt"), run_dir=str(run_dir), lsg=k,
        lr_gen=5e-6, lr_fake=2e-5, batch=64, batch_per_device=64, adam_beta1=0.0, adam_beta2=0.999,
        ema_mimg=0.004, ema_rampup=0.25, duration_kimg=iters * 64 / 1000, checkpoint_every=0, snapshot_every=0,
        proxy_every=proxy_every, log_every=proxy_every, seed=0))
    from types import SimpleNamespace

    # The curve starts where the generator starts: the teacher's one step at t_init (raw = EMA = teacher).
    start = {"iteration": 0, "kimg": 0.0, **proxy(SimpleNamespace(base=base, ema=base.unet, generator=base.unet))}
    t0 = time.time()
    tr = train(cfg, resume="none", progress=True, base=copy.copy(base), proxy_fn=proxy)
    console.print(f"distilled k={k}: {tr.iteration} iterations, {tr.cur_nimg} images, {time.time() - t0:.0f} s")
    return tr, [start] + [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]


def run_demo(out: Path, *, quick: bool = False, rebuild_teacher: bool = False, console: Console | None = None) -> list[dict]:
    import copy
    import shutil

    from sidbench.models import load_base
    from sidbench.sampling import OneStepSampler, TeacherSampler
    from sidbench.world import all_captions

    console = console or Console()
    t_start = time.time()
    if rebuild_teacher:
        rebuild_assets(console)
    check_assets()
    if out.exists():
        shutil.rmtree(out)  # a demo report is regenerated whole, never mixed with an older one
    out.mkdir(parents=True)
    n = 300 if quick else 1000
    iters_k1, iters_lsg, every = (8, 4, 4) if quick else (180, 60, 30)  # fresh-clone make demo < 10 min
    console.print(f"[bold]sidbench demo[/]: 16x16 shapes world, {n} images per evaluation"
                  + (" (quick: a reduced run, targets not expected)" if quick else ""))
    world = World(n, out)
    write_text(out / "train_prompts.txt", "\n".join(all_captions()) + "\n")
    base = load_base(ASSETS / "teacher")
    teacher = base.unet
    rows, grids = [], {}

    def run(label, sampler, kind, group, against=None, extra=None):
        t = time.time()
        ims = _sample_all(sampler, world.captions)
        res = world.evaluate(label, ims, world.captions, against=against, extra=extra)
        rows.append(_row(label, res, kind, group))
        grids[label] = ims[:16]
        console.print(f"  {label}: FD {rows[-1]['fd']:.1f}, adherence {rows[-1]['adherence']:.3f} ({time.time() - t:.0f} s)")
        return ims

    res = world.evaluate("true images (FD floor)", world.floor_images, world.floor_captions)
    rows.append(_row("true images (FD floor)", res, "data", "reference"))
    grids["true images"] = world.floor_images[:16]
    run("teacher 1 step from t=999", OneStepSampler(base, generator=copy.deepcopy(teacher), t_init=999), "teacher", "teacher")
    run("generator at init (teacher 1 step, t=625)", OneStepSampler(base, generator=copy.deepcopy(teacher)), "teacher", "teacher")
    run("teacher DDIM-25, cfg 1", TeacherSampler(base, steps=25, cfg=1.0), "teacher", "teacher")
    guided_teacher = run("teacher DDIM-25, cfg 1.5", TeacherSampler(base, steps=25, cfg=1.5), "teacher", "teacher")

    curves = {}
    for k, iters in ((1.0, iters_k1), (1.5, iters_lsg)):
        tr, log = _distill(world, base, out / "runs" / f"k{k:g}", k=k, iters=iters, proxy_every=every,
                           console=console, quick=quick)
        curves[k] = log
        tag = "SiD (k=1)" if k == 1.0 else f"SiD-LSG (k={k:g})"
        extra = {"iterations": tr.iteration, "images_seen": tr.cur_nimg}
        for net, which in ((tr.generator, "raw"), (tr.ema, "EMA")):
            ims = run(f"{tag}, {which}", OneStepSampler(base, generator=copy.deepcopy(net).eval()), "one-step",
                      "distilled", extra=extra)
            if k != 1.0:  # guided runs target the guided teacher: FD against its samples too
                r2 = world.evaluate(f"{tag}, {which} vs guided teacher", ims, world.captions, against=guided_teacher)
                rows[-1]["fd_vs_guided_teacher"] = r2["metrics"]["fid"]["value"]
    write_json(out / "rows.json", rows)
    _report(out, rows, curves, grids, console, quick=quick, seconds=time.time() - t_start)
    return rows


def _fmt(v, d=3):
    return "" if v is None else (f"{v:.1f}" if isinstance(v, float) and abs(v) >= 10 else f"{v:.{d}f}" if isinstance(v, float) else str(v))


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    by = {r["sampler"]: r for r in rows}
    init, noise = by["generator at init (teacher 1 step, t=625)"], by["teacher 1 step from t=999"]
    t1, sid = by["teacher DDIM-25, cfg 1"], by["SiD (k=1), EMA"]
    lsg = by["SiD-LSG (k=1.5), EMA"]
    return [
        ("k=1 EMA FD at least 2x below the generator at init",
         sid["fd"] * 2 <= init["fd"], f"{sid['fd']:.1f} vs {init['fd']:.1f}"),
        ("k=1 EMA FD at least 10x below the teacher's one step from noise",
         sid["fd"] * 10 <= noise["fd"], f"{sid['fd']:.1f} vs {noise['fd']:.1f}"),
        ("k=1 EMA adherence at least the teacher's DDIM-25 without guidance",
         sid["adherence"] >= t1["adherence"], f"{sid['adherence']:.3f} vs {t1['adherence']:.3f}"),
        ("LSG k=1.5 EMA adherence above the k=1 run's",
         lsg["adherence"] > sid["adherence"], f"{lsg['adherence']:.3f} vs {sid['adherence']:.3f}"),
    ]


def _report(out: Path, rows, curves, grids, console: Console, *, quick: bool, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from PIL import Image

    df = pd.DataFrame(rows)
    cols = ["sampler", "n", "fd", "adherence", "noise", "precision", "recall", "fd_noise_sensitive"] + (
        ["fd_vs_guided_teacher"] if "fd_vs_guided_teacher" in df else [])
    table = df[cols].rename(columns={"fd": "FD", "fd_vs_guided_teacher": "FD vs guided teacher",
                                     "noise": "background noise", "fd_noise_sensitive": "FD (noise-sensitive net)"})
    md = table.to_markdown(index=False, floatfmt=".3g")
    checks = targets(rows)
    lines = ["# sidbench demo: SiD-LSG on a 16x16 shapes world", "",
             f"{'Quick run (CI): reduced sizes, targets not expected.' if quick else 'Full run.'} "
             f"{seconds:.0f} s on this machine.", "",
             f"- **FD**: Fréchet distance on the 128-d features of the world's metric CNN (registered extractor "
             f"`world-cnn`, through `sidbench eval`), against {rows[0]['n']} true images. The CNN was trained on "
             "true images with added pixel noise (std up to 25 grey levels), so it describes content: shape, "
             "colour, size, position, sharpness.",
             "- **adherence**: the same CNN's attribute accuracy against the caption (plays CLIP's role).",
             "- **background noise**: mean |pixel - 128| over the one-pixel border, in grey levels. Shapes "
             "seldom reach it, so this is pixel noise, which the FD above ignores by design.",
             "- **FD (noise-sensitive net)**: the same CNN trained on clean images only. It reacts mostly to pixel "
             "noise: true images with noise of std 14 levels score about 5,200 on it.", "",
             md, "", "Stopping rule: fixed iteration budget; the row is the EMA (and raw) generator at its end.", "",
             "## Targets", ""] + [f"- {'met' if ok else '**NOT met**'}: {name} ({detail})" for name, ok, detail in checks]
    lines += ["", "![FD vs adherence](fd_adherence.png)", "", "![FD over iterations](fd_curve.png)", "",
              "![samples](samples.png)", ""]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_text(out / "table.md", md + "\n")

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for _, r in df.iterrows():
        ax.scatter(r["fd"], r["adherence"], marker="*" if r["group"] == "distilled" else "o", s=90)
        ax.annotate(r["sampler"], (r["fd"], r["adherence"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("FD to the data (log scale, lower is better)")
    ax.set_ylabel("adherence (higher is better)")
    ax.set_title("FD-adherence trade-off")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"fd_adherence.{ext}", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for k, log in curves.items():
        pts = [x for x in log if "proxy_fd_ema" in x]
        kimg = [x["kimg"] for x in pts]
        for tag, style in (("ema", "-"), ("raw", ":")):
            for ax, key in zip(axes, ("fd", "adherence", "noise")):
                ax.plot(kimg, [x[f"proxy_{key}_{tag}"] for x in pts], style, marker="o", ms=3, label=f"k={k:g} {tag}")
    axes[0].set_ylabel(f"proxy FD ({pts[0]['proxy_n'] if pts else '?'} images)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("proxy adherence")
    axes[2].set_ylabel("proxy background noise (grey levels)")
    for a in axes:
        a.set_xlabel("kimg")
        a.legend(fontsize=7)
    fig.suptitle("Training curves (proxy metrics, as measured)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"fd_curve.{ext}", dpi=120)
    plt.close(fig)

    scale = 4
    strips = []
    for label, ims in grids.items():
        strip = np.concatenate(list(ims), axis=1)
        strips.append(np.kron(strip, np.ones((scale, scale, 1), np.uint8)))
    Image.fromarray(np.concatenate(strips, axis=0)).save(out / "samples.png")
    write_text(out / "samples.txt", "rows, top to bottom: " + "; ".join(grids) + "\n")

    # The console gets the columns that fit a terminal; report.md and table.md have them all.
    short = {"sampler": "sampler", "fd": "FD", "adherence": "adher.", "noise": "noise",
             "fd_noise_sensitive": "FD noise-s.", "fd_vs_guided_teacher": "FD vs g. teacher"}
    t = Table(title=f"sidbench demo ({'quick' if quick else 'full'}, {seconds:.0f} s, n = {rows[0]['n']})")
    keys = [k for k in short if k in df]
    for k in keys:
        t.add_column(short[k], no_wrap=k != "sampler", justify="left" if k == "sampler" else "right")
    for _, r in df.iterrows():
        t.add_row(*[_fmt(None if isinstance(r[k], float) and np.isnan(r[k]) else r[k]) for k in keys])
    console.print(t)
    for name, ok, detail in checks:
        console.print(f"{'[green]met[/]' if ok else '[red]NOT met[/]'}: {name} ({detail})")
    console.print(f"report: {out / 'report.md'}")
