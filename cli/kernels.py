"""`retrieve show-kernels`: draw the conv1 kernels (the paper's Figure 3)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import device_option, weights_option
from retrieval.config import (KERNEL_COLUMNS, KERNEL_NORMALIZATIONS, KERNEL_NORMALIZE,
                              KERNEL_SCALE)


@click.command("show-kernels")
@weights_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("kernels.png"), show_default=True, help="The image file to write.")
@click.option("--scale", type=click.IntRange(1, 64), default=KERNEL_SCALE, show_default=True,
              help="Screen pixels per kernel weight (nearest neighbour, so the weights show).")
@click.option("--normalize", type=click.Choice(KERNEL_NORMALIZATIONS), default=KERNEL_NORMALIZE,
              show_default=True,
              help="per-kernel: each kernel's own lowest and highest weight become 0 and 255 "
                   "(every tile uses the full range); shared: one range over all kernels, so "
                   "tiles compare in strength.")
@click.option("--cols", type=click.IntRange(1), default=KERNEL_COLUMNS, show_default=True,
              help="Tiles per row (in each block).")
@device_option
def show_kernels(weights: str, out: Path, scale: int, normalize: str, cols: int,
                 device: str) -> None:
    """Draw the conv1 kernels as RGB tiles in a grid (the paper's Figure 3).

    Every 11x11x3 kernel becomes one tile. A model trained with two-GPU grouping is drawn
    as two blocks: GPU 1's 48 kernels above, GPU 2's below.

    \b
    retrieve show-kernels --weights runs/alexnet/best.pt --out kernels.png
    retrieve show-kernels --weights imagenet --normalize shared --scale 8
    """
    from retrieval.kernels import save_kernels
    from retrieval.weights import load_weights, resolve_device

    w = load_weights(weights, resolve_device(device))
    sheet = save_kernels(w, out, normalize=normalize, scale=scale, nrow=cols)
    kh, kw = sheet.kernel_size
    blocks = f"{sheet.blocks} block{'s' if sheet.blocks > 1 else ''}"
    click.echo(f"Wrote {sheet.path}: {sheet.tiles} conv1 kernels of {kh}x{kw}, {blocks} of "
               f"{sheet.rows}x{sheet.cols} tiles, {sheet.size[0]}x{sheet.size[1]}px")
