"""One SiD-LSG training iteration: our trainer vs a plain re-statement of the reference procedure.

Tiny random SD-shaped models on CPU (sidbench.gen.tiny), LSG k = 1.5, the same draws for both. The
re-statement does what the reference code does: prompts re-encoded by the text encoder on every network
call (the empty prompt too), guidance as separate cond / uncond calls, and the x0 estimates of the fake
score and the teacher one sample at a time through the scheduler's ``step(...).pred_original_sample``.
Both compute the same losses (checked), in the same run. Usage: python bench/bench_train_iteration.py
"""
import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

import sidbench  # noqa: F401
from distill.config import resolve
from distill.loop import Trainer
from distill.randomness import PHASE_FAKE, PHASE_GEN, draws, prompt_indices
from sidbench.gen.tiny import build_tiny_sd


def reference_iteration(tr: Trainer, it: int, G, fake, teacher, opt_f, opt_g) -> tuple[float, float]:
    """The reference's procedure, restated plainly (same math, its costs)."""
    c, base = tr.cfg, tr.base
    sched = copy.deepcopy(base.scheduler)

    def emb(texts):  # re-encoded every call
        return base.encode(texts).tensors["encoder_hidden_states"]

    def guided(net, x, t, texts, k):
        e_c = net(x, t, encoder_hidden_states=emb(texts)).sample
        e_u = net(x, t, encoder_hidden_states=emb([""] * len(texts))).sample  # even at k = 1
        return e_c if k == 1 else e_u + k * (e_c - e_u)

    def x0_loop(eps_hat, x_t, t):
        return torch.cat([sched.step(eps_hat[i:i + 1], int(t[i]), x_t[i:i + 1]).pred_original_sample
                          for i in range(x_t.shape[0])])

    idx = list(range(c.batch))
    texts = [tr.prompts[j] for j in prompt_indices(c.seed, it, PHASE_FAKE, c.batch, idx, len(tr.prompts))]
    z, eps, t, drop = draws(c.seed, it, PHASE_FAKE, idx, tr.latent_shape, c.t_min, c.t_max, c.prompt_dropout)
    texts = ["" if d else p for p, d in zip(texts, drop)]
    with torch.no_grad():
        x_g = tr.diffusion.one_step(G, z, emb(texts), c.t_init)
    a = base.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x_g + (1 - a).sqrt() * eps
    loss_a = ((guided(fake, x_t, t, texts, c.cfg_train_fake) - eps) ** 2).sum() / c.batch
    loss_a.backward()
    opt_f.step()
    opt_f.zero_grad(set_to_none=True)
    texts = [tr.prompts[j] for j in prompt_indices(c.seed, it, PHASE_GEN, c.batch, idx, len(tr.prompts))]
    z, eps, t, _ = draws(c.seed, it, PHASE_GEN, idx, tr.latent_shape, c.t_min, c.t_max, 0.0)
    x_g = tr.diffusion.one_step(G, z, emb(texts), c.t_init)
    a = base.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x_g + (1 - a).sqrt() * eps
    y_fake = x0_loop(guided(fake, x_t, t, texts, c.cfg_eval_fake), x_t, t)
    y_real = x0_loop(guided(teacher, x_t, t, texts, c.cfg_eval_real), x_t, t)
    w = (x_g - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).detach().clamp_min(c.w_min)
    loss_b = ((y_real - y_fake) * ((y_real - x_g) - c.alpha * (y_real - y_fake)) / w).sum() / c.batch
    fake.requires_grad_(False)
    loss_b.backward()
    fake.requires_grad_(True)
    opt_g.step()
    opt_g.zero_grad(set_to_none=True)
    return float(loss_a), float(loss_b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sd = build_tiny_sd(Path(tmp) / "sd")
        (Path(tmp) / "p.txt").write_text("\n".join(f"prompt number {i} with a red circle" for i in range(64)) + "\n")
        cfg = resolve(overrides=dict(base=str(sd), prompts=str(Path(tmp) / "p.txt"), run_dir=str(Path(tmp) / "run"),
                                     batch=args.batch, batch_per_device=args.batch, lsg=1.5, lr_gen=1e-4,
                                     lr_fake=1e-4))
        tr = Trainer(cfg)
        G, fake, teacher = copy.deepcopy(tr.generator), copy.deepcopy(tr.fake), tr.teacher
        adam = dict(betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
        opt_f = torch.optim.Adam(fake.parameters(), lr=cfg.lr_fake, **adam)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_gen, **adam)
        ours, ref = [], []
        for r in range(args.repeats):
            tr.iteration = r
            t0 = time.perf_counter()
            stats = tr.step()
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            la, lb = reference_iteration(tr, r, G, fake, teacher, opt_f, opt_g)
            ref.append(time.perf_counter() - t0)
            if r == 0:  # same weights, same draws: same losses
                print(f"iteration 0 losses  ours: {stats['loss_fake']:.6f} / {stats['loss_gen']:.6f}   "
                      f"reference re-statement: {la:.6f} / {lb:.6f}")
    t_o, t_r = min(ours), min(ref)
    print(f"batch {args.batch}, LSG k=1.5, tiny SD on CPU, best of {args.repeats}")
    print(f"sidbench trainer iteration   : {t_o:.3f} s")
    print(f"reference procedure restated : {t_r:.3f} s")
    print(f"speed-up {t_r / t_o:.2f}x")


if __name__ == "__main__":
    main()
