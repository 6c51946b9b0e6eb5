"""Tokenizer files without a model hub: the CLIP BPE that open_clip ships, in the layout transformers reads."""
from __future__ import annotations

def write_clip_tokenizer_files(folder) -> None:
    """The OpenAI CLIP BPE (shipped inside open_clip) as transformers ``vocab.json`` + ``merges.txt``."""
    import json
    from pathlib import Path

    import open_clip

    tok = open_clip.get_tokenizer("ViT-L-14")
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(k, k): v for k, v in tok.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
