"""A folder of every format people keep, written by each format's own library: HEIC
(pillow-heif), AVIF and WebP (Pillow), JPEG XL (pillow-jxl-plugin), DNG with and without its
JPEG preview (tifffile), 16-bit PNG and YCCK JPEG (imagecodecs), with orientations,
transparency and animations. Never a renamed JPEG.

``make_formats(folder)`` returns {case: Case}: the file, and the upright RGB picture its
decode must give (None where only the mode and size can be known: a demosaic of noise).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pillow_heif
import pillow_jxl  # noqa: F401 (registers JPEG XL with Pillow)
import tifffile
from PIL import Image, ImageDraw

from retrieval.images import BACKGROUND

EXIF_ORIENTATION = 0x0112
SIZE = (96, 64)  # not square, so that a wrong turn shows
LOGO = 48


@dataclass(frozen=True)
class Case:
    path: Path
    upright: Image.Image | None  # what the decode must give, near enough for lossy formats
    size: tuple[int, int] | None = None  # when ``upright`` cannot be known


def photo(seed: int, size=SIZE) -> Image.Image:
    """A smooth, colourful picture with some detail, as a photo looks at a small size."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC)
    detail = rng.normal(0, 10, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(low, float) + detail, 0, 255).astype(np.uint8))


def logo(kind: int) -> Image.Image:
    """White artwork on a transparent square: a ring, a bar, a cross, a triangle, a corner."""
    img = Image.new("RGBA", (LOGO, LOGO), (255, 255, 255, 0))  # transparent white
    d, white = ImageDraw.Draw(img), (255, 255, 255, 255)
    if kind == 0:
        d.ellipse([8, 8, 40, 40], outline=white, width=6)
    elif kind == 1:
        d.rectangle([20, 4, 28, 44], fill=white)
    elif kind == 2:
        d.rectangle([4, 20, 44, 28], fill=white)
        d.rectangle([20, 4, 28, 44], fill=white)
    elif kind == 3:
        d.polygon([(24, 4), (4, 44), (44, 44)], fill=white)
    else:
        d.rectangle([0, 0, 20, 20], fill=white)
    return img


def on_background(img: Image.Image) -> Image.Image:
    out = Image.new("RGB", img.size, BACKGROUND)
    out.paste(img, mask=img.getchannel("A"))
    return out


def sideways(img: Image.Image) -> tuple[Image.Image, bytes]:
    """The pixels a camera stores for ``img`` held upright, and the EXIF (orientation 6,
    "turn 90 degrees clockwise to show") that undoes it."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return img.transpose(Image.Transpose.ROTATE_90), exif.tobytes()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write_dng(path: Path, preview: Image.Image | None, orientation: int = 1,
              size: tuple[int, int] = SIZE) -> None:
    """A DNG as cameras write them: IFD0 the JPEG preview (a reduced-resolution image), its
    SubIFD the Bayer mosaic of ``size``; without ``preview``, the mosaic alone in IFD0."""
    w, h = size
    mosaic = np.random.default_rng(7).integers(0, 4096, (h, w), dtype=np.uint16)
    dng = [(50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
           (50708, "s", 0, "retrieve test camera", True),  # UniqueCameraModel
           (274, "H", 1, orientation, True)]  # Orientation
    cfa = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # RGGB
           (50717, "I", 1, 4095, True),  # WhiteLevel
           (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
           (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True)]  # ColorMatrix1, AsShotNeutral
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(mosaic, photometric="cfa", subfiletype=0, extratags=dng + cfa)
            return
        jpeg = _save(preview, "JPEG", quality=92)  # the camera's own JPEG, stored as it is
        tif.write(iter([jpeg]), shape=(preview.height, preview.width, 3), dtype=np.uint8,
                  photometric="ycbcr", compression="jpeg", subsampling=(2, 2),
                  rowsperstrip=preview.height, subfiletype=1, subifds=1, extratags=dng)
        tif.write(mosaic, photometric="cfa", subfiletype=0, extratags=cfa)


def make_formats(folder: Path) -> dict[str, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    pillow_heif.register_heif_opener()
    made: dict[str, Case] = {}

    def add(case: str, name: str, data: bytes, upright, size=None) -> None:
        (folder / name).write_bytes(data)
        made[case] = Case(folder / name, upright, size)

    pic = [photo(seed) for seed in range(14)]
    for i, (case, name, fmt) in enumerate([("heic, turned", "phone.heic", "HEIF"),
                                            ("avif, turned", "photo.avif", "AVIF"),
                                            ("jpeg xl, turned", "photo.jxl", "JXL"),
                                            ("webp, turned", "photo.webp", "WEBP")]):
        stored, exif = sideways(pic[i])
        add(case, name, _save(stored, fmt, quality=90, exif=exif), pic[i])
    stored, _ = sideways(pic[4])
    add("tiff 16-bit, turned", "scan.tif",
        _tiff16(np.asarray(stored, np.uint16) * 257, orientation=6), pic[4])
    add("png 16-bit", "deep.png", imagecodecs.png_encode(np.asarray(pic[5], np.uint16) * 257),
        pic[5])
    add("jpeg cmyk", "print.jpg", _save(pic[6].convert("CMYK"), "JPEG", quality=95), pic[6])
    cmyk = 255 - np.asarray(pic[7].convert("CMYK"))  # Adobe's convention: stored inverted
    add("jpeg ycck", "print-ycck.jpg",
        imagecodecs.jpeg8_encode(cmyk, level=95, colorspace="CMYK", outcolorspace="YCCK"), pic[7])
    add("png palette", "palette.png", _save(pic[8].quantize(64), "PNG"),
        pic[8].quantize(64).convert("RGB"))
    for kind in (0, 1):
        add(f"png logo {kind}", f"logo-{kind}.png", _save(logo(kind), "PNG"),
            on_background(logo(kind)))
    add("heic with alpha", "sticker.heic", _save(logo(2), "HEIF", quality=95),
        on_background(logo(2)))
    add("webp with alpha", "sticker.webp", _save(logo(3), "WEBP", lossless=True),
        on_background(logo(3)))
    gif = Image.new("P", (LOGO, LOGO), 0)  # index 0 transparent, 1 white
    gif.putpalette([0, 0, 0, 255, 255, 255])
    gif.paste(1, mask=logo(4).getchannel("A"))
    add("gif with transparency", "icon.gif", _save(gif, "GIF", transparency=0),
        on_background(logo(4)))
    add("animated webp", "clip.webp", _save(pic[9], "WEBP", quality=90, save_all=True,
                                             append_images=[pic[10]], duration=100), pic[9])
    stored, exif = sideways(pic[11])
    preview = folder / "camera.dng"
    write_dng(preview, stored, orientation=6)
    made["dng with preview, turned"] = Case(preview, pic[11])
    write_dng(folder / "mosaic.dng", None)
    made["dng without preview"] = Case(folder / "mosaic.dng", None, (SIZE[0] // 2, SIZE[1] // 2))
    add("avif, no extension", "avif-without-extension", _save(pic[12], "AVIF", quality=90), pic[12])
    add("heic, no extension", "heic-without-extension", _save(pic[13], "HEIF", quality=90), pic[13])
    return made


def _tiff16(rgb: np.ndarray, orientation: int) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    return buf.getvalue()
