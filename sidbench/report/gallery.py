"""The best and worst prompts of one evaluation by any per-image score, with their images, as one HTML page.

It reads what ``sidbench eval --per-sample`` left: the results file names the per-sample table
(``outputs.per_sample``) and the generated folder (``inputs.generated.path``); each row's ``file`` is relative to
that folder. Images are embedded as JPEG thumbnails, so the page stands alone (it can be mailed or archived).
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

from sidbench.core.atomic import write_text
from sidbench.core.errors import SidbenchError

THUMB = 256


def _thumbnail(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=88)
    except OSError as e:
        raise SidbenchError(f"gallery: cannot read image {path}: {e}") from None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _sources(results_path: Path) -> tuple[dict, Path, Path]:
    try:
        res = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SidbenchError(f"gallery: cannot read results file {results_path}: {e}") from None
    per_sample = (res.get("outputs") or {}).get("per_sample")
    if not per_sample:
        raise SidbenchError(f"{results_path} has no per-image scores: evaluate with --per-sample FILE (and --clip, "
                            f"--aesthetic, --hps, --pickscore or --image-reward) to make a gallery")
    folder = (res.get("inputs") or {}).get("generated", {}).get("path")
    if not folder or not os.path.isdir(folder):
        raise SidbenchError(f"{results_path}: the generated images' folder ({folder}) is not there; a gallery shows "
                            f"images from a folder (images generated in memory were never written)")
    return res, Path(per_sample), Path(folder)


def _card(row: dict, folder: Path, scores: list[str], by: str, rank: int) -> str:
    vals = " · ".join(f"<b>{html.escape(k)}</b> {row[k]:.4f}" if k == by else f"{html.escape(k)} {row[k]:.4f}"
                      for k in scores)
    return (f'<figure class="card"><img src="{_thumbnail(folder / row["file"])}" alt="image {row["index"]}">'
            f'<figcaption><span class="rank">#{rank}</span> <span class="prompt">{html.escape(row["prompt"])}</span>'
            f'<br><span class="scores">{vals}</span><br><span class="file">{html.escape(row["file"])}</span>'
            f'</figcaption></figure>')


def gallery_html(results_path, out, *, by: str | None = None, top: int = 8) -> Path:
    """Write the page; ``by``: the score to rank by (default: the first in the table), ``top``: images per end."""
    from sidbench.eval.compare import read_per_sample

    results_path = Path(results_path)
    res, per_sample, folder = _sources(results_path)
    table = read_per_sample(per_sample)
    scores = list(table["scores"])
    by = by or scores[0]
    if by not in scores:
        raise SidbenchError(f"gallery: no per-image score {by!r} in {per_sample}; it has {', '.join(scores)}")
    if top < 1:
        raise SidbenchError(f"--top {top}: show at least one image at each end")
    files = table["file"]
    if not all(files):
        raise SidbenchError(f"{per_sample}: rows without a file name (images from an array have none to show)")
    rows = [{"index": i, "prompt": p, "file": f, **{k: float(table["scores"][k][j]) for k in scores}}
            for j, (i, p, f) in enumerate(zip(table["index"], table["prompt"], files))]
    order = sorted(rows, key=lambda r: (-r[by], r["index"]))  # ties: lower index first, so the page is stable
    n = min(top, len(order) // 2 or 1)
    best, worst = order[:n], order[::-1][:n]
    subject = res.get("subject") or {}
    metric = (res.get("metrics") or {}).get(by) or {}
    title = f"sidbench gallery — {subject.get('name', results_path.stem)} by {by}"
    body = "\n".join([
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{len(rows)} images; mean {html.escape(by)} {metric.get("value", float("nan")):.4f}; '
        f'{html.escape(metric.get("definition", ""))}. Results: {html.escape(str(results_path))}; scores: '
        f'{html.escape(str(per_sample))}.</p>',
        f"<h2>Highest {n} by {html.escape(by)}</h2>", '<div class="grid">',
        *[_card(r, folder, scores, by, k + 1) for k, r in enumerate(best)], "</div>",
        f"<h2>Lowest {n} by {html.escape(by)}</h2>", '<div class="grid">',
        *[_card(r, folder, scores, by, len(rows) - k) for k, r in enumerate(worst)], "</div>",
    ])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; background: #fff; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({THUMB}px, 1fr)); gap: 16px; }}
.card {{ margin: 0; border: 1px solid #ddd; padding: 8px; }}
.card img {{ width: 100%; height: auto; display: block; }}
figcaption {{ font-size: 13px; margin-top: 6px; }} .rank {{ color: #888; }} .file {{ color: #888; font-size: 11px; }}
.meta {{ color: #555; font-size: 13px; }}
</style></head><body>
{body}
</body></html>
"""
    out = Path(out)
    write_text(out, page)
    return out
