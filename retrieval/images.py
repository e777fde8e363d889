"""Finding image files by content and decoding them safely into upright RGB PIL images."""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import NotAnImage

# Pillow warns between MAX_IMAGE_PIXELS and twice that (and raises above): load_image refuses
# the whole range itself, from the header, so the warning is noise. One process-wide filter,
# set once: warnings.catch_warnings around each decode would not be safe in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# File signatures, so that images with odd or missing extensions are found too.
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a", b"GIF89a",
    b"BM",
    b"II*\x00", b"MM\x00*",  # TIFF
)


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return any(head.startswith(m) for m in _MAGIC)


def is_image_candidate(path: Path) -> bool:
    """An image extension, or a known image signature in the first bytes."""
    return path.suffix.lower() in IMAGE_EXTENSIONS or _looks_like_image(path)


def find_images(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield absolute paths of image candidates under each root, recursively, sorted.

    A root may be a file. Hidden folders and files, and the folders in ``exclude`` (the
    index directory), are skipped; symlinked folders are not followed (no loops).
    """
    excluded = {os.path.realpath(p) for p in exclude}
    for root in roots:
        root = Path(os.path.abspath(root))
        if root.is_file():
            yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and os.path.realpath(os.path.join(dirpath, d)) not in excluded)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith("."):
                    continue
                if path.is_file():
                    if is_image_candidate(path):
                        yield path
                elif path.is_symlink() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    yield path  # broken link or loop: reported by load_image, not lost silently


def load_image(path: str | os.PathLike | BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode ``path`` (or an open binary file) into an upright RGB image (EXIF orientation
    applied, first frame). Safe in several threads at once.

    ``draft_size``: let the JPEG decoder scale down by DCT (a power of two) while keeping
    the shorter side >= draft_size, which is several times faster on large photos.
    Raises NotAnImage with the reason for anything that is not a readable image, including
    decompression bombs (more pixels than Pillow's MAX_IMAGE_PIXELS).
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > Image.MAX_IMAGE_PIXELS:  # read from the header only
                raise Image.DecompressionBombError(
                    f"{img.width * img.height} pixels, more than {Image.MAX_IMAGE_PIXELS}")
            if draft_size and img.format == "JPEG":
                img.draft("RGB", _draft_box(img.size, draft_size))
            img.seek(0)  # first frame of GIF / multi-page TIFF
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except Image.DecompressionBombError as e:
        raise NotAnImage(path, f"refused: too many pixels ({e})") from None
    except UnidentifiedImageError:
        size = _size(path)
        raise NotAnImage(path, "empty file" if size == 0 else "not an image") from None
    except PermissionError:
        raise NotAnImage(path, "permission denied") from None
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file not found"
        raise NotAnImage(path, reason) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotAnImage(path, "symbolic link loop") from None
        if e.errno == errno.EISDIR:
            raise NotAnImage(path, "is a folder") from None
        raise NotAnImage(path, f"corrupt or truncated image ({e})") from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise NotAnImage(path, f"corrupt or truncated image ({e})") from None


def _draft_box(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    w, h = size
    scale = shorter / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency on white rather than on whatever the hidden colour is.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping at 255.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def _size(path) -> int | None:
    if hasattr(path, "seek"):  # an open file: its length
        return path.seek(0, os.SEEK_END)
    try:
        return os.path.getsize(path)
    except OSError:
        return None
