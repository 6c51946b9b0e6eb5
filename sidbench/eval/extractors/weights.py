"""Known weight files: one table of names, URLs and hashes; local lookup, download and sha256 checks.

Nothing is ever fetched implicitly: metrics look for files locally and, when one is missing, the
error names the file, its URL and where to put it (or the ``sidbench weights fetch`` command).
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sidbench.core.atomic import atomic_path
from sidbench.core.errors import MissingWeightsError, SidbenchError
from sidbench.core.provenance import sha256_file


@dataclass(frozen=True)
class WeightsSpec:
    name: str
    filename: str
    url: str
    used_for: str
    sha256: str | None = None          # full hash where one is published or was measured on the real file
    sha256_prefix: str | None = None   # torch-hub style file names carry the first 8 hex digits
    bundled: str | None = None         # a file shipped inside an installed package: found without the weights folder


def _package_file(package: str, relative: str) -> str | None:
    """A file inside an installed package, found without importing it (None when not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    return str(Path(spec.origin).parent / relative) if spec and spec.origin else None


# sha256 None means no hash we could confirm offline: the file's own hash is recorded in every
# result that uses it, and `sidbench weights fetch` prints it so a lab can pin it here.
WEIGHTS: dict[str, WeightsSpec] = {w.name: w for w in [
    WeightsSpec("inception-2015-12-05", "inception-2015-12-05.pt",
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
                "FID clean / legacy_tensorflow (TorchScript of the TF FID Inception graph, as clean-fid uses)"),
    WeightsSpec("pt_inception-2015-12-05", "pt_inception-2015-12-05-6726825d.pth",
                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
                "FID legacy_pytorch (pytorch-fid InceptionV3 state dict)", sha256_prefix="6726825d"),
    WeightsSpec("open_clip-ViT-g-14-laion2b_s12b_b42k", "open_clip_ViT-g-14_laion2b_s12b_b42k.bin",
                "https://huggingface.co/laion/CLIP-ViT-g-14-laion2B-s12B-b42K/resolve/main/open_clip_pytorch_model.bin",
                "CLIP score (GigaGAN / SiD-LSG definition)"),
    # The aesthetic predictor (eval --aesthetic): OpenAI's CLIP ViT-L/14 (its URL carries the sha256) and the
    # LAION head; both hashes as read in docs/spec/metrics-beyond-fid.md section 3.4.
    WeightsSpec("openai-clip-ViT-L-14", "ViT-L-14.pt",
                "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
                "aesthetic score backbone (OpenAI CLIP ViT-L/14)",
                sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"),
    WeightsSpec("laion-aesthetic-v2", "sac+logos+ava1-l14-linearMSE.pth",
                "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth",
                "aesthetic score head (LAION aesthetic predictor v2)",
                sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"),
    # CMMD's network: the URL's path segment is the file's sha256 (scenic checks it so).
    WeightsSpec("openai-clip-ViT-L-14-336", "ViT-L-14-336px.pt",
                "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
                "CMMD (OpenAI CLIP ViT-L/14@336px image embeddings)",
                sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
    # FD-DINOv2: the torch-hub checkpoints (Apache-2.0 since 2023-08-31); the hub loads them without a hash.
    *[WeightsSpec(f"dinov2_{a}", f"dinov2_{a}_pretrain.pth",
                  f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{a}/dinov2_{a}_pretrain.pth",
                  f"FD-DINOv2 (DINOv2 {a} backbone, torch hub dinov2_{a})") for a in ("vits14", "vitb14", "vitl14")],
    # HPSv2 (tgxs002/HPSv2 utils.py hps_version_map): sizes and hashes not published; the file's hash is recorded.
    *[WeightsSpec(f"hpsv2-{v}", f, f"https://huggingface.co/xswu/HPSv2/resolve/main/{f}",
                  f"HPS{v} human-preference score (OpenCLIP ViT-H-14 state dict)")
      for v, f in (("v2.0", "HPS_v2_compressed.pt"), ("v2.1", "HPS_v2.1_compressed.pt"))],
    # ImageReward v1.0 (THUDM/ImageReward utils.py): the checkpoint from HF THUDM/ImageReward and BLIP's tokenizer
    # vocabulary (bert-base-uncased); neither hash is published, the file's own is recorded.
    WeightsSpec("imagereward-v1.0", "ImageReward.pt", "https://huggingface.co/THUDM/ImageReward/resolve/main/ImageReward.pt",
                "ImageReward v1.0 (BLIP ViT-L/16 + BERT reward model state dict)"),
    WeightsSpec("bert-base-uncased-vocab", "bert-base-uncased-vocab.txt",
                "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt",
                "ImageReward's tokenizer (the bert-base-uncased WordPiece vocabulary; BLIP adds [DEC] and [ENC])"),
    # LPIPS diversity: torchvision's AlexNet and LPIPS v0.1's linear layers (hashed from the repository,
    # docs/spec/metrics-beyond-fid.md section 5); the pip package lpips ships the latter.
    WeightsSpec("alexnet-torchvision", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                "LPIPS trunk (torchvision AlexNet ImageNet state dict)", sha256_prefix="7be5be79"),
    WeightsSpec("lpips-alex-v0.1", "alex.pth",
                "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
                "LPIPS v0.1 linear layers (AlexNet)",
                sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
                bundled=_package_file("lpips", "weights/v0.1/alex.pth")),
    WeightsSpec("vgg16-torchvision", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                "precision/recall (torchvision VGG16 ImageNet state dict, extractor vgg16-fc2)",
                sha256_prefix="397923af"),
]}


def register_weights(spec: WeightsSpec, *, replace: bool = False) -> None:
    """Add a weight file to the table (e.g. a network a package ships); a taken name is an error unless replaced."""
    if spec.name in WEIGHTS and not replace:
        raise SidbenchError(f"weights named {spec.name!r} are already in the table ({WEIGHTS[spec.name].used_for})")
    WEIGHTS[spec.name] = spec


def locate(spec: WeightsSpec) -> Path:
    """Where the file is looked for when no path is given: the weights folder, else the package's own copy."""
    p = weights_dir() / spec.filename
    if not p.is_file() and spec.bundled and Path(spec.bundled).is_file():
        return Path(spec.bundled)
    return p


def weights_dir() -> Path:
    """Where fetched weights live: $SIDBENCH_WEIGHTS, else ~/.cache/sidbench/weights."""
    env = os.environ.get("SIDBENCH_WEIGHTS")
    return Path(env) if env else Path.home() / ".cache" / "sidbench" / "weights"


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
    """Locate a weight file (explicit path first, then the weights folder), verify it, return (path, sha256)."""
    spec = get_spec(name)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / spec.filename
        if not p.is_file():
            raise MissingWeightsError(f"weights file not found: {p} (expected {spec.filename} for {spec.used_for}; "
                                      f"download it from {spec.url})")
        return p, check_hash(p, spec)
    p = locate(spec)
    if not p.is_file():
        raise MissingWeightsError(
            f"missing weights {spec.filename} for {spec.used_for}.\n"
            f"  Download it from {spec.url}\n"
            f"  and put it at {p} (or pass its path with --weights), or run: sidbench weights fetch {name}")
    return p, check_hash(p, spec)


def fetch(name: str, dest_dir: str | os.PathLike | None = None, *, url: str | None = None,
          progress: bool = True, timeout: float = 60.0) -> tuple[Path, str]:
    """Download a known weight file, hashing as it streams; the file appears only once verified."""
    spec = get_spec(name)
    dest = Path(dest_dir) if dest_dir else weights_dir()
    target = dest / spec.filename
    if target.is_file():
        return target, check_hash(target, spec)
    src = url or spec.url
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(src, timeout=timeout) as resp, atomic_path(target, ".part") as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                                            desc=spec.filename) as bar:
                while block := resp.read(1 << 20):
                    f.write(block)
                    h.update(block)
                    bar.update(len(block))
            check_hash(tmp, spec, h.hexdigest())
    except OSError as e:
        raise SidbenchError(f"could not download {spec.filename} from {src}: {e}. Download it by hand and "
                            f"put it at {target}") from None
    return target, h.hexdigest()
