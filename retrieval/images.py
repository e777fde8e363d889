"""The one decode: any image file the tool reads becomes an upright RGB PIL image here."""

from __future__ import annotations

import errno
import io
import os
import warnings
from functools import lru_cache
from typing import BinaryIO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from . import formats
from .errors import NotAnImage

# Pillow warns between MAX_IMAGE_PIXELS and twice that (and raises above): load_image refuses
# the whole range itself, from the header, so the warning is noise. One process-wide filter,
# set once: warnings.catch_warnings around each decode would not be safe in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Transparent pixels are shown on ImageNet's mean colour (torchvision's mean 0.485, 0.456,
# 0.406 x 255), the colour the network's input standardisation maps to zero: neither white
# nor black artwork vanishes into it (on white, two different white logos decode alike).
BACKGROUND = (124, 116, 104)
# Formats whose decoder can hand out a smaller picture cheaply: JPEG scales by 1/2, 1/4, 1/8
# in the DCT; pillow-heif decodes an embedded thumbnail at least as large as asked for.
DRAFTS = frozenset({"JPEG", "MPO", "HEIF"})
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I"})


def load_image(path: str | os.PathLike | BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode ``path`` (or an open binary file) into an upright RGB image. Safe in threads.

    Every format Pillow and the installed extras read (HEIC, AVIF, JPEG XL, RAW from its
    embedded preview); the EXIF orientation applied; transparency composited on BACKGROUND;
    the first frame of an animation or multi-page file (a HEIF's primary image); 16-bit,
    CMYK (through its ICC profile), palette and grey images as 8-bit RGB.
    ``draft_size``: let the decoder hand out a smaller picture whose shorter side is still
    >= draft_size (JPEG's DCT scaling, a HEIF's thumbnail), several times faster on photos.
    Raises NotAnImage with the reason for anything that is not a readable image, including
    decompression bombs (more pixels than Pillow's MAX_IMAGE_PIXELS) and formats whose
    decoder is not installed (the reason names the extra to install).
    """
    try:
        with _open(path) as img:
            return _decoded(img, draft_size)
    except NotAnImage:
        raise
    except Image.DecompressionBombError as e:
        raise NotAnImage(path, f"refused: too many pixels ({e})") from None
    except UnidentifiedImageError:
        raise NotAnImage(path, _unidentified(path)) from None
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
    except (SyntaxError, ValueError, EOFError, RuntimeError) as e:  # RuntimeError: libheif's
        raise NotAnImage(path, f"corrupt or truncated image ({e})") from None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the picture in ``path``, from its header where the format allows
    (a RAW file: its sensor's, as LibRaw renders it), for comparing resolutions without a
    decode. NotAnImage when it cannot be read."""
    try:
        if formats.is_raw(path) and formats.available(formats.RAW):
            return formats.raw_size(path)
        with _open(path) as img:
            return img.size
    except NotAnImage:
        raise
    except Exception as e:  # noqa: BLE001 (any reader's error: the file is no image to us)
        raise NotAnImage(path, f"cannot read its size ({type(e).__name__})") from None


def _open(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """Pillow's image for ``path``, RAW files through rawpy."""
    if not formats.is_raw(path):
        plugins = formats.registered()
        try:
            return Image.open(path)
        except UnidentifiedImageError:
            if plugins:
                raise
        formats.register()  # HEIC, JPEG XL, ...: the extras' decoders, once per process
        if hasattr(path, "seek"):
            path.seek(0)
        return Image.open(path)
    if not hasattr(path, "read"):
        os.stat(path)  # a missing file, a broken link, a loop: said as for any other file
    if not formats.available(formats.RAW):
        raise NotAnImage(path, formats.RAW.missing)
    import rawpy

    try:
        return formats.open_raw(path)
    except rawpy.LibRawError as e:
        raise NotAnImage(path, f"a RAW file LibRaw cannot read ({type(e).__name__})") from None


def _decoded(img: Image.Image, draft_size: int | None) -> Image.Image:
    if img.width * img.height > Image.MAX_IMAGE_PIXELS:  # read from the header only
        raise Image.DecompressionBombError(
            f"{img.width * img.height} pixels, more than {Image.MAX_IMAGE_PIXELS}")
    if draft_size and img.format in DRAFTS:
        img.draft("RGB", _draft_box(img.size, draft_size))
    # No seek: Pillow opens a file on its first frame, pillow-heif on the primary image.
    return _to_rgb(ImageOps.exif_transpose(img))


def _unidentified(path) -> str:
    """Why Pillow could not open ``path``: the extra to install for a known format whose
    decoder is absent, a damaged file of such a format, else an empty file or not an image."""
    name = getattr(path, "name", path)
    named = isinstance(name, (str, os.PathLike))
    ext = os.path.splitext(os.fsdecode(name))[1].lower() if named else ""
    fmt = next((f for f in formats.OPTIONAL if ext in f.extensions), None)
    sniffed = formats.sniff(formats.head_of(path))
    fmt = sniffed if isinstance(sniffed, formats.Optional) else fmt
    if fmt is not None and not formats.available(fmt):
        return fmt.missing
    if isinstance(sniffed, formats.Optional):  # its signature, and its decoder refused it
        return f"corrupt or truncated image (a {sniffed.name} file its decoder cannot read)"
    return "empty file" if _size(path) == 0 else "not an image"


def _draft_box(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    w, h = size
    scale = shorter / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.has_transparency_data:
        # Composited on one fixed colour rather than dropped (the hidden colour under a
        # transparent pixel is often white or black everywhere: pictures would look alike).
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("CMYK", "LAB"):
        return _managed(img)
    if img.mode in SIXTEEN_BIT:
        # 16-bit greyscale: scale to 8 bits rather than clipping at 255.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _managed(img: Image.Image) -> Image.Image:
    """A CMYK or Lab image in sRGB through its ICC profile (a printer's CMYK is far from the
    naive 255 - C - K), else Pillow's plain conversion."""
    icc = img.info.get("icc_profile")
    try:
        if img.mode == "LAB":
            source = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        elif icc:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        else:
            return img.convert("RGB")
        return ImageCms.profileToProfile(img, source, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img.convert("RGB")


def _size(path) -> int | None:
    if hasattr(path, "seek"):  # an open file: its length
        return path.seek(0, os.SEEK_END)
    try:
        return os.path.getsize(path)
    except OSError:
        return None
