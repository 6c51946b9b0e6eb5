"""The README's tables of real teacher architectures and their text encoders: parameters, SiD's static training
memory and FLOPs.

Everything is computed on the meta device (no weights, no GPU): parameter counts of the diffusers and
transformers classes with each model's published config, forward FLOPs from torch's FLOP counter at the native
resolution, and the FLOPs of one SiD iteration per sample as forward-equivalents x forward FLOPs (see
sidbench.gen.architectures.sid_iteration_forward_equivalents). Run: python bench/arch_table.py
"""
from sidbench.gen.architectures import (ARCHITECTURES, TEXT_ENCODERS, build, count_buffers, count_params, forward_flops,
                                        sid_iteration_forward_equivalents, sid_memory_gib)

GIB = 2 ** 30


def main() -> None:
    per_iter = sid_iteration_forward_equivalents()
    enc_params = {e: count_params(build(e)) for e in TEXT_ENCODERS}
    print("| teacher | family | params | text encoders (params, bf16 GiB) | fp32 training (GiB): teacher + fake & G "
          "(w, grad, Adam) + EMA + text encoders = total | bf16 teacher & text encoders, total (GiB) "
          "| forward TFLOP (batch 1, native px) | SiD iteration TFLOP / sample |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    for name, a in ARCHITECTURES.items():
        net = build(name)
        n, buf = count_params(net), count_buffers(net)
        e = sum(enc_params[k] for k in a.text_encoders)
        m32 = sid_memory_gib(n, buffers=buf, encoder_params=e)
        m16 = sid_memory_gib(n, buffers=buf, encoder_params=e, weights_bytes=2)
        f = forward_flops(name)
        params = f"{n / 1e9:.3f}B" + (f" + {buf / 1e9:.3f}B fixed buffer" if buf else "")
        encoders = " + ".join(f"{k} {enc_params[k] / 1e9:.3f}B" for k in a.text_encoders)
        if len(a.text_encoders) > 1:
            encoders += f" = {e / 1e9:.3f}B"
        print(f"| {name} ({a.resolution} px) | {a.family} | {params} | {encoders}, {e * 2 / GIB:.2f} GiB | "
              f"{m32['teacher']:.1f} + {m32['fake + generator (w, grad, Adam)']:.1f} + {m32['EMA']:.1f} + "
              f"{m32['text encoders (frozen)']:.1f} = {m32['total']:.1f} | {m16['total']:.1f} | {f / 1e12:.2f} | "
              f"{per_iter * f / 1e12:.0f} |")
    print(f"\nSiD iteration = {per_iter:g} forward-equivalents per sample (CFG in both phases); the text encoders "
          "are not in it (prompt embeddings cached).")
    print("Text encoders are frozen: weights only (no gradients, no Adam, no EMA), in fp32 or bf16 as the column "
          "says. Once the prompt embeddings are cached they can be offloaded, which removes their term from the "
          "total.\n")
    print("| text encoder | class | params | bf16 GiB | used by |")
    print("|---|---|---:|---:|---|")
    for k, n in enc_params.items():
        users = ", ".join(a.name for a in ARCHITECTURES.values() if k in a.text_encoders)
        print(f"| {k} | {type(build(k)).__name__} | {n / 1e9:.3f}B | {n * 2 / GIB:.2f} | {users} |")


if __name__ == "__main__":
    main()
