"""Guidance strategies as presets over the four scales and the fake score's text switch: what each sets, how
they combine with the other settings, and that a text-free fake score (Zero-CFG) never sees a prompt."""
import pytest
import torch

from distill.config import GUIDANCE, guidance_values, resolve
from distill.loop import Trainer
from sidbench.core.errors import SidbenchError

from gmm_world import GMMWorld


def scales(cfg):
    return cfg.cfg_train_fake, cfg.cfg_eval_fake, cfg.cfg_eval_real, cfg.fake_conditioning


def test_each_strategy_sets_the_scales_it_names():
    assert scales(resolve(overrides={"guidance": "lsg:2"})) == scales(resolve(lsg=2.0)) == (2.0, 2.0, 2.0, "text")
    assert scales(resolve(overrides={"guidance": "teacher-cfg:3"})) == (1.0, 1.0, 3.0, "text")
    assert scales(resolve(overrides={"guidance": "zero-cfg"})) == (1.0, 1.0, 1.0, "none")
    assert scales(resolve(overrides={"guidance": "anti-cfg:1.5"})) == (1.0, -1.5, 1.0, "text")
    assert set(GUIDANCE) == {"lsg", "teacher-cfg", "zero-cfg", "anti-cfg"}
    # A per-scale flag still wins over the strategy, and the strategy over a config file's scales.
    assert scales(resolve(overrides={"guidance": "anti-cfg:1.5", "cfg_train_fake": 0.8}))[:2] == (0.8, -1.5)
    # zero-cfg: no prompt dropout is needed (k1 = k2 = 1), as at k = 1 in the reference.
    assert resolve(overrides={"guidance": "zero-cfg"}).prompt_dropout == 0.1


def test_a_config_files_strategy_is_below_its_own_scales_and_below_the_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('guidance = "teacher-cfg:4"\ncfg_train_fake = 0.5\n')
    assert scales(resolve(str(f))) == (0.5, 1.0, 4.0, "text")
    assert scales(resolve(str(f), {"guidance": "zero-cfg"})) == (1.0, 1.0, 1.0, "none")


@pytest.mark.parametrize("bad, match", [("cfg:2", "expected one of"), ("lsg", "needs a scale"),
                                        ("zero-cfg:2", "takes no scale"), ("anti-cfg:x", "not a number")])
def test_bad_strategies_are_named_with_what_was_expected(bad, match):
    with pytest.raises(SidbenchError, match=match):
        guidance_values(bad)
    with pytest.raises(SidbenchError, match="not both"):
        resolve(overrides={"guidance": "zero-cfg"}, lsg=1.5)


class Spy(torch.nn.Module):
    """Records the prompt class of every call to the wrapped network."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []
        self.config = net.config

    def forward(self, x, t, encoder_hidden_states):
        self.seen.append(encoder_hidden_states[:, 0].argmax(-1).tolist())
        return self.net(x, t, encoder_hidden_states=encoder_hidden_states)


@pytest.mark.parametrize("strategy", ["zero-cfg", "lsg:1.5"])
def test_a_text_free_fake_score_is_only_ever_given_the_empty_prompt(tmp_path, strategy):
    world = GMMWorld([[-1.0, 0.0], [1.0, 0.5]], [[0.09, 0.25], [0.16, 0.04]])
    (tmp_path / "p.txt").write_text("\n".join(world.prompts()) + "\n")
    cfg = resolve(overrides=dict(base="gmm-world", prompts=str(tmp_path / "p.txt"), run_dir=str(tmp_path / "r"),
                                 guidance=strategy, batch=8, batch_per_device=8, trackers="none"))
    tr = Trainer(cfg, base=world.base, generator=world.generator, fake=Spy(world.fake))
    teacher = tr.teacher = Spy(tr.teacher)
    for _ in range(3):
        tr.step()
    fake_classes = {c for call in tr.fake.seen for c in call}
    teacher_classes = {c for call in teacher.seen for c in call}
    empty = world.C  # the one-hot index of ""
    if strategy == "zero-cfg":
        assert fake_classes == {empty} and teacher_classes <= {0, 1} and teacher_classes  # teacher: text, no CFG
    else:
        assert {0, 1} <= fake_classes and empty in teacher_classes  # guided: both branches in both networks
