"""Decode speed of the formats people keep, beside JPEG of the same pixel count.

One photo-like picture of ``--megapixels`` (default 12, a phone's 4032 x 3024) is written in
each format by its own library, ``--n`` files each (seeded, cached under /tmp), then one run
decodes every file through retrieval.images.load_image as build-index's loader does (draft
to the transform's 256-pixel shorter side; the page's thumbnails ask the same), best of
``--repeat`` passes, one process:

  JPEG                       the baseline: DCT scaling decodes 1/8 of the pixels
  HEIC                       full HEVC decode (HEVC has no cheap scaling)
  HEIC + 512 px thumbnail    pillow-heif's thumbnail path (what phones embed)
  RAW: DNG, JPEG preview     rawpy opens the file, the full-size preview decodes as a JPEG
  RAW: DNG, no preview       LibRaw's half-size demosaic, the fallback

    python benchmarks/formats.py                 # about two minutes on 2 CPU cores
    python benchmarks/formats.py --megapixels 24 --n 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DRAFT = 256  # the ImageNet transform's resize: what build-index asks of the decode
THUMBNAIL = 512  # pixels on the longer side of the thumbnail the HEIC files carry


def picture(megapixels: float, seed: int) -> Image.Image:
    """Smooth colour with fine detail, 4:3, like a photo."""
    w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    h = int(megapixels * 1e6 / w)
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    img = np.asarray(low.resize((w, h), Image.Resampling.BICUBIC), np.int16)
    img += rng.integers(-8, 9, (h, w, 1), dtype=np.int16)  # grain, so codecs have work
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_files(folder: Path, megapixels: float, n: int) -> dict[str, list[Path]]:
    """``n`` files of each kind, written once (HEVC encoding is slow)."""
    import pillow_heif
    from formats_corpus import write_dng

    pillow_heif.register_heif_opener()
    kinds = {"JPEG": [], "HEIC": [], "HEIC + thumbnail": [], "RAW: DNG, JPEG preview": [],
             "RAW: DNG, no preview": []}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        names = [folder / f"{i}.jpg", folder / f"{i}.heic", folder / f"{i}-thumb.heic",
                 folder / f"{i}-preview.dng", folder / f"{i}-mosaic.dng"]
        for kind, path in zip(kinds, names, strict=True):
            kinds[kind].append(path)
        if all(p.exists() for p in names):
            continue
        img = picture(megapixels, i)
        img.save(names[0], quality=90)
        img.save(names[1], quality=80)
        img.save(names[2], quality=80, thumbnails=[THUMBNAIL])
        write_dng(names[3], img, size=img.size)
        write_dng(names[4], None, size=img.size)
    return kinds


def decode_rate(paths: list[Path], repeat: int) -> tuple[float, tuple[int, int]]:
    """Images/s through load_image (best of ``repeat``), and the size it hands out."""
    from retrieval.images import load_image

    load_image(paths[0], draft_size=DRAFT)  # the decoder's libraries loaded, the file cached
    best, size = 0.0, (0, 0)
    for _ in range(repeat):
        start = time.perf_counter()
        for p in paths:
            size = load_image(p, draft_size=DRAFT).size
        best = max(best, len(paths) / (time.perf_counter() - start))
    return best, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--n", type=int, default=6, help="files of each kind")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / f"retrieve-bench-formats-{args.megapixels:g}-{args.n}"
    kinds = make_files(folder, args.megapixels, args.n)
    rates = {kind: decode_rate(paths, args.repeat) for kind, paths in kinds.items()}
    jpeg = rates["JPEG"][0]
    w, h = Image.open(kinds["JPEG"][0]).size
    print(f"{args.n} files each of {w} x {h} ({w * h / 1e6:.1f} MP); load_image with draft "
          f"{DRAFT}, one process, best of {args.repeat}; {os.cpu_count()} CPU cores")
    print(f"{'format':28s} {'images/s':>9s} {'vs JPEG':>8s}  decoded at")
    for kind, (rate, size) in rates.items():
        print(f"{kind:28s} {rate:9.2f} {rate / jpeg:8.2f}  {size[0]} x {size[1]}")


if __name__ == "__main__":
    main()
