"""A folder of hostile files, made on the spot: what a real photo collection throws at the tool.

``make_hostile(folder)`` returns {case: (path, expected)} where expected is "ok" (must be
indexed) or the start of the reason it must be skipped with.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from conftest import draw_shape

EXIF_ORIENTATION = 0x0112


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG whose header claims 900 Mpixels (Pillow refuses above 2 x 89 Mpixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def rotated_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """The JPEG a camera writes: pixels stored sideways plus the EXIF tag that undoes it."""
    # Orientation 6 means "rotate 90 degrees clockwise to display": store it turned the other way.
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6
                               else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_hostile(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    shape = draw_shape(1, size=96, seed=5)
    jpeg, png = _save(shape, "JPEG", quality=90), _save(shape, "PNG")
    files: dict[str, tuple[str, bytes, str]] = {
        "empty": ("empty.jpg", b"", "empty file"),
        "truncated jpeg": ("truncated.jpg", jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        "truncated png": ("truncated.png", png[: len(png) // 2], "corrupt or truncated"),
        "text named .jpg": ("notes.jpg", b"shopping list: milk, eggs\n" * 20, "not an image"),
        "png named .jpg": ("really-a-png.jpg", png, "ok"),
        "cmyk jpeg": ("cmyk.jpg", _save(shape.convert("CMYK"), "JPEG"), "ok"),
        "grey jpeg": ("grey.jpg", _save(shape.convert("L"), "JPEG"), "ok"),
        "16-bit png": ("sixteen.png", _save(shape.convert("L").point(lambda v: v * 256)
                                             .convert("I;16"), "PNG"), "ok"),
        "palette png with transparency": (
            "palette.png", _save(shape.convert("P"), "PNG", transparency=0), "ok"),
        "rgba png": ("alpha.png", _save(shape.convert("RGBA"), "PNG"), "ok"),
        "animated gif": ("animated.gif", _save(shape, "GIF", save_all=True, append_images=[
            draw_shape(0, size=96, seed=6)], duration=100, loop=0), "ok"),
        "multi-page tiff": ("pages.tif", _save(shape, "TIFF", save_all=True, append_images=[
            draw_shape(2, size=96, seed=7)]), "ok"),
        "exif orientation 6": ("rotated-6.jpg", rotated_jpeg(shape, 6), "ok"),
        "exif orientation 8": ("rotated-8.jpg", rotated_jpeg(shape, 8), "ok"),
        "1x1 image": ("tiny.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "ok"),
        "10000x10 image": ("wide.png", _save(Image.new("RGB", (10_000, 10), (10, 200, 10)), "PNG"),
                           "ok"),
        "10000x1 strip": ("strip.png", _save(Image.new("RGB", (10_000, 1), (200, 200, 10)), "PNG"),
                          "ok"),
        "decompression bomb": ("bomb.png", bomb_png(), "refused: too many pixels"),
        "webp": ("photo.webp", _save(shape, "WEBP"), "ok"),
        "bmp": ("photo.bmp", _save(shape, "BMP"), "ok"),
        "no extension": ("photo-without-extension", jpeg, "ok"),
        "name with spaces": ("my holiday photo.jpg", jpeg, "ok"),
        "name with a newline": ("line\nbreak.jpg", jpeg, "ok"),
    }
    made = {}
    for case, (name, data, expected) in files.items():
        (folder / name).write_bytes(data)
        made[case] = (folder / name, expected)
    raw = os.fsencode(folder) + b"/caf\xe9-latin1.jpg"  # not valid UTF-8
    with open(raw, "wb") as f:
        f.write(jpeg)
    made["non-UTF-8 name"] = (Path(os.fsdecode(raw)), "ok")
    (folder / "broken-link.jpg").symlink_to(folder / "does-not-exist.jpg")
    made["broken symlink"] = (folder / "broken-link.jpg", "broken symbolic link")
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    made["symlink loop a"] = (folder / "loop-a.jpg", "symbolic link loop")
    made["symlink loop b"] = (folder / "loop-b.jpg", "symbolic link loop")
    locked = folder / "locked.jpg"
    locked.write_bytes(jpeg)
    locked.chmod(0)
    # root reads anything: the case only means something for an ordinary user.
    made["no read permission"] = (locked, "ok" if os.geteuid() == 0 else "permission denied")
    return made
