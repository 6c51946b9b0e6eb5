"""The real architectures built on the meta device have exactly the published parameter counts (a config typo
cannot pass), and the memory table is the closed form it claims."""
import pytest

from sidbench.gen.architectures import ARCHITECTURES, build, count_params, forward_flops, sid_memory_gib


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_meta_architecture_has_the_published_parameter_count(name):
    net = build(name)
    assert all(p.is_meta for p in net.parameters())  # nothing allocated
    assert count_params(net) == ARCHITECTURES[name].published_params


def test_memory_is_weights_plus_two_trained_nets_plus_ema():
    m = sid_memory_gib(2 ** 30)  # a billion-ish parameters: GiB = bytes per parameter
    assert (m["teacher"], m["fake + generator (w, grad, Adam)"], m["EMA"], m["total"]) == (4, 32, 4, 40)
    assert sid_memory_gib(2 ** 30, weights_bytes=2, ema=False)["total"] == 34


def test_forward_flops_scale_with_the_batch():
    one, two = forward_flops("SD1.5 UNet", 1), forward_flops("SD1.5 UNet", 2)
    assert one > 5e11 and two == 2 * one  # ~0.8 TFLOP for a 512 px SD1.5 UNet forward


def test_the_readme_table_is_what_the_script_prints(capsys):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("arch_table", root / "bench" / "arch_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert len(rows) == len(ARCHITECTURES) + 1
    for row in rows:
        assert row in text, f"README's architecture table is stale; rerun python bench/arch_table.py:\n{row}"
