"""The README's table of real teacher architectures: parameters, SiD's static training memory and FLOPs.

Everything is computed on the meta device (no weights, no GPU): parameter counts of the diffusers classes with
each model's published config, forward FLOPs from torch's FLOP counter at the native resolution, and the FLOPs
of one SiD iteration per sample as forward-equivalents x forward FLOPs (see
sidbench.gen.architectures.sid_iteration_forward_equivalents). Run: python bench/arch_table.py
"""
from sidbench.gen.architectures import (ARCHITECTURES, build, count_params, forward_flops, sid_iteration_forward_equivalents,
                                        sid_memory_gib)


def main() -> None:
    per_iter = sid_iteration_forward_equivalents()
    print("| teacher | family | params | fp32 training (GiB): teacher + fake & G (w, grad, Adam) + EMA = total "
          "| bf16 teacher, total (GiB) | forward TFLOP (batch 1, native px) | SiD iteration TFLOP / sample |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name, a in ARCHITECTURES.items():
        n = count_params(build(name))
        m32, m16 = sid_memory_gib(n), sid_memory_gib(n, weights_bytes=2)
        f = forward_flops(name)
        print(f"| {name} ({a.resolution} px) | {a.family} | {n / 1e9:.3f}B | {m32['teacher']:.1f} + "
              f"{m32['fake + generator (w, grad, Adam)']:.1f} + {m32['EMA']:.1f} = {m32['total']:.1f} | "
              f"{m16['total']:.1f} | {f / 1e12:.2f} | {per_iter * f / 1e12:.0f} |")
    print(f"\nSiD iteration = {per_iter:g} forward-equivalents per sample (CFG in both phases).")


if __name__ == "__main__":
    main()
