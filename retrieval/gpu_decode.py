"""JPEG files decoded by nvJPEG on the GPU for extraction (``ExtractConfig.gpu_decode``), then
resized, cropped and normalised there as the eval transform does on the CPU.

DataLoader workers only read the files (and their EXIF orientation, which nvJPEG does not
apply); the main process decodes each batch with ``torchvision.io.decode_jpeg(device="cuda")``,
which decodes on a stream of its own and makes the current stream wait for it, so the steps
below, on the current stream, see the pixels. Other formats, and JPEGs nvJPEG refuses, take
the CPU path (``retrieval.images.load_image``) and join the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from .errors import NotAnImage
from .images import load_image
from .transforms import Preprocess

JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112  # the TIFF tag; 1 is upright
PIXEL_MAX = 255.0


class EncodedImages(Dataset):
    """Paths -> (sample, position, reason): sample ("jpeg", bytes (n,) uint8, orientation, path)
    for a JPEG file, ("pixels", (3, S, S) input) for another image decoded on the CPU by
    ``transform``, None with the reason for a file that is no image."""

    def __init__(self, paths: Sequence[str], transform, draft_size: int | None = None) -> None:
        self.paths, self.transform, self.draft_size = list(paths), transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data[:3] == JPEG_MAGIC:
                with Image.open(path) as img:
                    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
                return ("jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8),
                        orientation, path), i, None
        except (OSError, ValueError, SyntaxError):
            pass  # the CPU path says what is wrong with it
        return cpu_sample(path, self.transform, self.draft_size), i, None


def cpu_sample(path: str, transform, draft_size: int | None):
    try:
        return ("pixels", transform(load_image(path, draft_size=draft_size)))
    except NotAnImage as e:
        return ("error", e.reason)


def collate(samples: list) -> list:
    """Batches stay lists: the JPEG bytes differ in length."""
    return samples


def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """(3, H, W) pixels turned upright as PIL's ImageOps.exif_transpose turns an image."""
    if orientation in (2, 4):  # mirrored left-right / top-bottom
        return x.flip(-1 if orientation == 2 else -2)
    if orientation == 3:
        return x.flip(-1).flip(-2)
    if orientation in (5, 7):  # transposed about the main / the other diagonal
        x = x.transpose(-1, -2)
        return x if orientation == 5 else x.flip(-1).flip(-2)
    if orientation in (6, 8):  # turned a quarter clockwise / anticlockwise
        return torch.rot90(x, -1 if orientation == 6 else 1, dims=(-2, -1))
    return x


def to_input(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) float32 input: the eval transform's resize of the shorter
    side (antialiased bilinear, rounded to 8 bits as PIL's is), centre crop and normalisation."""
    x = F.resize(x.float(), [pre.resize_size], antialias=True).round_().clamp_(0, PIXEL_MAX)
    x = F.center_crop(x, [pre.image_size, pre.image_size]) / PIXEL_MAX
    mean = torch.tensor(pre.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def decode(samples: list, pre: Preprocess, transform, device: torch.device):
    """One batch of ``EncodedImages`` samples -> (images (b, 3, S, S) on ``device`` or None,
    positions (b,), [(position, reason)] of the files that are no image): the format of
    ``data.collate_skipping``."""
    jpegs = [n for n, (s, _, _) in enumerate(samples) if s[0] == "jpeg"]
    decoded = _nvjpeg([samples[n][0][1] for n in jpegs], device)
    found: dict[int, torch.Tensor | str] = {}  # batch row -> input, or why there is none
    for n, x in zip(jpegs, decoded):
        _, _, orientation, path = samples[n][0]
        found[n] = (to_input(orient(x, orientation), pre) if x is not None
                    else _on_cpu(path, transform, pre, device))
    for n, (s, _, _) in enumerate(samples):
        if s[0] != "jpeg":
            found[n] = s[1].to(device, non_blocking=True) if s[0] == "pixels" else s[1]
    good = [n for n in sorted(found) if not isinstance(found[n], str)]
    errors = [(samples[n][1], found[n]) for n in sorted(found) if isinstance(found[n], str)]
    positions = torch.tensor([samples[n][1] for n in good], dtype=torch.long)
    images = torch.stack([found[n] for n in good]) if good else None
    return images, positions, errors


def _nvjpeg(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Every JPEG decoded to (3, H, W) uint8 on ``device``, None for those nvJPEG refuses (a
    batch with one of them fails whole: they are tried one by one then)."""
    if not data:
        return []
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass
    out = []
    for one in data:
        try:
            out.append(decode_jpeg([one], mode=ImageReadMode.RGB, device=device)[0])
        except RuntimeError:
            out.append(None)
    return out


def _on_cpu(path: str, transform, pre: Preprocess, device: torch.device):
    """A JPEG nvJPEG refused, decoded on the CPU: its input on ``device``, or why it is none."""
    kind, value = cpu_sample(path, transform, pre.resize_size)
    return value.to(device) if kind == "pixels" else value
