"""The one downloader against a local host: first use fetches, the second finds it, a cut transfer resumes, a
corrupt or truncated file is refused and not kept, offline refuses with the hint."""
import hashlib

import pytest

from sidbench.core import download as dl
from http_server import FileHost

BODY = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def host():
    with FileHost() as h:
        h.files["/w/net.bin"] = BODY
        yield h


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SIDBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(dl, "_offline_override", None)


def gets(host):
    return [entry for entry in host.log if entry[0] == "GET"]


def test_first_use_downloads_and_second_use_hits_the_file(host, tmp_path):
    target = tmp_path / "net.bin"
    assert dl.download(host.url + "/w/net.bin", target, sha256=SHA, size=len(BODY), progress=False) == SHA
    assert target.read_bytes() == BODY and not (tmp_path / "net.bin.part").exists()
    assert dl.download(host.url + "/w/net.bin", target, sha256=SHA, progress=False) == SHA
    assert len(gets(host)) == 1


def test_an_interrupted_download_resumes_from_its_part(host, tmp_path):
    target = tmp_path / "net.bin"
    host.cut_after["/w/net.bin"] = 300_000
    with pytest.raises(dl.DownloadError, match="run the same command again to resume"):
        dl.download(host.url + "/w/net.bin", target, sha256=SHA, size=len(BODY), progress=False)
    part = tmp_path / "net.bin.part"
    assert not target.exists() and 0 < part.stat().st_size <= 300_000
    kept = part.stat().st_size
    assert dl.download(host.url + "/w/net.bin", target, sha256=SHA, size=len(BODY), progress=False) == SHA
    assert target.read_bytes() == BODY
    assert gets(host)[-1][2] == f"bytes={kept}-"  # the second try asked only for the rest


def test_a_server_that_ignores_the_range_restarts_cleanly(host, tmp_path):
    (tmp_path / "net.bin.part").write_bytes(b"\xff" * 1000)  # a stale part with wrong bytes
    host.ignore_range = True
    assert dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", sha256=SHA, progress=False) == SHA


def test_a_corrupt_download_is_refused_and_not_kept(host, tmp_path):
    host.files["/w/net.bin"] = BODY[:-1] + b"\x00"
    with pytest.raises(dl.DownloadError, match="not the pinned"):
        dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", sha256=SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_short_file_is_refused_by_its_pinned_size(host, tmp_path):
    host.files["/w/net.bin"] = BODY[:1000]
    with pytest.raises(dl.DownloadError, match="1,000 bytes, not the pinned"):
        dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", size=len(BODY), progress=False)
    assert not (tmp_path / "net.bin").exists() and not (tmp_path / "net.bin.part").exists()


def test_an_existing_file_that_contradicts_its_pin_is_named(host, tmp_path):
    (tmp_path / "net.bin").write_bytes(b"other")
    with pytest.raises(dl.DownloadError, match="net.bin has sha256 .* delete it and fetch it again"):
        dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", sha256=SHA, progress=False)


@pytest.mark.parametrize("how", ["env", "env-hf", "flag"])
def test_offline_refuses_with_the_fetch_hint_and_sends_nothing(host, tmp_path, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("SIDBENCH_OFFLINE", "1")
    elif how == "env-hf":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        dl.set_offline(True)
    with pytest.raises(dl.OfflineError, match="downloads are off.*run: sidbench weights fetch net"):
        dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", progress=False,
                    fetch_hint="Online, run: sidbench weights fetch net")
    assert host.log == []


def test_a_missing_file_on_the_host_is_one_line(host, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(host.url + "/w/none.bin", tmp_path / "none.bin", progress=False)


def test_an_unwritable_destination_is_one_line_before_any_request(host, tmp_path):
    (tmp_path / "f").write_text("a file where a folder should be")
    with pytest.raises(dl.SidbenchError, match="f is a file, so no folder can be made there"):
        dl.download(host.url + "/w/net.bin", tmp_path / "f" / "net.bin", progress=False)
    assert host.log == []


def test_a_full_disk_while_downloading_is_named_and_keeps_the_part(host, tmp_path):
    """RLIMIT_FSIZE stands in for a full disk (no root needed): the write fails with EFBIG, said in words."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        from sidbench.core import download as dl
        try:
            dl.download({host.url + '/w/net.bin'!r}, {str(tmp_path / 'net.bin')!r}, progress=False)
        except dl.SidbenchError as e:
            print("ERROR", e)
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "ERROR cannot write" in out and "net.bin.part: File too large" in out, out
    assert not (tmp_path / "net.bin").exists() and (tmp_path / "net.bin.part").stat().st_size == 200_000
    # Room again: the same call resumes from what was written.
    assert dl.download(host.url + "/w/net.bin", tmp_path / "net.bin", sha256=SHA, progress=False) == SHA
    assert gets(host)[-1][2] == "bytes=200000-"
