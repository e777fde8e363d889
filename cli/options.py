"""Option bundles shared by several commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

DEFAULT_INDEX = "retrieve-index"
QUERY_BATCH_SIZE = 32


def weights_option(f):
    return click.option(
        "--weights", default=lambda: os.environ.get("RETRIEVE_WEIGHTS", "imagenet"),
        show_default="imagenet, or $RETRIEVE_WEIGHTS", metavar="CKPT|imagenet",
        help="A checkpoint from `retrieve train`, or `imagenet` for torchvision's "
             "ImageNet-trained AlexNet.")(f)


def device_option(f):
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
        help="Where the network runs: auto picks CUDA when a GPU is present.")(f)


def index_option(f):
    return click.option(
        "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("RETRIEVE_INDEX", DEFAULT_INDEX),
        show_default="retrieve-index, or $RETRIEVE_INDEX",
        help="The index directory.")(f)


def nprobe_option(f):
    return click.option(
        "--nprobe", type=click.IntRange(min=1),
        help="IVF indexes: inverted lists visited per query (more: slower, more exact) "
             "[default: 8, saved in the index]")(f)


def query_batch_size_option(f):
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=QUERY_BATCH_SIZE, show_default=True,
        help="Query images per forward pass.")(f)


def quiet_option(f):
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress bars (they are also off when stderr is not a terminal).")(f)


def progress_enabled(quiet: bool) -> bool:
    """tqdm bars on stderr only for a person watching a terminal."""
    return not quiet and sys.stderr.isatty()
