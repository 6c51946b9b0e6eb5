"""Known weight files: one table of names, sources and pins; found locally, else downloaded on first use.

A missing known file is fetched into the weights folder (``sidbench.core.download``: progress bar, resumed from its
``.part``, verified before it is put in place) or, when the hub hosts it, into the Hugging Face cache at a pinned
revision (``sidbench.core.hub``). With downloads off (``--offline``, ``SIDBENCH_OFFLINE=1``,
``HF_HUB_OFFLINE=1``) a missing file is an error that names the file, its URL and ``sidbench weights fetch NAME``.
Every file's sha256 goes into the results that use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sidbench.core import download, hub
from sidbench.core.errors import MissingWeightsError, SidbenchError
from sidbench.core.provenance import sha256_file

HUB_PIN = "hub LFS oid (the hub's sha256 of the file)"
PREFIX_PIN = "torch-hub file-name prefix (the first 8 hex digits of the sha256, in the published file name)"
URL_PIN = "the URL's path segment (OpenAI's CLIP loader checks the download against it)"


@dataclass(frozen=True)
class WeightsSpec:
    name: str
    filename: str
    url: str
    used_for: str
    sha256: str | None = None          # full hash where a primary source publishes it (pin_source says which)
    sha256_prefix: str | None = None   # torch-hub style file names carry the first 8 hex digits
    size: int | None = None            # bytes, where published beside the hash
    pin_source: str | None = None      # where the pin comes from: a file of a primary source, the URL, the hub
    bundled: str | None = None         # a file shipped inside an installed package: found without the weights folder
    hub_repo: str | None = None        # hosted on the Hugging Face hub: fetched through huggingface_hub's cache
    hub_filename: str | None = None
    revision: str = "main"             # the hub revision asked for (a commit hash pins it)

    @property
    def pin(self) -> str:
        """The pin as one line: the full hash, the prefix, or that there is none."""
        if self.sha256:
            return self.sha256
        return f"{self.sha256_prefix}... (prefix)" if self.sha256_prefix else "not pinned"


def hub_spec(name: str, filename: str, repo: str, hub_filename: str, used_for: str, **pins) -> WeightsSpec:
    """A file the Hugging Face hub hosts: its URL is the hub's resolve address of ``hub_filename``."""
    revision = pins.pop("revision", "main")
    return WeightsSpec(name, filename, f"https://huggingface.co/{repo}/resolve/{revision}/{hub_filename}", used_for,
                       hub_repo=repo, hub_filename=hub_filename, revision=revision, **pins)


def _package_file(package: str, relative: str) -> str | None:
    """A file inside an installed package, found without importing it (None when not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    return str(Path(spec.origin).parent / relative) if spec and spec.origin else None


_SPEC_MBF = "docs/spec/metrics-beyond-fid.md"

# A file without a published hash is "not pinned": its own sha256 is recorded in every result that uses it, and
# `sidbench weights fetch` prints it. Hub files are asked for at revision main: no commit of theirs was found in a
# primary source, and their LFS oids were not found either (see docs/guide/weights.md).
WEIGHTS: dict[str, WeightsSpec] = {w.name: w for w in [
    WeightsSpec("inception-2015-12-05", "inception-2015-12-05.pt",
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
                "FID clean / legacy_tensorflow (TorchScript of the TF FID Inception graph, as clean-fid uses)",
                sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
                pin_source="k-diffusion k_diffusion/evaluation.py (crowsonkb/k-diffusion@0f9902f), which checks "
                           "its download of this URL against it"),
    WeightsSpec("pt_inception-2015-12-05", "pt_inception-2015-12-05-6726825d.pth",
                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
                "FID legacy_pytorch (pytorch-fid InceptionV3 state dict)", sha256_prefix="6726825d",
                pin_source=PREFIX_PIN),
    hub_spec("open_clip-ViT-g-14-laion2b_s12b_b42k", "open_clip_ViT-g-14_laion2b_s12b_b42k.bin",
             "laion/CLIP-ViT-g-14-laion2B-s12B-b42K", "open_clip_pytorch_model.bin",
             "CLIP score (GigaGAN / SiD-LSG definition)"),
    # The aesthetic predictor (eval --aesthetic): OpenAI's CLIP ViT-L/14 (its URL carries the sha256) and the
    # LAION head; both hashes as read in docs/spec/metrics-beyond-fid.md section 3.4.
    WeightsSpec("openai-clip-ViT-L-14", "ViT-L-14.pt",
                "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
                "aesthetic score backbone (OpenAI CLIP ViT-L/14)",
                sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", pin_source=URL_PIN),
    WeightsSpec("laion-aesthetic-v2", "sac+logos+ava1-l14-linearMSE.pth",
                "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth",
                "aesthetic score head (LAION aesthetic predictor v2)",
                sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0", size=3_714_759,
                pin_source=f"the file in christophschuhmann/improved-aesthetic-predictor@6934dd8, hashed ({_SPEC_MBF} 3.4)"),
    # CMMD's network: the URL's path segment is the file's sha256 (scenic checks it so).
    WeightsSpec("openai-clip-ViT-L-14-336", "ViT-L-14-336px.pt",
                "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
                "CMMD (OpenAI CLIP ViT-L/14@336px image embeddings)",
                sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", pin_source=URL_PIN),
    # FD-DINOv2: the torch-hub checkpoints (Apache-2.0 since 2023-08-31); the hub loads them without a hash.
    *[WeightsSpec(f"dinov2_{a}", f"dinov2_{a}_pretrain.pth",
                  f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{a}/dinov2_{a}_pretrain.pth",
                  f"FD-DINOv2 (DINOv2 {a} backbone, torch hub dinov2_{a})") for a in ("vits14", "vitb14", "vitl14")],
    # HPSv2 (tgxs002/HPSv2 utils.py hps_version_map): sizes and hashes not published; the file's hash is recorded.
    *[hub_spec(f"hpsv2-{v}", f, "xswu/HPSv2", f, f"HPS{v} human-preference score (OpenCLIP ViT-H-14 state dict)")
      for v, f in (("v2.0", "HPS_v2_compressed.pt"), ("v2.1", "HPS_v2.1_compressed.pt"))],
    # ImageReward v1.0 (THUDM/ImageReward utils.py): the checkpoint from HF THUDM/ImageReward and BLIP's tokenizer
    # vocabulary (bert-base-uncased); neither hash is published, the file's own is recorded.
    hub_spec("imagereward-v1.0", "ImageReward.pt", "THUDM/ImageReward", "ImageReward.pt",
             "ImageReward v1.0 (BLIP ViT-L/16 + BERT reward model state dict)"),
    hub_spec("bert-base-uncased-vocab", "bert-base-uncased-vocab.txt", "google-bert/bert-base-uncased", "vocab.txt",
             "ImageReward's tokenizer (the bert-base-uncased WordPiece vocabulary; BLIP adds [DEC] and [ENC])"),
    # LPIPS diversity: torchvision's AlexNet and LPIPS v0.1's linear layers (hashed from the repository,
    # docs/spec/metrics-beyond-fid.md section 5); the pip package lpips ships the latter.
    WeightsSpec("alexnet-torchvision", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                "LPIPS trunk (torchvision AlexNet ImageNet state dict)", sha256_prefix="7be5be79", pin_source=PREFIX_PIN),
    WeightsSpec("lpips-alex-v0.1", "alex.pth",
                "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
                "LPIPS v0.1 linear layers (AlexNet)",
                sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", size=6_009,
                pin_source=f"the file in richzhang/PerceptualSimilarity (lpips/weights/v0.1), hashed ({_SPEC_MBF} 5)",
                bundled=_package_file("lpips", "weights/v0.1/alex.pth")),
    WeightsSpec("vgg16-torchvision", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                "precision/recall (torchvision VGG16 ImageNet state dict, extractor vgg16-fc2)",
                sha256_prefix="397923af", pin_source=PREFIX_PIN),
]}


def register_weights(spec: WeightsSpec, *, replace: bool = False) -> None:
    """Add a weight file to the table (e.g. a network a package ships); a taken name is an error unless replaced."""
    if spec.name in WEIGHTS and not replace:
        raise SidbenchError(f"weights named {spec.name!r} are already in the table ({WEIGHTS[spec.name].used_for})")
    WEIGHTS[spec.name] = spec


def weights_dir() -> Path:
    """Where fetched weights live: $SIDBENCH_WEIGHTS, else ~/.cache/sidbench/weights."""
    env = os.environ.get("SIDBENCH_WEIGHTS")
    return Path(env) if env else Path.home() / ".cache" / "sidbench" / "weights"


def locate(spec: WeightsSpec) -> Path:
    """Where the file is, without the network: the weights folder, the package's own copy, the hub cache; else
    where a download puts it (the weights folder, or the hub cache's folder)."""
    return where(spec)[0]


def where(spec: WeightsSpec) -> tuple[Path, str]:
    """The file's place and its store ("weights folder", "package", "hub cache"), or, when it is not here yet,
    where it will go on first use with that store's name."""
    folder = weights_dir() / spec.filename
    if folder.is_file():
        return folder, "weights folder"
    if spec.bundled and Path(spec.bundled).is_file():
        return Path(spec.bundled), "package"
    if spec.hub_repo:
        hit = hub.cached(spec.hub_repo, spec.hub_filename, spec.revision)
        return (hit, "hub cache") if hit else (hub.cache_dir(), "hub cache")
    return folder, "weights folder"


def get_spec(name: str) -> WeightsSpec:
    if name not in WEIGHTS:
        raise SidbenchError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    return WEIGHTS[name]


def check_hash(path: str | os.PathLike, spec: WeightsSpec, actual: str | None = None) -> str:
    """Return the file's sha256; raise if it contradicts the table."""
    actual = actual or sha256_file(path)
    if spec.sha256 and actual != spec.sha256:
        raise SidbenchError(f"{path}: sha256 {actual} does not match the known hash {spec.sha256} of "
                            f"{spec.name}; the file is corrupt or a different file ({spec.url})")
    if spec.sha256_prefix and not actual.startswith(spec.sha256_prefix):
        raise SidbenchError(f"{path}: sha256 {actual} does not start with {spec.sha256_prefix}, the prefix in "
                            f"{spec.name}'s published file name; the file is corrupt or a different file")
    return actual


def find_weights(name: str, path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """A weight file, verified, as (path, sha256): the explicit path, else the local copy, else downloaded now."""
    spec = get_spec(name)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / spec.filename
        if not p.is_file():
            raise MissingWeightsError(f"weights file not found: {p} (expected {spec.filename} for {spec.used_for}; "
                                      f"download it from {spec.url})")
        return p, check_hash(p, spec)
    return fetch(name)


def _offline_error(spec: WeightsSpec, target: Path) -> MissingWeightsError:
    return MissingWeightsError(
        f"missing weights {spec.filename} for {spec.used_for}, and downloads are off (--offline, SIDBENCH_OFFLINE "
        f"or HF_HUB_OFFLINE).\n"
        f"  Online, run: sidbench weights fetch {spec.name}\n"
        f"  or download {spec.url}\n"
        f"  and put it at {target} (or pass its path with --weights)")


def fetch(name: str, dest_dir: str | os.PathLike | None = None, *, url: str | None = None,
          progress: bool = True, timeout: float = 60.0) -> tuple[Path, str]:
    """The known file, verified, as (path, sha256): the local copy (:func:`locate`), else downloaded now.

    A hub-hosted file goes through huggingface_hub's cache unless a folder (``dest_dir``) or a mirror ``url`` is
    given; every other file, and those, through the streaming downloader into the folder (default: the weights
    folder).
    """
    spec = get_spec(name)
    dest = Path(dest_dir) if dest_dir else weights_dir()
    target = dest / spec.filename
    if dest_dir is None and url is None:
        here = locate(spec)
        if here.is_file():
            return here, check_hash(here, spec)
        if spec.hub_repo:
            return _fetch_from_hub(spec, target, progress)
    src = url or (hub.resolve_url(spec.hub_repo, spec.hub_filename, spec.revision) if spec.hub_repo else spec.url)
    if not src.startswith(("http://", "https://")) and not target.is_file():
        raise MissingWeightsError(f"{spec.name} cannot be downloaded: {spec.url}")
    try:
        sha = download.download(src, target, sha256=spec.sha256, size=spec.size, sha256_prefix=spec.sha256_prefix,
                                desc=spec.filename, progress=progress, timeout=timeout)
    except download.OfflineError:
        raise _offline_error(spec, target) from None
    return target, sha


def _fetch_from_hub(spec: WeightsSpec, target: Path, progress: bool) -> tuple[Path, str]:
    try:
        path = hub.hub_file(spec.hub_repo, spec.hub_filename, revision=spec.revision, sha256=spec.sha256,
                            size=spec.size, sha256_prefix=spec.sha256_prefix, progress=progress,
                            fetch_hint=f"Online, run: sidbench weights fetch {spec.name}")
    except download.OfflineError:
        raise _offline_error(spec, target) from None
    return path, check_hash(path, spec)
