"""The README's `distill --plan` table: memory per device of SiD training for SD1.5, SDXL, SD3.5-Large and FLUX.1
under three setups, from meta-device architectures (real configs) and activations measured on fake tensors.

Run: python bench/plan_table.py [--static-only] [NAME ...]   (default: the four). The activation measurement
takes about 3 minutes for SD1.5 and half an hour for SDXL on 2 cores (bf16 autocast on fake tensors is the slow
part); --static-only prints the static part alone, in seconds.
"""
import sys
import time

from distill.plan import Setup, plan

NAMES = ("SD1.5 UNet", "SDXL UNet", "SD3.5-Large MMDiT", "FLUX.1-dev")
SETUPS = (("the reference's: fp32, plain DDP", Setup(processes=8)),
          ("bf16, checkpointing, plain DDP", Setup(processes=8, precision="bf16", grad_checkpointing=True)),
          ("bf16, checkpointing, FSDP x8 (teacher replicated)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, sharding="fsdp")),
          ("bf16, checkpointing, FSDP x8 (teacher sharded)",
           Setup(processes=8, precision="bf16", grad_checkpointing=True, sharding="fsdp", teacher_sharding="shard")))


def static_only(names) -> None:
    from distill.plan import GIB, _counts, static_parts

    print("| teacher | setup | static GiB per device | fits 80 GiB before activations |")
    print("|---|---|---:|---|")
    for name in names:
        for label, s in SETUPS:
            total = sum(static_parts(*_counts(name), s).values()) / GIB
            print(f"| {name} | {label} | {total:.1f} | {'yes' if total <= 80 else 'no'} |")


def main(names) -> None:
    print("| teacher | setup (batch 1 per device, CFG in phase B) | static GiB | activations GiB | total GiB per device | fits 80 GiB |")
    print("|---|---|---:|---:|---:|---|")
    for name in names:
        t0 = time.time()
        fits = {}  # activation fits, shared by the setups of one teacher
        for label, s in SETUPS:
            p = plan(name, s, 80.0, fits)
            act = [v for k, v in p["parts_gib"].items() if k.startswith("activations")][0]
            print(f"| {name} | {label} | {p['total_gib'] - act:.1f} | {act:.1f} | {p['total_gib']:.1f} | "
                  f"{'yes' if p['fits'] else 'no'} |", flush=True)
        print(f"<!-- {name}: {time.time() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--static-only" in argv:
        argv.remove("--static-only")
        static_only(argv or NAMES)
    else:
        main(argv or NAMES)
