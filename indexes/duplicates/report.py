"""What `retrieve duplicates` shows: a ``duplicates.Report`` as text, JSON, CSV or a page."""

from __future__ import annotations

import base64
import csv
import html
import io

from PIL import ImageOps

from retrieval.errors import NotAnImage
from retrieval.images import load_image

from indexes.duplicates.find import Report

THUMBNAIL = 160  # pixels a side in the HTML report


def to_json(report: Report) -> dict:
    """``{"index", "threshold", "groups": [{"tier", "paths", "members": [...]}, ...]}``, the
    file to keep first in each group."""
    return {"index": report.index, "images": report.images, "threshold": report.threshold,
            "threshold_source": report.threshold_source, "candidates": report.candidates,
            "verified": report.verified, "compared": report.compared,
            "groups": [{"tier": g.tier, "paths": [m.path for m in g.members],
                        "members": [vars(m) for m in g.members]} for g in report.groups]}


def text(report: Report, printable=str) -> str:
    """One paragraph per group: its tier, then each file, the one to keep first, with its
    fc7 distance, pixel correlation and difference to the kept file."""
    out = []
    for g in report.groups:
        title = "exact copies" if g.tier == "exact" else "near-duplicates"
        lines = [f"{title} ({len(g.members)} files):"]
        for n, m in enumerate(g.members):
            what = "keep" if n == 0 else f"{m.distance:.4f}"
            pixels = ("" if n == 0 or m.similarity is None
                      else f", pixels {m.similarity:.3f}, differing {m.difference:.3f}")
            lines.append(f"  {what:>9}  {printable(m.path)}  ({m.width}x{m.height}, "
                         f"{m.bytes / 1e6:.2f} MB{pixels})")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def to_csv(report: Report) -> str:
    """Rows of group, tier, path, distance (to the kept file), similarity, difference, kept
    (1 or 0); similarity and difference empty when the pixels were not compared."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "tier", "path", "distance", "similarity", "difference", "kept"])
    for n, g in enumerate(report.groups, 1):
        for k, m in enumerate(g.members):
            pixels = (["", ""] if m.similarity is None
                      else [f"{m.similarity:.4f}", f"{m.difference:.4f}"])
            writer.writerow([n, g.tier, m.path, f"{m.distance:.6g}", *pixels, int(k == 0)])
    return buf.getvalue()


def _thumbnail(path: str) -> str:
    """A data: URL of a small JPEG of the image, or "" when it cannot be read."""
    try:
        img = ImageOps.contain(load_image(path, draft_size=THUMBNAIL), (THUMBNAIL, THUMBNAIL))
    except NotAnImage:
        return ""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def to_html(report: Report) -> str:
    """A self-contained page: each group a row of thumbnails, the file to keep framed."""
    esc = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    rows = []
    for n, g in enumerate(report.groups, 1):
        cells = []
        for k, m in enumerate(g.members):
            label = "keep" if k == 0 else f"{m.distance:.3f}"
            cells.append(f'<figure class="{"keep" if k == 0 else ""}"><img src="'
                         f'{_thumbnail(m.path)}" alt=""><figcaption><b>{label}</b> '
                         f'{esc(m.width)}x{esc(m.height)}<br>{esc(m.path)}</figcaption></figure>')
        tier = "exact copies" if g.tier == "exact" else "near-duplicates"
        rows.append(f"<section><h2>{n}. {tier} ({len(g.members)} files)</h2>"
                    f"{''.join(cells)}</section>")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>duplicates in {esc(report.index)}</title><style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #f6f5f2; }}
section {{ display: flex; flex-wrap: wrap; gap: .6rem; margin-bottom: 1.5rem; }}
h2 {{ width: 100%; font-size: 1rem; margin: 0; }}
figure {{ margin: 0; width: {THUMBNAIL}px; background: #fff; padding: .3rem; }}
figure.keep {{ outline: 3px solid #c8102e; }}
img {{ width: {THUMBNAIL}px; height: {THUMBNAIL}px; object-fit: contain; background: #eee; }}
figcaption {{ font-size: .75rem; word-break: break-all; }}
</style></head><body>
<h1>{len(report.groups)} groups of duplicates among {report.images} images</h1>
<p>{esc(report.index)}: fc7 threshold {report.threshold:.4g} ({esc(report.threshold_source)});
the file to keep is framed. Nothing was moved or deleted.</p>
{''.join(rows)}
</body></html>
"""
