"""The paper's Figure 4: each query image, then its nearest neighbours, with distances."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps
from torchvision.transforms.functional import to_tensor
from torchvision.utils import make_grid, save_image

from .errors import NotAnImage
from .images import load_image

TILE = 128  # pixels per image (square)
LABEL_HEIGHT = 16  # white strip under each image for its label
PADDING = 4  # between tiles, in the grid's pad colour
PAD_VALUE = 1.0  # white
QUERY_COLOUR = (220, 30, 30)  # the frame and label that mark the query
FRAME = 3  # query frame width in pixels
MISSING_GREY = (160, 160, 160)


def _tile(path: str | os.PathLike | None, label: str, query: bool = False) -> torch.Tensor:
    """(3, TILE + LABEL_HEIGHT, TILE): the image centre-cropped to a square, label below."""
    canvas = Image.new("RGB", (TILE, TILE + LABEL_HEIGHT), "white")
    if path is not None:
        try:
            img = ImageOps.fit(load_image(path, draft_size=TILE), (TILE, TILE))
        except NotAnImage:
            img, label = Image.new("RGB", (TILE, TILE), MISSING_GREY), "unreadable"
        canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    colour = QUERY_COLOUR if query else (0, 0, 0)
    if query:
        draw.rectangle([0, 0, TILE - 1, TILE - 1], outline=QUERY_COLOUR, width=FRAME)
    width = draw.textlength(label)
    draw.text(((TILE - width) / 2, TILE + 2), label, fill=colour)
    return to_tensor(canvas)


def draw_sheet(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], out: str | os.PathLike,
               k: int, first_label: str = "query") -> Path:
    """Save one PNG: a row per (query path, [(neighbour path, distance), ...]).

    Each row holds the query (framed, labelled ``first_label``) and k neighbour tiles labelled
    with their distance; rows with fewer than k results are padded with blank tiles.
    Size: (k + 1) * (TILE + PADDING) + PADDING wide, len(rows) * (TILE + LABEL_HEIGHT +
    PADDING) + PADDING high.
    """
    tiles = []
    for query, results in rows:
        tiles.append(_tile(query, first_label, query=True))
        for path, distance in list(results)[:k]:
            tiles.append(_tile(path, f"{distance:.3f}"))
        tiles += [_tile(None, "") for _ in range(k - min(k, len(results)))]
    grid = make_grid(torch.stack(tiles), nrow=k + 1, padding=PADDING, pad_value=PAD_VALUE)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out)
    return out
