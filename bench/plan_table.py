"""The README's `distill --plan` table: memory per device of SiD training for SD1.5, SDXL, SD3.5-Large and FLUX.1
under three setups, from meta-device architectures (real configs) and activations measured on fake tensors.

Run: python bench/plan_table.py [--static-only] [NAME ...]   (default: the four). The activation measurement
takes 30-90 s per architecture on 2 cores (2.5-5 min for the four; with torch's MemTracker it took 3 min for SD1.5
and 40 for SDXL); --static-only prints the static part alone, in seconds. The last row of each teacher is the
first setup that fits 80 GiB per device, as `distill --plan --device-memory 80` would name it.
"""
import sys
import time

from distill.plan import Setup, plan, what_fits

NAMES = ("SD1.5 UNet", "SDXL UNet", "SD3.5-Large MMDiT", "FLUX.1-dev")
SETUPS = (("the reference's settings: fp32, plain DDP", Setup(processes=8)),
          ("bf16, checkpointing, plain DDP", Setup(processes=8, precision="bf16", grad_checkpointing=True)),
          ("bf16, checkpointing, FSDP x8 (teacher replicated)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, sharding="fsdp")),
          ("bf16, checkpointing, FSDP x8 (teacher sharded)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, sharding="fsdp", teacher_sharding="shard")),
          ("bf16, checkpointing (teacher too), FSDP x8 (teacher sharded)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, recompute_teacher=True, sharding="fsdp",
                 teacher_sharding="shard")),
          ("bf16, checkpointing (teacher too), bf16 text encoders, FSDP x8 (teacher sharded)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, recompute_teacher=True,
                 text_encoder_dtype="bf16", sharding="fsdp", teacher_sharding="shard")))


def static_only(names) -> None:
    from distill.plan import GIB, _counts, static_parts

    print("| teacher | setup | static GiB per device | fits 80 GiB before activations |")
    print("|---|---|---:|---|")
    for name in names:
        for label, s in SETUPS:
            total = sum(static_parts(*_counts(name), s=s).values()) / GIB
            print(f"| {name} | {label} | {total:.1f} | {'yes' if total <= 80 else 'no'} |")


def row(name: str, label: str, p: dict) -> None:
    act = [v for k, v in p["parts_gib"].items() if k.startswith("activations")][0]
    print(f"| {name} | {label} | {p['total_gib'] - act:.1f} | {act:.1f} | {p['total_gib']:.1f} | "
          f"{'yes' if p['fits'] else 'no'} |", flush=True)


def main(names) -> None:
    print("| teacher | setup (batch 1 per device, CFG in phase B) | static GiB | activations GiB | total GiB per device | fits 80 GiB |")
    print("|---|---|---:|---:|---:|---|")
    for name in names:
        t0 = time.time()
        fits = {}  # activation fits, shared by the setups of one teacher
        for label, s in SETUPS:
            p = plan(name, s, 80.0, fits)
            row(name, label, p)
        if not plan(name, SETUPS[0][1], 80.0, fits)["fits"]:  # the reference's setup: name what would fit
            alt = what_fits(name, SETUPS[0][1], 80.0, fits)
            if alt is None:
                print(f"| {name} | nothing tried fits 80 GiB | | | | no |")
            else:
                row(name, f"first that fits 80 GiB: {alt['setup']}", alt)
        print(f"<!-- {name}: {time.time() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--static-only" in argv:
        argv.remove("--static-only")
        static_only(argv or NAMES)
    else:
        main(argv or NAMES)
