from sidbench.demo.run import ASSETS, check_assets


def test_shipped_teacher_matches_its_hashes():
    check_assets()  # the committed teacher and metric network are the ones SHA256SUMS names
    assert (ASSETS / "teacher" / "model_index.json").is_file()


def _rows(fd, adh):
    """Rows a sweep would write: the fixed ones, then one EMA row per k."""
    base = [{"sampler": "generator at init (teacher 1 step, t=625)", "fd": 2000.0, "adherence": 0.9, "noise": 4.0},
            {"sampler": "teacher 1 step from t=999", "fd": 2500.0, "adherence": 0.9, "noise": 4.0},
            {"sampler": "teacher DDIM-25, cfg 1", "fd": 600.0, "adherence": 0.95, "noise": 4.0},
            {"sampler": "true images (FD floor)", "fd": 700.0, "adherence": 1.0, "noise": 1.8}]
    from sidbench.demo.run import SWEEP_KS, _label

    return base + [{"sampler": _label(k, "EMA"), "fd": f, "adherence": a, "noise": 4.5, "fd_vs_guided_teacher": 1.0}
                   for k, f, a in zip(SWEEP_KS, fd, adh)]


def test_sweep_targets_need_monotone_fd_and_adherence():
    from sidbench.demo.run import SWEEP_KS, targets

    ok = dict((n, v) for n, v, _ in targets(_rows([500, 700, 900, 1500], [0.98, 0.983, 0.985, 0.97]), SWEEP_KS))
    assert ok["adherence rises with k from k=1 to k=2 (EMA)"] and ok["FD to the data rises with k (EMA)"]
    bad = dict((n, v) for n, v, _ in targets(_rows([500, 450, 900, 1500], [0.98, 0.979, 0.985, 0.99]), SWEEP_KS))
    assert not bad["adherence rises with k from k=1 to k=2 (EMA)"] and not bad["FD to the data rises with k (EMA)"]


def test_background_noise_measures_pixel_noise():
    import numpy as np

    from sidbench.demo.toymodels import background_noise
    from sidbench.demo.world import sample_world

    true, _ = sample_world(500, 16, seed=3)
    assert background_noise(true) < 3  # large jittered shapes touch the border now and then
    grey = np.full((500, 16, 16, 3), 128.0)
    noisy = np.clip(np.rint(grey + np.random.default_rng(0).normal(0, 10, grey.shape)), 0, 255).astype(np.uint8)
    assert abs(background_noise(noisy) - 10 * np.sqrt(2 / np.pi)) < 0.15  # E|N(0, s^2)| = s sqrt(2/pi)


def test_shipped_metric_nets_behave_as_documented():
    """The FD net ignores pixel noise (it is reported apart); the clean-trained net reacts mostly to it."""
    import numpy as np
    import torch

    from sidbench.eval.metrics.fid import frechet_distance
    from sidbench.demo.toymodels import load_metric_net
    from sidbench.demo.world import sample_world

    ref, _ = sample_world(1000, 16, seed=10)
    other, _ = sample_world(1000, 16, seed=11)
    noisy = np.clip(np.rint(other + np.random.default_rng(0).normal(0, 14, other.shape)), 0, 255).astype(np.uint8)

    def fd(net, a, b):
        with torch.no_grad():
            fa, fb = (net.features(torch.from_numpy(x).permute(0, 3, 1, 2).float()).double().numpy() for x in (a, b))
        return frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))

    robust, clean = (load_metric_net(ASSETS / f) for f in ("world_cnn.safetensors", "world_cnn_clean.safetensors"))
    assert fd(robust, noisy, ref) < 1.2 * fd(robust, other, ref)
    assert fd(clean, noisy, ref) > 5 * fd(clean, other, ref)
