"""Evaluation protocols: what a number must have been made with to be comparable to published ones.

A protocol fixes prompts, sample count, seeds, image size, pre-resize, FID mode, CLIP variant and the
reference set. ``check`` lists every way a run departs from it; ``sidbench eval --protocol`` refuses such
a run unless ``--allow-deviation``, which marks the result as not comparable.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from sidbench.core.errors import SidbenchError
from sidbench.data.dataset_table import get_dataset
from sidbench.data.prompts import get_known_list


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    prompts: str | None              # the fixed prompt list, by name (its manifest in prompts/); None: any list
    n_samples: int | None            # one image per prompt
    seeds: str                       # how image i is seeded
    image_size: int | None           # generation resolution
    pre_resize: int | None           # centre crop + Lanczos on both sides before the FID resize
    fid_mode: str
    clip_variant: str | None
    clip_model: str | None
    reference: str                   # what the reference set is
    reference_dataset: str | None    # the reference set, by name (its manifest in data/dataset_sets); None: any
    source: str

    @property
    def prompts_md5(self) -> str | None:
        """The md5 of the fixed prompt list, from its manifest (written there only)."""
        return None if self.prompts is None else get_known_list(self.prompts).md5

    @property
    def reference_count(self) -> int | None:
        """Images in the reference set, from its dataset's manifest (written there only)."""
        return None if self.reference_dataset is None else get_dataset(self.reference_dataset).images


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("coco2014-30k", "GigaGAN protocol (SiD-LSG, DMD2, GigaGAN, SwiftBrush v2): 30K COCO-2014 val captions",
             prompts="gigagan-coco2014-30k", n_samples=30000, seeds="image i from seed i",
             image_size=512, pre_resize=256, fid_mode="clean", clip_variant="gigagan", clip_model="ViT-g-14",
             reference="all COCO val2014 images (recursive), not only the 30K sampled", reference_dataset="coco2014-val",
             source="arXiv 2303.05511 (GigaGAN) evaluation; arXiv 2406.01561 Table 1"),
    Protocol("coco2017-5k", "InstaFlow-style: 5K COCO-2017 val captions, one per image, FID against those 5K images",
             prompts=None, n_samples=5000, seeds="image i from seed i", image_size=512, pre_resize=256,
             fid_mode="clean", clip_variant="gigagan", clip_model="ViT-g-14",
             reference="the 5,000 COCO val2017 images the captions belong to", reference_dataset="coco2017-val",
             source="arXiv 2309.06380 (no public code fixes every detail: its own protocol)"),
    Protocol("custom", "No published protocol: every choice is the user's and recorded", prompts=None,
             n_samples=None, seeds="as recorded", image_size=None, pre_resize=None, fid_mode="clean",
             clip_variant=None, clip_model=None, reference="as given", reference_dataset=None, source="-"),
]}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise SidbenchError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


for _p in PROTOCOLS.values():
    if _p.prompts is not None:
        get_known_list(_p.prompts)  # an unknown list name fails here, at import, not in the middle of a run
    if _p.reference_dataset is not None:
        get_dataset(_p.reference_dataset)  # so does an unknown dataset name
del _p


def describe(p: Protocol) -> dict:
    """The protocol's fields, with the prompt list's md5 (from its manifest) beside its name."""
    out = {}
    for key, value in asdict(p).items():
        out[key] = value
        if key == "prompts":
            out["prompts_md5"] = p.prompts_md5
        if key == "reference_dataset":
            out["reference_count"] = p.reference_count
    return out


def reference_folder(p: Protocol, folder: str | os.PathLike) -> dict | None:
    """Check that ``folder`` holds the protocol's whole reference set; what to record of it (None: no manifest).

    Any folder must hold the reference dataset's image count (found as every verb finds images: recursively). A
    folder written by ``sidbench data fetch`` must also be the protocol's dataset and unchanged since.
    """
    from sidbench.data.dataset_fetch import FOLDER_MANIFEST, check_folder, dataset_record, read_folder_manifest
    from sidbench.data.images import list_image_files

    if p.reference_dataset is None:
        raise SidbenchError(f"protocol {p.name} names no reference dataset: compute the statistics without --protocol")
    spec = get_dataset(p.reference_dataset)
    fetch = f"`sidbench data fetch {spec.name} DIR`"
    if not os.path.isdir(folder):
        raise SidbenchError(f"{folder} is not a folder; the {p.name} reference is the folder of {spec.name}'s "
                            f"images: fetch it with {fetch}")
    doc = read_folder_manifest(folder)
    if doc is not None and doc["name"] != spec.name:
        raise SidbenchError(f"{folder} holds {doc['name']} (its {FOLDER_MANIFEST}); the {p.name} reference is "
                            f"{spec.name}: fetch it with {fetch}")
    n = len(list_image_files(folder))
    if n != spec.images:
        raise SidbenchError(f"{folder} holds {n:,} images; the {p.name} reference is all {spec.images:,} images of "
                            f"{spec.name} ({spec.description}): fetch them with {fetch}")
    if doc is None:
        return None
    check_folder(folder, doc)
    return dataset_record(doc, folder)


def check(p: Protocol, *, n_gen: int | None, n_ref: int | None, fid_mode: str, pre_resize: int | None,
          prompts_md5: str | None, clip: bool, clip_model: str | None, random_weights: bool,
          clip_variant: str | None = None, ref_dataset: str | None = None) -> list[str]:
    """Every way this run departs from the protocol (empty: comparable)."""
    if p.name == "custom":
        return []
    out = []
    if p.n_samples is not None and n_gen is not None and n_gen != p.n_samples:
        out.append(f"{n_gen} generated images, the protocol uses {p.n_samples}")
    if p.reference_count is not None and n_ref is not None and n_ref != p.reference_count:
        out.append(f"{n_ref} reference images, the protocol's reference ({p.reference}) has {p.reference_count}")
    if p.reference_dataset is not None and ref_dataset is not None and ref_dataset != p.reference_dataset:
        out.append(f"the reference is {ref_dataset} (as fetched by sidbench data fetch), the protocol's is "
                   f"{p.reference_dataset}")
    if fid_mode != p.fid_mode:
        out.append(f"FID mode {fid_mode}, the protocol uses {p.fid_mode}")
    if pre_resize != p.pre_resize:
        out.append(f"pre-resize {pre_resize}, the protocol uses {p.pre_resize}")
    if p.prompts_md5 is not None:
        if prompts_md5 is None:
            out.append(f"no prompt list given, so it cannot be checked against the protocol's (md5 {p.prompts_md5})")
        elif prompts_md5 != p.prompts_md5:
            out.append(f"prompt list md5 {prompts_md5}, the protocol's list has md5 {p.prompts_md5}")
    if clip and p.clip_variant is not None and clip_variant is not None and clip_variant != p.clip_variant:
        out.append(f"CLIP variant {clip_variant}, the protocol uses {p.clip_variant}")
    if clip and p.clip_model is not None and clip_model != p.clip_model:
        out.append(f"CLIP model {clip_model}, the protocol uses {p.clip_model}")
    if random_weights:
        out.append("a network with random weights (architecture only)")
    return out
