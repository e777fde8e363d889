"""The conv1 kernels drawn as the paper's Figure 3: one RGB tile per 11x11x3 kernel, in a grid.

With ``groups=2`` the kernels of the two GPUs are two blocks, GPU 1's 48 above GPU 2's 48, as
in the figure (Krizhevsky et al. 2012, section 6.1, where the two halves specialise).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid, save_image

from .atomic import write_atomic
from .config import KERNEL_COLUMNS, KERNEL_NORMALIZATIONS, KERNEL_NORMALIZE, KERNEL_SCALE
from .errors import RetrieveError
from .weights import Weights
TILE_PADDING = 2  # output pixels of separator around every tile (make_grid's padding)
BLOCK_GAP = 4 * TILE_PADDING  # extra separator between the two GPUs' blocks
PAD_VALUE = 1.0  # white separators, as in Figure 3
FLAT_VALUE = 0.5  # a constant kernel (zero range) is drawn mid-grey


@dataclass
class KernelSheet:
    """What ``save_kernels`` wrote: ``rows`` x ``cols`` tiles per block, ``size`` (width, height)."""

    path: Path
    tiles: int
    kernel_size: tuple[int, int]  # (height, width) of one kernel, 11x11 in AlexNet
    blocks: int
    rows: int
    cols: int
    size: tuple[int, int]


def normalize_kernels(weight: torch.Tensor, normalize: str = KERNEL_NORMALIZE) -> torch.Tensor:
    """Map kernels (N, 3, kh, kw) onto [0, 1] for display.

    ``per-kernel``: each kernel's own minimum becomes 0 and its maximum 1 (over its three
    channels together, so colours keep their balance); every kernel uses the full range.
    ``shared``: one minimum and maximum over all kernels, so tiles compare in strength.
    A range of zero (a constant kernel, or all of them) is drawn as mid-grey.
    """
    if normalize not in KERNEL_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {KERNEL_NORMALIZATIONS}, not {normalize!r}")
    w = weight.detach().to("cpu", torch.float32)
    if normalize == "per-kernel":
        lo = w.amin(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
    else:
        lo, hi = w.min(), w.max()
    span = hi - lo
    out = (w - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.full_like(out, FLAT_VALUE))


def grid_shape(n: int, groups: int, nrow: int) -> tuple[int, int, int]:
    """(blocks, rows, cols) of the sheet for ``n`` kernels split into ``groups`` blocks."""
    per_block = n // groups
    cols = min(nrow, per_block)
    return groups, math.ceil(per_block / cols), cols


def kernel_grid(weight: torch.Tensor, groups: int = 1, normalize: str = KERNEL_NORMALIZE,
                scale: int = KERNEL_SCALE, nrow: int = KERNEL_COLUMNS,
                padding: int = TILE_PADDING) -> torch.Tensor:
    """Conv1 weights (N, 3, kh, kw) -> one image (3, H, W) in [0, 1] of tiles (Figure 3).

    Each kernel is normalised (see ``normalize_kernels``), enlarged ``scale`` times by
    nearest neighbour (every weight becomes a ``scale`` x ``scale`` block of one colour) and
    placed by ``make_grid``, ``nrow`` tiles to a row, ``padding`` pixels of white between
    tiles. With ``groups=2`` the first N/2 kernels (GPU 1) form an upper block and the last
    N/2 (GPU 2) a lower one, ``BLOCK_GAP`` more white pixels apart.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected conv1 weights (N, 3, kh, kw), got {tuple(weight.shape)}")
    if groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{weight.shape[0]} kernels cannot be split into {groups} groups")
    if scale < 1 or nrow < 1 or padding < 0:
        raise ValueError("scale and nrow must be at least 1, padding at least 0")
    tiles = normalize_kernels(weight, normalize)  # normalised over all groups together
    tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest")  # (N, 3, kh*s, kw*s)
    blocks = [make_grid(block, nrow=nrow, padding=padding, pad_value=PAD_VALUE)
              for block in tiles.chunk(groups)]
    gap = torch.full((3, BLOCK_GAP, blocks[0].shape[2]), PAD_VALUE)
    parts = [blocks[0]]
    for block in blocks[1:]:
        parts += [gap, block]
    return torch.cat(parts, dim=1)


def _write_image(image: torch.Tensor, out: Path) -> None:
    """save_image to a file beside ``out``, then rename: a failed write leaves no half file."""
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise RetrieveError(f"{out}: unknown image type {out.suffix!r}; use a .png file name")
    try:
        write_atomic(out, lambda f: save_image(image, f, format=fmt))
    except OSError as e:
        raise RetrieveError(f"{out}: cannot write ({e.strerror or e})") from None


def save_kernels(weights: Weights, out: str | os.PathLike, normalize: str = KERNEL_NORMALIZE,
                 scale: int = KERNEL_SCALE, nrow: int = KERNEL_COLUMNS) -> KernelSheet:
    """Draw the conv1 kernels of ``weights`` (Figure 3) into the image file ``out``.

    Kernels of a ``groups=2`` model are drawn as two blocks (GPU 1 above, GPU 2 below).
    Raises RetrieveError when the file cannot be written.
    """
    weight = weights.model.conv1_weight.detach().cpu()
    groups = weights.model.config.groups
    image = kernel_grid(weight, groups, normalize, scale, nrow)
    out = Path(out)
    _write_image(image, out)
    blocks, rows, cols = grid_shape(weight.shape[0], groups, nrow)
    return KernelSheet(out, weight.shape[0], tuple(weight.shape[2:]), blocks, rows, cols,
                       (image.shape[2], image.shape[1]))
