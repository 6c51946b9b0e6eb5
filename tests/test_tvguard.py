import subprocess
import sys

import torch

from sidbench.core import _tvguard


def test_torchvision_and_its_users_import_after_the_guard():
    code = ("import sidbench, torchvision, torchvision.transforms.functional as F, cleanfid.fid, torch_fidelity;"
            "import torch; x = F.center_crop(torch.zeros(3, 10, 12), [10]); print(tuple(x.shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(3, 10, 10)" in out.stdout


def test_guard_is_a_noop_when_the_op_exists(monkeypatch):
    monkeypatch.setattr(_tvguard, "_fragment", None)
    monkeypatch.setattr(_tvguard, "_has_nms", lambda: True)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    assert _tvguard.install() is False
    assert _tvguard._fragment is None


def test_guard_is_a_noop_once_torchvision_is_loaded():
    import torchvision  # noqa: F401

    assert _tvguard.install() is False


def test_guard_declares_only_the_two_schemas_when_it_acts():
    if not _tvguard.ACTED:  # a matched install: the real ops are there
        assert hasattr(torch.ops.torchvision, "nms")
        return
    assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")
