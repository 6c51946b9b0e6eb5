"""The record keys of a distillation run's ``log.jsonl``: written by the trainer, read by ``sidbench report``.

One definition, so a renamed key breaks the writer and every reader together (and their tests).
"""
ITERATION = "iteration"    # iterations done (one fake-score step + one generator step each)
KIMG = "kimg"              # thousands of generator images seen
PROXY_FID = "proxy_fid"    # in-training FID of the EMA generator on the proxy prompts (not a protocol number)
PROXY_CLIP = "proxy_clip"  # in-training CLIP score on the same prompts
PROXY_N = "proxy_n"        # how many images the proxy used
